"""A stage's declared outputs on disk, against what its manifest record says it wrote.

- Damage: `output_changes` compares content hashes, so a truncated, emptied or replaced output
  (a junk adapter file, a folder where a file was) is noticed by `status` and the plan.
- A failing stage never destroys the last good outputs: before a stage reruns, the runner copies
  its good outputs to `<run>/.previous/<stage>/` (`keep_previous`); if the stage fails they are
  moved back (`restore_previous`), and once it finishes the copy is dropped. The runner does this
  for every stage, so no stage needs its own write-at-the-end discipline to be safe (stages still
  resume from their record logs: the outputs stay in place while the stage runs).
- Outputs changed after their stage wrote them are not overwritten by its rerun: they are moved to
  `<run>/changed/<time>/` first (`set_aside_changed`), so a hand-edited file is never lost.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from ..provenance import artifact_path, hash_path
from ..stages import Stage
from .manifest import now

PREVIOUS = ".previous"  # <run>/.previous/<stage>/: the last good outputs while the stage reruns
CHANGED = "changed"  # <run>/changed/<time>/: outputs changed by hand or damaged, kept when their stage reruns
SNAPSHOT_INDEX = "snapshot.json"


def is_folder(name: str) -> bool:
    return name.rstrip("?").endswith("/")


def _kind(path: Path) -> str | None:
    return "folder" if path.is_dir() else "file" if path.exists() else None


def kind_problem(run_dir: Path, name: str) -> str | None:
    """A declared output that exists as the wrong kind (a folder where the stage writes a file)."""
    path = artifact_path(run_dir, name)[0]
    want = "folder" if is_folder(name) else "file"
    have = _kind(path)
    if have is None or have == want:
        return None
    return f"{path} is a {have}, where the stage writes a {want}"


def _folder_diff(want: dict, have: dict) -> str:
    old, new = want.get("tree"), have.get("tree")
    if old is None or new is None:
        return "its content differs"
    parts = [f"{n} differs" for n in sorted(set(old) & set(new)) if old[n] != new[n]]
    parts += [f"{n} removed" for n in sorted(set(old) - set(new))]
    parts += [f"{n} added" for n in sorted(set(new) - set(old))]
    return ", ".join(parts[:4]) + (f" and {len(parts) - 4} more" if len(parts) > 4 else "")


def describe_change(name: str, want: dict | None, have: dict | None) -> str | None:
    """How an output on disk (`have`) differs from the recorded one (`want`); None when it does not."""
    key = name.rstrip("?")
    if not isinstance(want, dict) or (have is not None and have.get("sha256") == want.get("sha256")):
        return None
    if have is None:
        return f"{key} is missing"
    if ("files" in want) != ("files" in have):
        now_kind, was_kind = ("folder", "file") if "files" in have else ("file", "folder")
        return f"{key} is now a {now_kind}, it was a {was_kind}"
    if "files" in have:
        return f"{key} changed since the stage wrote it ({_folder_diff(want, have)})"
    if have["bytes"] == 0:
        return f"{key} was emptied ({want.get('bytes', '?')} bytes when the stage wrote it)"
    return f"{key} changed since the stage wrote it ({want.get('bytes', '?')} -> {have['bytes']} bytes)"


def good_record(record: dict | None) -> bool:
    """Whether the outputs the record hashed are good ones: the stage finished, or it failed and
    the runner moved the previous good outputs back."""
    return bool(record) and (record.get("status") == "finished" or bool(record.get("restored")))


def output_changes(stage: Stage, record: dict | None, run_dir: Path,
                   hashes: Callable[[str], Any] | None = None) -> dict[str, str]:
    """{declared output: how it changed} against a good record (missing outputs are left to the
    caller: a never-written optional output is no change)."""
    if not good_record(record):
        return {}
    hashes = hashes or (lambda n: hash_path(artifact_path(run_dir, n)[0]))
    recorded = record.get("outputs") or {}
    out = {}
    for name in stage.outputs:
        have = hashes(name)
        if have is None:
            continue
        change = describe_change(name, recorded.get(name.rstrip("?")), have)
        if change:
            out[name] = change
    return out


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def set_aside_changed(stage: Stage, record: dict | None, run_dir: Path, log: Callable[[str], None]) -> list[str]:
    """Move outputs that changed after the stage wrote them to <run>/changed/<time>/ before it reruns."""
    changes = output_changes(stage, record, run_dir)
    if not changes:
        return []
    target = run_dir / CHANGED / now()[:19].replace(":", "")
    for name, why in changes.items():
        src = artifact_path(run_dir, name)[0]
        _move(src, target / src.relative_to(run_dir))
        log(f"[{stage.name}] {why}: kept as {target / src.relative_to(run_dir)}")
    return list(changes)


def keep_previous(stage: Stage, record: dict | None, run_dir: Path) -> None:
    """Copy the stage's good outputs to <run>/.previous/<stage>/ before it reruns. With no good
    record, a copy left by an earlier attempt (interrupted, or failed again) is kept as it is."""
    target = run_dir / PREVIOUS / stage.name
    if not good_record(record):
        return
    staging = target.with_name(f".{stage.name}.tmp")
    _remove(staging)
    staging.mkdir(parents=True)
    present = []
    for name in stage.outputs:
        src = artifact_path(run_dir, name)[0]
        if not src.exists():
            continue
        dst = staging / src.relative_to(run_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
        present.append(name)
    (staging / SNAPSHOT_INDEX).write_text(json.dumps({"outputs": present, "taken": now()}))
    _remove(target)
    os.replace(staging, target)


def restore_previous(stage: Stage, run_dir: Path) -> bool:
    """After a failure: put the outputs kept by `keep_previous` back (and remove declared outputs
    that did not exist then). Returns whether there was anything to restore."""
    target = run_dir / PREVIOUS / stage.name
    index = target / SNAPSHOT_INDEX
    if not index.is_file():
        return False
    present = set(json.loads(index.read_text())["outputs"])
    for name in stage.outputs:
        path = artifact_path(run_dir, name)[0]
        _remove(path)
        if name in present:
            _move(target / path.relative_to(run_dir), path)
    _remove(target)
    return True


def drop_previous(stage: Stage, run_dir: Path) -> None:
    _remove(run_dir / PREVIOUS / stage.name)
