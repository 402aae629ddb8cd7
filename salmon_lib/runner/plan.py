"""What a run would do: which selected stages are stale and why. `run_pipeline`, its dry run and
`status` all ask `plan`.

A stage is up to date when it finished before with the same parameters (run_dir aside, so a
copied run directory still counts), the same notebook code and the same input hashes, its outputs
exist, and no earlier stage has run since. A stage after a stale one in the plan is stale too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from ..config import ConfigError
from ..provenance import artifact_path, hash_path
from ..stages import PROJECT_ROOT, Stage
from .manifest import Manifest, missing_artifacts
from .outputs import describe_change, good_record, kind_problem, output_changes


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


class Hashes:
    """Content hashes of a run's artifacts, each computed once per plan (an output of one stage is
    the input of the next)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._done: dict[Path, Any] = {}

    def __call__(self, name: str) -> Any:
        path = artifact_path(self.run_dir, name)[0]
        if path not in self._done:
            self._done[path] = hash_path(path)
        return self._done[path]

    def of(self, names: list[str]) -> dict[str, Any]:
        return {name.rstrip("?"): self(name) for name in names}


def stale_reasons(stage: Stage, record: dict | None, params: dict | None, run_dir: Path,
                  upstream: list[dict | None], hashes: Hashes | None = None,
                  accept_changed: bool = False) -> list[str]:
    """Why `stage` must (re)run; empty when its finished record still holds.

    `upstream` holds the records of the stages before it: one that finished after this stage
    started has rerun since, so this stage's view of the pipeline is out of date. Outputs whose
    content differs from what the stage wrote (damaged, emptied, replaced) make it stale, unless
    `accept_changed` (the user edited them on purpose).
    """
    hashes = hashes or Hashes(run_dir)
    if record is None:
        return ["never ran"]
    if record.get("status") == "running":
        return ["last run did not finish"]
    if record.get("status") == "failed" and record.get("error"):
        return [f"last run failed: {record['error']}"]
    if record.get("status") != "finished":
        return [f"last run {record.get('status')}"]
    reasons = []
    if params is not None and (keys := _changed_keys(record.get("params", {}), params)):
        reasons.append(f"parameters changed: {', '.join(keys)}")
    if notebook_digest(stage.notebook_path()) != record.get("notebook_sha256"):
        reasons.append("notebook changed")
    old_inputs = record.get("inputs", {})
    for name, digest in hashes.of(stage.inputs).items():
        if _content(digest) != _content(old_inputs.get(name)):
            reasons.append(f"input {name} changed")
    missing = missing_artifacts(run_dir, stage.outputs)
    if missing:
        reasons.append(f"output(s) missing: {', '.join(missing)}")
    if not accept_changed:
        reasons += [f"output {why}" for why in output_changes(stage, record, run_dir, hashes).values()]
    if any(r and r.get("status") == "finished" and (r.get("ended") or "") > (record.get("started") or "")
           for r in upstream):
        reasons.append("an earlier stage ran since")
    return reasons


def _content(digest: dict | None) -> str | None:
    """What identifies an artifact's content (records written before folders listed their files compare too)."""
    return digest.get("sha256") if isinstance(digest, dict) else None


def _bare(name: str) -> str:
    return name.rstrip("?").rstrip("/")


def check_inputs(selected: list[Stage], run_dir: Path, stages: list[Stage] | None = None,
                 manifest: Manifest | None = None, accept_changed: bool = False) -> None:
    """Every required input exists already or is written by an earlier selected stage; one written
    by a stage that does not run now must be what that stage's last good run wrote (not partial
    output of a run that failed or was interrupted, nor a file damaged since), unless
    `accept_changed`. Every output a selected stage writes is of the kind it writes (file/folder)."""
    writer = {_bare(name): s for s in stages or [] for name in s.outputs}
    hashes = Hashes(run_dir)
    produced: dict[str, str] = {}
    for stage in selected:
        for name in missing_artifacts(run_dir, stage.inputs):
            if _bare(name) not in produced:
                raise ConfigError(
                    f"stage {stage.name!r} needs {name} in {run_dir}, which does not exist and no "
                    f"selected stage before it writes it (run the stage that writes it first)"
                )
        for name in stage.inputs:
            source = writer.get(_bare(name))
            if _bare(name) in produced or source is None or manifest is None or hashes(name) is None:
                continue
            problem = _input_problem(source, manifest.get(source.name), name, hashes, accept_changed)
            if problem:
                raise ConfigError(f"stage {stage.name!r} reads {problem}")
        for name in stage.outputs:
            produced[_bare(name)] = stage.name
            record = manifest.get(stage.name) if manifest else None
            problem = kind_problem(run_dir, name)
            if problem and not good_record(record):
                raise ConfigError(f"stage {stage.name!r}: {problem}; move it away and run again")


def _input_problem(source: Stage, record: dict | None, name: str, hashes: Hashes,
                   accept_changed: bool) -> str | None:
    """Why `name`, written by `source` (which does not run now), cannot be read as it is."""
    if record is None:
        return None  # put there by hand (its stage never ran here): taken as it is
    rerun = f"run stage {source.name!r} again (--from {source.name})"
    if not good_record(record):
        return (f"{name}, which stage {source.name!r} left unfinished (its last run "
                f"{record.get('status', 'did not finish')}): {rerun}")
    change = describe_change(name, (record.get("outputs") or {}).get(name.rstrip("?")), hashes(name))
    if change and not accept_changed:
        return f"{name}, but {change}: {rerun}, or pass --accept-changed to use it as it is"
    return None


@dataclasses.dataclass
class StagePlan:
    stage: Stage
    record: dict | None  # the stage's manifest record (None: never ran here)
    params: dict | None  # the parameters it runs with (None: unknown, so not compared)
    reasons: list[str]  # why it must run; empty when its finished record still holds

    @property
    def stale(self) -> bool:
        return bool(self.reasons)


def plan(stages: list[Stage], run_dir: Path, manifest: Manifest, params: Mapping[str, dict | None],
         selected: list[Stage] | None = None, accept_changed: bool = False) -> list[StagePlan]:
    """For each selected stage (all of `stages` by default), in pipeline order: its own reasons to
    run, else "an earlier stage is stale" when a stage before it in the selection must run."""
    order = [s.name for s in stages]
    hashes = Hashes(run_dir)
    out: list[StagePlan] = []
    for stage in stages if selected is None else selected:
        record = manifest.get(stage.name)
        upstream = [manifest.get(n) for n in order[: order.index(stage.name)]]
        reasons = stale_reasons(stage, record, params.get(stage.name), run_dir, upstream, hashes, accept_changed)
        if not reasons and any(p.stale for p in out):
            reasons = ["an earlier stage is stale"]
        out.append(StagePlan(stage, record, params.get(stage.name), reasons))
    return out
