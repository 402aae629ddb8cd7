"""Run a preset's stages through papermill, one fresh kernel per stage, skipping what is done.

Every parameter, stage name, notebook and input is checked before any kernel starts; `plan`
decides what runs (the same plan the dry run prints and `status` shows). Once a stage runs, every
later selected stage runs too. A stage that fails is recorded as failed with its error; later
stages do not run and nothing finished is touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Callable

import yaml

from ..config import ConfigError
from ..io import atomic_write_text
from ..stages import STAGES, Stage
from .kernel import execute_stage, executed_notebook, run_lock, stop_orphan_kernel
from .manifest import RUN_YAML, Manifest, hash_artifacts, missing_artifacts, now, package_versions
from .notebooks import fatal_problems
from .plan import check_inputs, jsonable, kernel_run_dir, notebook_digest, plan, select
from .presets import Preset, load_preset, parse_overrides, resolve


class StageFailed(RuntimeError):
    """A stage raised, died or did not write its declared outputs; the manifest has the details."""


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        return f"{ename}: {evalue} (cell {getattr(err, 'exec_count', '?')})"
    return f"{type(err).__name__}: {err}"


def run_pipeline(
    preset: str | Path | Preset, run_dir: str | Path, stages: list[Stage] | None = None,
    start: str | None = None, stop: str | None = None, only: list[str] | None = None,
    overrides: list[str] = (), progress: bool = True, log: Callable[[str], None] = print,
    dry_run: bool = False,
) -> list[tuple[str, str, float]]:
    """Run the selected stages; return [(stage, "ran" | "skipped", seconds)].

    Raises ConfigError before any kernel starts when a parameter, stage name, notebook or input
    is wrong, and StageFailed (after recording it in the manifest) when a stage fails.
    `dry_run` validates and reports what would run ("would run" | "would skip"), writing nothing.
    """
    stages = list(STAGES if stages is None else stages)
    if not stages:
        raise ConfigError("no stages are registered (salmon_lib/stages.py STAGES is empty)")
    logging.getLogger("papermill").setLevel(logging.WARNING)  # our per-stage lines say what it would
    selected = select(stages, start, stop, only)
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    run_dir = Path(run_dir).resolve()
    configs, warnings = resolve(preset, stages, parse_overrides(list(overrides)), kernel_run_dir(run_dir))
    for w in warnings:
        log(f"warning: {w}")
    for stage in selected:
        fatal = fatal_problems(stage)
        if fatal:
            raise ConfigError(f"stage {stage.name!r}: " + "; ".join(fatal))
    check_inputs(selected, run_dir)
    params = {name: jsonable(cfg.to_dict()) for name, cfg in configs.items()}

    summary = []
    with contextlib.nullcontext() if dry_run else run_lock(run_dir):
        manifest = Manifest(run_dir)
        if not dry_run:
            resolved = {"preset": str(preset.path), "overrides": list(overrides), "written": now(),
                        "common": jsonable(preset.common), "stages": params}
            atomic_write_text(run_dir / RUN_YAML, yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
            manifest.data.update(preset=str(preset.path), overrides=list(overrides))
            manifest.save()
        for step in plan(stages, run_dir, manifest, params, selected):
            stage, record, reasons = step.stage, step.record, step.reasons
            if dry_run:
                log(f"[{stage.name}] would " + (f"run: {'; '.join(reasons)}" if reasons else "skip: up to date"))
                summary.append((stage.name, "would run" if reasons else "would skip", 0.0))
                continue
            if not reasons:
                when = (record.get("ended") or "")[:19].replace("T", " ")
                log(f"[{stage.name}] skipped: up to date (ran {record.get('wall_s') or 0:.1f} s, {when} UTC)")
                summary.append((stage.name, "skipped", 0.0))
                continue
            log(f"[{stage.name}] running: {'; '.join(reasons)}")
            stop_orphan_kernel(record, log)
            wall = _run_one(stage, params[stage.name], run_dir, manifest, progress, log)
            summary.append((stage.name, "ran", wall))
    return summary


def _run_one(stage: Stage, params: dict, run_dir: Path, manifest: Manifest, progress: bool,
             log: Callable[[str], None]) -> float:
    record = {
        "status": "running", "notebook": stage.notebook, "notebook_sha256": notebook_digest(stage.notebook_path()),
        "executed": str(executed_notebook(stage, run_dir).relative_to(run_dir)), "params": params,
        "inputs": hash_artifacts(run_dir, stage.inputs), "outputs": {}, "started": now(), "ended": None,
        "wall_s": None, "error": None, "pid": os.getpid(), "versions": package_versions(),
    }
    manifest.put(stage.name, record)
    t0 = time.perf_counter()

    def kernel_started(pid: int, connection_file: str) -> None:
        record["kernel"] = {"pid": pid, "connection_file": connection_file}
        manifest.put(stage.name, record)

    def close(status: str, error: str | None = None) -> float:
        wall = round(time.perf_counter() - t0, 2)
        record.update(status=status, error=error, ended=now(), wall_s=wall,
                      outputs=hash_artifacts(run_dir, stage.outputs))
        manifest.put(stage.name, record)
        return wall

    try:
        execute_stage(stage, params, run_dir, progress, on_kernel_start=kernel_started)
    except KeyboardInterrupt:
        close("interrupted", "KeyboardInterrupt")
        raise
    except Exception as err:
        wall = close("failed", _error_text(err))
        log(f"[{stage.name}] FAILED after {wall:.1f} s: {record['error']}\n"
            f"    executed notebook: {run_dir / record['executed']}")
        raise StageFailed(f"stage {stage.name!r} failed: {record['error']}") from err
    missing = missing_artifacts(run_dir, stage.outputs)
    if missing:
        error = f"finished without writing declared output(s): {', '.join(missing)}"
        wall = close("failed", error)
        log(f"[{stage.name}] FAILED after {wall:.1f} s: {error}")
        raise StageFailed(f"stage {stage.name!r} {error}")
    wall = close("finished")
    log(f"[{stage.name}] ran in {wall:.1f} s")
    return wall
