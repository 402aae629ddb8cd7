"""Run a preset's stages through papermill, one fresh kernel per stage, skipping what is done.

Every parameter, stage name, notebook, model spec, input and the run folder itself are checked
before any kernel starts; `plan` decides what runs (the same plan the dry run prints and `status`
shows). Once a stage runs, every later selected stage runs too. A stage that fails is recorded as
failed with its error, its previous good outputs are put back (`outputs`), later stages do not run
and nothing finished is touched. A stage whose kernel misses a deadline (`deadlines`), dies or
freezes fails the same way, with one line saying which cell and how long the runner waited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable

import yaml

from ..config import ConfigError
from ..generation import usage
from ..io import atomic_write_text, clean_temp_files
from ..provenance import hash_artifacts
from ..stages import STAGES, Stage
from . import metrics
from .deadlines import Deadlines, KernelDeadline
from .kernel import (
    KernelPool,
    execute_stage,
    executed_notebook,
    run_dir_problem,
    run_lock,
    stage_environ,
    stop_orphan_kernel,
)
from .manifest import RUN_YAML, Manifest, missing_artifacts, now, package_versions
from .notebooks import fatal_problems
from .outputs import drop_previous, keep_previous, output_changes, restore_previous, set_aside_changed
from .plan import check_inputs, jsonable, kernel_run_dir, notebook_digest, plan, select
from .presets import Preset, load_preset, parse_overrides, resolve, resolve_deadlines


class StageFailed(RuntimeError):
    """A stage raised, died or did not write its declared outputs; the manifest has the details."""


def _error_text(err: BaseException) -> str:
    """One line: the exception and the first line of its message (what the stage failed on)."""
    if isinstance(err, KernelDeadline):
        return str(err)  # already the line: stage, cell, how long the runner waited
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        first = (str(evalue).strip().splitlines() or [""])[0]
        return f"{ename}: {first} (cell {getattr(err, 'exec_count', '?')})"
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}"


def run_pipeline(
    preset: str | Path | Preset, run_dir: str | Path, stages: list[Stage] | None = None,
    start: str | None = None, stop: str | None = None, only: list[str] | None = None,
    overrides: list[str] = (), progress: bool = True, log: Callable[[str], None] = print,
    dry_run: bool = False, accept_changed: bool = False,
) -> list[tuple[str, str, float]]:
    """Run the selected stages; return [(stage, "ran" | "skipped", seconds)].

    Raises ConfigError before any kernel starts when a parameter, stage name, notebook, input or
    the run folder is wrong, and StageFailed (after recording it in the manifest) when a stage
    fails. `dry_run` validates and reports what would run ("would run" | "would skip"), writing
    nothing. `accept_changed` takes outputs edited since their stage wrote them as they are
    (recorded in the manifest) instead of rerunning their stage.
    """
    stages = list(STAGES if stages is None else stages)
    if not stages:
        raise ConfigError("no stages are registered (salmon_lib/stages.py STAGES is empty)")
    logging.getLogger("papermill").setLevel(logging.WARNING)  # our per-stage lines say what it would
    selected = select(stages, start, stop, only)
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    run_dir = Path(run_dir).resolve()
    problem = run_dir_problem(run_dir, write=not dry_run)
    if problem:
        raise ConfigError(problem)
    parsed = parse_overrides(list(overrides))
    configs, warnings = resolve(preset, stages, parsed, kernel_run_dir(run_dir))
    deadlines = resolve_deadlines(preset, stages, parsed)
    for w in warnings:
        log(f"warning: {w}")
    for stage in selected:
        fatal = fatal_problems(stage)
        if fatal:
            raise ConfigError(f"stage {stage.name!r}: " + "; ".join(fatal))
    check_inputs(selected, run_dir, stages, Manifest(run_dir), accept_changed)
    params = {name: jsonable(cfg.to_dict()) for name, cfg in configs.items()}

    summary = []
    kernels = KernelPool()
    with contextlib.nullcontext() if dry_run else run_lock(run_dir), contextlib.closing(kernels):
        manifest = Manifest(run_dir)
        if not dry_run:
            _tidy(stages, run_dir, manifest, accept_changed, log)
            resolved = {"preset": str(preset.path), "overrides": list(overrides), "written": now(),
                        "common": jsonable(preset.common), "stages": params}
            atomic_write_text(run_dir / RUN_YAML, yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
            manifest.data.update(preset=str(preset.path), overrides=list(overrides))
            manifest.save()
        for step in plan(stages, run_dir, manifest, params, selected, accept_changed):
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
            set_aside_changed(stage, record, run_dir, log)
            keep_previous(stage, record, run_dir)
            later = selected[selected.index(stage) + 1:]
            wall = _run_one(stage, params[stage.name], run_dir, manifest, progress, log, kernels,
                            later[0] if later else None, deadlines[stage.name])
            summary.append((stage.name, "ran", wall))
    return summary


def _tidy(stages: list[Stage], run_dir: Path, manifest: Manifest, accept_changed: bool,
          log: Callable[[str], None]) -> None:
    """Under the run lock, before anything runs: stop kernels an interrupted run left behind,
    remove the temporary files of writes they were killed in, and (with `accept_changed`) record
    edited outputs as they now are."""
    for record in manifest.stages.values():
        stop_orphan_kernel(record, run_dir, log)
    removed = clean_temp_files(run_dir)
    if removed:
        log(f"removed {len(removed)} temporary file(s) left by an interrupted write: "
            + ", ".join(str(p.relative_to(run_dir)) for p in removed[:5]))
    if not accept_changed:
        return
    for stage in stages:
        record = manifest.get(stage.name)
        changes = output_changes(stage, record, run_dir)
        if changes:
            record["outputs"].update(hash_artifacts(run_dir, list(changes)))
            record.setdefault("accepted_changes", []).append({"when": now(), "changes": list(changes.values())})
            manifest.put(stage.name, record)
            log(f"[{stage.name}] taking its changed output(s) as they are: {'; '.join(changes.values())}")


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished, reaped children."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _stage_env(stage: Stage, run_dir: Path) -> dict[str, str]:
    return stage_environ({usage.ENV: str(metrics.usage_path(run_dir, stage.name))})


def _run_one(stage: Stage, params: dict, run_dir: Path, manifest: Manifest, progress: bool,
             log: Callable[[str], None], kernels: KernelPool, following: Stage | None,
             deadlines: Deadlines) -> float:
    """Run one stage; `following` is the stage that runs after it (every later selected stage runs
    once one has), whose kernel starts now and preloads while this one works."""
    record = {
        "status": "running", "notebook": stage.notebook, "notebook_sha256": notebook_digest(stage.notebook_path()),
        "executed": str(executed_notebook(stage, run_dir).relative_to(run_dir)), "params": params,
        "inputs": hash_artifacts(run_dir, stage.inputs), "outputs": {}, "started": now(), "ended": None,
        "wall_s": None, "error": None, "pid": os.getpid(), "versions": package_versions(),
        "deadlines": dataclasses.asdict(deadlines),
    }
    manifest.put(stage.name, record)
    usage_file = metrics.usage_path(run_dir, stage.name)
    usage_file.unlink(missing_ok=True)  # the figures are those of this run of the stage
    t0, cpu0 = time.perf_counter(), _children_cpu()

    def kernel_started(pid: int, connection_file: str) -> None:
        record["kernel"] = {"pid": pid, "connection_file": connection_file, "run_dir": str(run_dir.resolve())}
        manifest.put(stage.name, record)

    def close(status: str, error: str | None = None) -> float:
        wall = round(time.perf_counter() - t0, 2)
        # The kernel is a child of this process: once it has exited, its CPU time is ours to read.
        record.update(status=status, error=error, ended=now(), wall_s=wall, cpu_s=round(_children_cpu() - cpu0, 1),
                      outputs=hash_artifacts(run_dir, stage.outputs))
        manifest.put(stage.name, record)
        return wall

    def fail(error: str) -> StageFailed:
        record["restored"] = restore_previous(stage, run_dir)
        wall = close("failed", error)
        kept = "; its previous outputs are back in place" if record["restored"] else ""
        log(f"[{stage.name}] FAILED after {wall:.1f} s: {error}{kept}\n"
            f"    executed notebook: {run_dir / record['executed']}")
        return StageFailed(f"stage {stage.name!r} failed: {error}{kept}")

    try:
        km = kernels.take(stage.name, _stage_env(stage, run_dir))
        if following is not None:
            kernels.prepare(following.name, _stage_env(following, run_dir))
        execute_stage(stage, params, run_dir, km, progress, on_kernel_start=kernel_started, deadlines=deadlines)
    except KeyboardInterrupt:
        close("interrupted", "KeyboardInterrupt")
        raise
    except Exception as err:
        raise fail(_error_text(err)) from err
    missing = missing_artifacts(run_dir, stage.outputs)
    if missing:
        raise fail(f"finished without writing declared output(s): {', '.join(missing)}")
    wall = close("finished")
    drop_previous(stage, run_dir)
    log(f"[{stage.name}] ran in {wall:.1f} s")
    return wall
