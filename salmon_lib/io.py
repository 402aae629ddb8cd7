"""Files: atomic writes, JSONL with line-numbered errors, and resumable record logs.

Every finished artifact is written to a temporary file in the same folder and renamed into place,
so a crash never leaves a half-written file where a finished one is expected. Stages that produce
many records append them to a `RecordLog`, which survives `kill -9` (a torn last line is dropped
on reopen) and tells a restarted stage which ids are already done.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


class DataError(ValueError):
    """An input file is missing or malformed; the message names the file, line and field."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write all records atomically; return how many."""
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
    return n


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def read_yaml(path: str | Path, what: str = "file") -> Any:
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({err})") from None


def iter_jsonl(
    path: str | Path, required: dict[str, type | tuple[type, ...]] | None = None, errors: list[str] | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line.

    `required` maps field names to expected types. A malformed line raises DataError naming the
    file, line and field, unless `errors` is given: then the message is appended there and the
    line skipped, so a long job can count bad records instead of dying on the first one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            problem = None
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                problem = f"{path}:{lineno}: not valid JSON ({err.msg})"
            else:
                if not isinstance(rec, dict):
                    problem = f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
                else:
                    for field, tp in (required or {}).items():
                        if field not in rec:
                            problem = f"{path}:{lineno}: missing field {field!r}"
                            break
                        if not isinstance(rec[field], tp):
                            problem = (
                                f"{path}:{lineno}: field {field!r} should be "
                                f"{getattr(tp, '__name__', tp)}, got {type(rec[field]).__name__}"
                            )
                            break
            if problem is None:
                yield lineno, rec
            elif errors is not None:
                errors.append(problem)
            else:
                raise DataError(problem)


def read_jsonl(path: str | Path, required: dict[str, type | tuple[type, ...]] | None = None) -> list[dict]:
    return [rec for _, rec in iter_jsonl(path, required)]


class RecordLog:
    """An append-only JSONL file of records keyed by `key`, for stages that resume.

    Opening it drops a torn trailing line (left by a killed process) and loads the ids already
    written; `append` flushes and fsyncs each batch so that what `current` reports is on disk.

    A record may carry a `signature` (`salmon_lib.provenance.signature` of what produced it). A
    record is current only under the signature its producer gives it now, so a stage regenerates
    exactly the records whose signature changed; the new record supersedes the old one (the later
    line wins, and reopening the file keeps one line per id).
    """

    def __init__(self, path: str | Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict = {}  # id -> signature of its latest record (None: unsigned)
        self._repair_and_load()

    def _repair_and_load(self) -> None:
        if not self.path.exists():
            return
        good_bytes = lines = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError:
                    break
                self.done[rec[self.key]] = rec.get("signature")
                good_bytes += len(raw)
                lines += 1
        if good_bytes != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)
        if lines > len(self.done):  # superseded records: keep the latest of each id
            write_jsonl(self.path, self.records())

    def current(self, rid: object, signature: str | None = None) -> bool:
        """Whether the record `rid` is written under `signature` (None: written unsigned)."""
        return rid in self.done and self.done[rid] == signature

    def append(self, records: Iterable[dict]) -> None:
        """Write the records that are not current under their own `signature`."""
        lines = []
        for rec in records:
            rid, sig = rec[self.key], rec.get("signature")
            if self.current(rid, sig):
                continue
            self.done[rid] = sig
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())

    def records(self, wanted: dict | None = None) -> list[dict]:
        """The latest record of each id, in the order ids first appeared; with `wanted` ({id:
        signature}), only those current under it, in the order of `wanted`."""
        latest: dict = {}
        for rec in read_jsonl(self.path) if self.path.exists() else []:
            latest[rec[self.key]] = rec
        if wanted is None:
            return list(latest.values())
        return [latest[rid] for rid, sig in wanted.items() if rid in latest and latest[rid].get("signature") == sig]

    def __contains__(self, rid: object) -> bool:
        return rid in self.done

    def __len__(self) -> int:
        return len(self.done)
