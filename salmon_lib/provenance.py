"""What produced a record: signatures of inputs and settings, and seeds derived per record.

A resumable stage stores each record with the signature of everything that produced it (the
prompt as rendered, the model and the content of its adapter, the sampling settings, the seed).
On a rerun, a record is reused only under the signature it would get now (`RecordLog.current`),
so exactly the records whose inputs or settings changed are made again. Seeds are derived from
the record's id, never from its position in a batch or a run, so a record does not depend on
which other records share its batch: an interrupted-and-resumed run writes the same records as
an uninterrupted one. A folder that training resumes from (checkpoints) is guarded the same way
by a fingerprint of its settings and training data (`reset_if_changed`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .io import aside_path, atomic_write_json

log = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.json"


def signature(obj: Any) -> str:
    """A short, stable digest of a JSON-able value (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def derive_seed(seed: int, *parts: Any) -> int:
    """A seed for one record (and one use of it, e.g. "thoughts" or "answer"), from the stage's
    seed and the record's id; in [0, 2**31) so that every backend and library accepts it."""
    text = json.dumps([seed, *parts], ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def content_hash(path: str | Path) -> str | None:
    """sha256 of a file's bytes or a folder's files (names and bytes), as the run manifest hashes
    artifacts; None when the path does not exist."""
    found = hash_path(Path(path))
    return found["sha256"] if found else None


def artifact_path(run_dir: Path, name: str) -> tuple[Path, bool]:
    """(path, optional) of a declared artifact; a trailing "?" marks it optional."""
    optional = name.endswith("?")
    return run_dir / name.rstrip("?").rstrip("/"), optional


def hash_path(path: Path) -> dict[str, Any] | None:
    """Content hash of a file or a folder (relative names + bytes of every file); None if absent.
    A folder's record also lists each file's hash ("tree"), so a damaged file can be named.

    Timestamps never enter the hash: a copied or touched artifact is the same artifact.
    """
    if path.is_file():
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return {"sha256": digest, "bytes": path.stat().st_size}
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    total = 0
    tree = {}
    for sub in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = sub.relative_to(path)
        # hidden names are in-flight temp files of atomic writes (or VCS debris), not content
        if any(part.startswith(".") for part in rel.parts):
            continue
        with open(sub, "rb") as f:
            digest = hashlib.file_digest(f, "sha256")
        h.update(f"{rel.as_posix()}\0".encode())
        h.update(digest.digest())
        tree[rel.as_posix()] = digest.hexdigest()
        total += sub.stat().st_size
    return {"sha256": h.hexdigest(), "bytes": total, "files": len(tree), "tree": tree}


def hash_artifacts(run_dir: Path, names: list[str]) -> dict[str, Any]:
    return {name.rstrip("?"): hash_path(artifact_path(run_dir, name)[0]) for name in names}


def reset_if_changed(folder: str | Path, fingerprint: dict) -> bool:
    """Move `folder` (e.g. training checkpoints) to `io.aside_path` when it was made under another
    fingerprint, then record the current one in it. Returns whether it moved anything: a checkpoint
    trained on other data or settings must never be resumed. Call it inside `io.restored_on_failure`,
    which puts the old folder back if the fresh start fails and drops it if it succeeds."""
    folder = Path(folder)
    path = folder / FINGERPRINT
    current = json.loads(json.dumps(fingerprint, default=str))  # as it reads back from the file
    stale = folder.is_dir() and (not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != current)
    if stale:
        log.warning("%s was made from other data or settings; starting from scratch", folder)
        shutil.rmtree(aside_path(folder), ignore_errors=True)
        os.replace(folder, aside_path(folder))
    atomic_write_json(path, current)
    return stale
