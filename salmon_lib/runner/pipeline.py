"""Run a preset's stages through papermill, one fresh kernel per stage, skipping what is done.

A stage is skipped when it finished before with the same parameters (run_dir aside, so a copied
run directory still counts), the same notebook and the same input hashes, its outputs exist, and
no earlier stage has run since. Once a stage runs, every later selected stage runs too. A stage
that fails is recorded as failed with its error; later stages do not run and nothing finished is
touched. Each kernel is a fresh process (CUDA and vLLM memory are only freed when it exits) that
imports the same salmon_lib as the runner and starts in the project root.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from ..config import ConfigError
from ..generation import usage
from ..io import atomic_write_text
from ..stages import PROJECT_ROOT, STAGES, Stage
from . import metrics
from .manifest import (
    Manifest,
    hash_artifacts,
    missing_artifacts,
    now,
    package_versions,
    pid_alive,
)
from .presets import Preset, load_preset, parse_overrides, resolve

RUN_YAML = "run.yaml"


class StageFailed(RuntimeError):
    """A stage raised, died or did not write its declared outputs; the manifest has the details."""


class RunLocked(RuntimeError):
    """Another runner holds this run directory."""


def jsonable(obj: Any) -> Any:
    """Tuples become lists, so papermill injects literals the config accepts and JSON compares equal."""
    return json.loads(json.dumps(obj, default=str))


def kernel_run_dir(run_dir: Path) -> str:
    """run_dir as the kernel (cwd = project root) sees it: relative when inside the project."""
    try:
        return str(run_dir.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(run_dir.resolve())


def select(stages: list[Stage], start: str | None = None, stop: str | None = None,
           only: list[str] | None = None) -> list[Stage]:
    names = [s.name for s in stages]
    for name in [start, stop, *(only or [])]:
        if name is not None and name not in names:
            raise ConfigError(f"unknown stage {name!r} (stages: {', '.join(names) or 'none registered'})")
    if only:
        if start or stop:
            raise ConfigError("--only cannot be combined with --from/--to")
        return [s for s in stages if s.name in only]
    lo = names.index(start) if start else 0
    hi = names.index(stop) if stop else len(names) - 1
    if lo > hi:
        raise ConfigError(f"--from {start} comes after --to {stop} in the pipeline")
    return stages[lo:hi + 1]


def notebook_digest(path: Path) -> str | None:
    """Hash of the notebook's code: saving it with outputs after an interactive session, or
    editing its narrative, is not a reason to rerun the stage."""
    if not path.is_file():
        return None
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    code = ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()


def _changed_keys(old: dict, new: dict) -> list[str]:
    keys = (set(old) | set(new)) - {"run_dir"}
    return sorted(k for k in keys if old.get(k) != new.get(k))


def stale_reasons(stage: Stage, record: dict | None, params: dict | None, run_dir: Path,
                  upstream: list[dict | None]) -> list[str]:
    """Why `stage` must (re)run; empty when its finished record still holds.

    `upstream` holds the records of the stages before it: one that ended after this stage
    started has rerun since, so this stage's view of the pipeline is out of date.
    """
    if record is None:
        return ["never ran"]
    if record.get("status") == "running":
        return ["last run did not finish"]
    if record.get("status") != "finished":
        return [f"last run {record.get('status')}"]
    reasons = []
    if params is not None and (keys := _changed_keys(record.get("params", {}), params)):
        reasons.append(f"parameters changed: {', '.join(keys)}")
    if notebook_digest(stage.notebook_path()) != record.get("notebook_sha256"):
        reasons.append("notebook changed")
    old_inputs = record.get("inputs", {})
    for name, digest in hash_artifacts(run_dir, stage.inputs).items():
        if digest != old_inputs.get(name):
            reasons.append(f"input {name} changed")
    missing = missing_artifacts(run_dir, stage.outputs)
    if missing:
        reasons.append(f"output(s) missing: {', '.join(missing)}")
    if any(r and (r.get("ended") or "") > (record.get("started") or "") for r in upstream):
        reasons.append("an earlier stage ran since")
    return reasons


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One runner per run directory; the OS drops the lock when the holder dies, even by kill -9."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunLocked(f"{run_dir}: another runner (pid {f.read().strip() or '?'}) is using this run") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished, reaped children."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def kernel_env() -> Iterator[None]:
    """Kernels inherit this environment: put this salmon_lib first on their path.

    Developers run from git worktrees while the venv's editable install points at another
    checkout; without this the kernel would import that other checkout's code.
    """
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *([old] if old else [])])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def executed_notebook(stage: Stage, run_dir: Path) -> Path:
    return run_dir / "notebooks" / stage.notebook_path().name


def _recording_kernel_manager(on_start: Callable[[int, str], None]) -> type:
    """A kernel manager that reports the kernel's pid and connection file once it is up."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class RecordingKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"  # a local kernel needs no TCP port (and then warns about no encryption)

        @default("ip")
        def _default_ip(self) -> str:
            # IPC sockets are files named after `ip`; jupyter_client's default would drop them in the cwd.
            import tempfile
            import uuid

            return os.path.join(tempfile.gettempdir(), f"salmon-kernel-{uuid.uuid4().hex[:12]}")

        async def _async_post_start_kernel(self, **kw: Any) -> None:
            await super()._async_post_start_kernel(**kw)
            on_start(self.provisioner.pid, self.connection_file)

    return RecordingKernelManager


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""  # gone (a zombie has an empty cmdline too)


def stop_orphan_kernel(record: dict | None, log: Callable[[str], None]) -> None:
    """Kill the kernel an interrupted run left behind, before a new kernel resumes its records.

    A kernel notices its runner died only when its parent poller next runs (~1 s, longer if a
    C call holds the GIL); until then it keeps appending records and holding GPU memory. It is
    identified by pid *and* its connection file on the command line, so a reused pid is never hit.
    Linux only (/proc); elsewhere the parent poller is the only guard.
    """
    kernel = (record or {}).get("kernel")
    if not kernel or record.get("status") != "running":
        return
    pid, conn = kernel["pid"], kernel["connection_file"]
    if conn not in _cmdline(pid):
        return
    log(f"stopping the kernel (pid {pid}) left running by an interrupted run")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the kernel leads its own session: its workers go too
    deadline = time.time() + 30
    while conn in _cmdline(pid) and time.time() < deadline:
        time.sleep(0.05)


def execute_stage(stage: Stage, params: dict, run_dir: Path, progress: bool = True,
                  on_kernel_start: Callable[[int, str], None] | None = None) -> None:
    """Run the stage notebook in a fresh kernel; the executed copy lands in run_dir/notebooks/.

    While it runs the copy is `NN_stage.partial.ipynb` (open it to watch progress); it is moved
    into place when the kernel is done, failed or not, so the finished name is always a whole run.
    """
    import papermill

    extra = {"kernel_manager_class": _recording_kernel_manager(on_kernel_start)} if on_kernel_start else {}
    out = executed_notebook(stage, run_dir)
    partial = out.with_name(f"{out.stem}.partial.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with kernel_env():
            # "python3", not the notebook's own kernelspec: jupyter_client starts it with this
            # interpreter, so headless runs use the runner's venv whatever the notebook was saved with
            papermill.execute_notebook(
                str(stage.notebook_path()), str(partial), parameters=params, kernel_name="python3",
                cwd=str(PROJECT_ROOT), progress_bar=progress, start_timeout=180, **extra,
            )
    finally:
        if partial.exists():
            os.replace(partial, out)


def notebook_problems(stage: Stage) -> list[str]:
    """How the notebook's `parameters` cell disagrees with the stage's config class.

    The cell must hold exactly the config's fields, each a literal with an intent comment, and
    its values must validate (they are what an interactive user runs with).
    """
    import papermill

    path = stage.notebook_path()
    if not path.is_file():
        return [f"{path}: notebook not found"]
    cls = stage.config_class()
    declared = papermill.inspect_notebook(str(path))
    if not declared:
        return [f"{path}: no cell tagged 'parameters'"]
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    problems = [f"{path}: parameter {n!r} is not a field of {cls.__name__}" for n in declared if n not in fields]
    problems += [f"{path}: {cls.__name__} field {n!r} is missing from the parameters cell"
                 for n in sorted(fields - set(declared))]
    values = {}
    for name, p in declared.items():
        if not p.get("help"):
            problems.append(f"{path}: parameter {name!r} has no intent comment")
        try:
            values[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            problems.append(f"{path}: parameter {name!r} = {p['default']} is not a literal")
    if not problems:
        try:
            cls.from_dict(values, f"{path} parameters cell")
        except ConfigError as err:
            problems.append(str(err))
    return problems


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        return f"{ename}: {evalue} (cell {getattr(err, 'exec_count', '?')})"
    return f"{type(err).__name__}: {err}"


def _check_inputs(selected: list[Stage], run_dir: Path) -> None:
    """Every required input exists already or is written by an earlier selected stage."""
    produced: dict[str, str] = {}
    for stage in selected:
        for name in missing_artifacts(run_dir, stage.inputs):
            if name.rstrip("/") not in produced:
                raise ConfigError(
                    f"stage {stage.name!r} needs {name} in {run_dir}, which does not exist and no "
                    f"selected stage before it writes it (run the stage that writes it first)"
                )
        for name in stage.outputs:
            produced[name.rstrip("?").rstrip("/")] = stage.name


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
        # parameters the config does not know would stop the kernel anyway: stop before any starts
        fatal = [p for p in notebook_problems(stage) if "not found" in p or "is not a field" in p]
        if fatal:
            raise ConfigError(f"stage {stage.name!r}: " + "; ".join(fatal))
    _check_inputs(selected, run_dir)
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
        ran = False
        order = [s.name for s in stages]
        for stage in selected:
            record = manifest.get(stage.name)
            upstream = [manifest.get(n) for n in order[: order.index(stage.name)]]
            reasons = [f"an earlier stage {'would run' if dry_run else 'ran'}"] if ran else stale_reasons(
                stage, record, params[stage.name], run_dir, upstream)
            if dry_run:
                log(f"[{stage.name}] would " + (f"run: {'; '.join(reasons)}" if reasons else "skip: up to date"))
                summary.append((stage.name, "would run" if reasons else "would skip", 0.0))
                ran = ran or bool(reasons)
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
            ran = True
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
    usage_file = metrics.usage_path(run_dir, stage.name)
    usage_file.unlink(missing_ok=True)  # the figures are those of this run of the stage
    t0, cpu0 = time.perf_counter(), _children_cpu()

    def kernel_started(pid: int, connection_file: str) -> None:
        record["kernel"] = {"pid": pid, "connection_file": connection_file}
        manifest.put(stage.name, record)

    def close(status: str, error: str | None = None) -> float:
        wall = round(time.perf_counter() - t0, 2)
        # The kernel is a child of this process: once it has exited, its CPU time is ours to read.
        record.update(status=status, error=error, ended=now(), wall_s=wall, cpu_s=round(_children_cpu() - cpu0, 1),
                      outputs=hash_artifacts(run_dir, stage.outputs))
        manifest.put(stage.name, record)
        return wall

    try:
        with _env(**{usage.ENV: str(usage_file)}):
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


def stage_status(run_dir: str | Path, stages: list[Stage] | None = None) -> list[dict[str, Any]]:
    """One row per stage: name, status, stale, reasons, wall_s, ended (registered stages first)."""
    stages = list(STAGES if stages is None else stages)
    run_dir = Path(run_dir)
    manifest = Manifest(run_dir)
    run_yaml = run_dir / RUN_YAML
    resolved = yaml.safe_load(run_yaml.read_text()) if run_yaml.exists() else {}
    resolved_params = (resolved or {}).get("stages") or {}
    rows, upstream, stale_before = [], [], False
    for stage in stages:
        record = manifest.get(stage.name)
        status = (record or {}).get("status", "not run")
        if status == "running" and not pid_alive(record.get("pid", 0)):
            status = "interrupted"
        reasons = stale_reasons(stage, record, resolved_params.get(stage.name), run_dir, upstream)
        if stale_before and record and not reasons:
            reasons = ["an earlier stage is stale"]
        stale_before = stale_before or bool(reasons)
        rows.append(dict(stage=stage.name, status=status, stale=bool(reasons) and record is not None,
                         reasons=reasons, ended=(record or {}).get("ended"),
                         **metrics.stage_figures(run_dir, stage.name, stage.outputs, record)))
        upstream.append(record)
    for name, record in manifest.stages.items():
        if name not in {s.name for s in stages}:
            rows.append(dict(stage=name, status=record.get("status"), stale=True, reasons=["not a registered stage"],
                             ended=record.get("ended"), **metrics.stage_figures(run_dir, name, [], record)))
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    def num(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [f"{'stage':<16} {'status':<12} {'stale':<6} {'wall s':>8} {'cpu s':>8} {'tokens':>8} {'tok/s':>6} "
             f"{'examples':>8} {'ex/min':>7}  {'ended (UTC)':<19}  why"]
    for r in rows:
        ended = (r["ended"] or "-")[:19].replace("T", " ")
        why = "; ".join(r["reasons"]) if r["stale"] or r["status"] != "finished" else ""
        lines.append(f"{r['stage']:<16} {r['status']:<12} {'yes' if r['stale'] else 'no':<6} {num(r['wall_s'], '.1f'):>8} "
                     f"{num(r['cpu_s'], '.1f'):>8} {num(r['tokens'], 'd'):>8} {num(r['tokens_per_s'], '.1f'):>6} "
                     f"{num(r['examples'], 'd'):>8} {num(r['examples_per_min'], '.1f'):>7}  {ended:<19}  {why}")
    done = [r for r in rows if r["wall_s"] is not None]
    if done:
        wall, cpu = sum(r["wall_s"] for r in done), sum(r["cpu_s"] or 0 for r in done)
        lines.append(f"{'total':<16} {'':<12} {'':<6} {wall:>8.1f} {cpu:>8.1f} "
                     f"{sum(r['tokens'] or 0 for r in done):>8d}")
    return "\n".join(lines)

