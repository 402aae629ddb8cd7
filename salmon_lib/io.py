"""Files: atomic writes, JSONL with line-numbered errors, and resumable record logs.

Every finished artifact is written to a temporary file in the same folder and renamed into place,
so a crash never leaves a half-written file where a finished one is expected. Stages that produce
many records append them to a `RecordLog`, which survives `kill -9` (a torn last line is dropped
on reopen) and tells a restarted stage which ids are already done.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


class DataError(ValueError):
    """An input file is missing or malformed; the message names the file, line and field."""


TEMP_SUFFIX = ".tmp"  # in-flight files (and folders) of atomic writes are named .<name>.<random>.tmp


def utf8_problem(data: bytes) -> tuple[int, int, int] | None:
    """(line, column, byte) where `data` stops being UTF-8 (1-based); None when it is UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        return line, column, data[err.start]
    return None


def file_problem(path: Path, what: str = "file") -> str | None:
    """Why `path` cannot be read as a file (None when it can): missing, a folder, not readable."""
    if path.is_dir():
        return f"{path}: is a folder, expected a {what}"
    if not path.exists():
        return f"{path}: {what} not found"
    if not os.access(path, os.R_OK):
        return f"{path}: {what} is not readable (permission denied)"
    return None


def read_text(path: str | Path, what: str = "file", error: type[Exception] = DataError) -> str:
    """The UTF-8 text of a file; `error` (naming the path, and the line of a bad byte) otherwise."""
    path = Path(path)
    problem = file_problem(path, what)
    if problem:
        raise error(problem)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    bad = utf8_problem(data)
    if bad:
        line, column, byte = bad
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x} at column {column}); save the file as UTF-8")
    return data.decode("utf-8")


def lone_surrogate(obj: Any, where: str = "") -> str | None:
    """The field (dotted path) of a string holding a lone surrogate: JSON accepts the escape
    "\\ud800", but it is no text and breaks tokenizers and UTF-8 writers."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return where or "value"
        return None
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    return next((found for key, value in items if (found := lone_surrogate(value, key))), None)


def clean_temp_files(folder: str | Path) -> list[Path]:
    """Remove what killed writers left under `folder`: .<name>.<random>.tmp files and folders of
    atomic writes, .<name>.staging folders of model saves. Returns them. Only call it while no
    other process writes there (under the run lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for pattern in (f".*{TEMP_SUFFIX}", ".*.staging") for p in folder.rglob(pattern)]
    removed = []
    for path in sorted(found, key=lambda p: len(p.parts)):
        if any(parent in removed for parent in path.parents):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def aside_path(path: Path) -> Path:
    """Where `restored_on_failure` keeps a folder a block moved out of the way."""
    return path.with_name(f".{path.name}.aside")


@contextmanager
def restored_on_failure(path: str | Path) -> Iterator[Path]:
    """For a block that may move `path` to `aside_path(path)` to start afresh (yielded): if the block
    fails, what it wrote at `path` is dropped and the old one moves back; if it succeeds, the old one
    is dropped. So a fresh start that fails never costs the previous state."""
    path = Path(path)
    aside = aside_path(path)
    shutil.rmtree(aside, ignore_errors=True)  # abandoned by a killed run: older than what is at `path`
    try:
        yield aside
    except BaseException:
        if aside.exists():
            shutil.rmtree(path, ignore_errors=True)
            os.replace(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def replace_folder(staging: str | Path, folder: str | Path) -> None:
    """Put a fully written `staging` folder at `folder`, the old one moved aside first and removed
    only after the rename, so a crash leaves either the old folder or the new one in place."""
    staging, folder = Path(staging), Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, so the file of that name cannot be written; move the folder away")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
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


def read_json(path: str | Path, what: str = "file") -> Any:
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def read_yaml(path: str | Path, what: str = "file") -> Any:
    import yaml

    path = Path(path)
    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', None) or err})") from None


def _parse_line(raw: bytes, required: dict[str, type | tuple[type, ...]] | None) -> tuple[dict | None, str | None]:
    """(record, None) for a good JSONL line, (None, why) for a bad one, (None, None) for a blank one."""
    bad = utf8_problem(raw)
    if bad:
        return None, f"not UTF-8 text (byte 0x{bad[2]:02x} at column {bad[1]})"
    line = raw.decode("utf-8")
    if not line.strip():
        return None, None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg})"
    if not isinstance(rec, dict):
        return None, f"expected a JSON object, got {type(rec).__name__}"
    field = lone_surrogate(rec) if "\\u" in line.lower() else None
    if field:
        return None, f"field {field!r} holds a lone surrogate escape such as \\ud800 (not text)"
    for field, tp in (required or {}).items():
        if field not in rec:
            return None, f"missing field {field!r}"
        if not isinstance(rec[field], tp):
            return None, f"field {field!r} should be {getattr(tp, '__name__', tp)}, got {type(rec[field]).__name__}"
    return rec, None


def iter_jsonl(
    path: str | Path, required: dict[str, type | tuple[type, ...]] | None = None, errors: list[str] | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line.

    `required` maps field names to expected types. A malformed line (bad JSON, not UTF-8, a lone
    surrogate escape, a missing or ill-typed field) raises DataError naming the file, line and
    field, unless `errors` is given: then the message is appended there and the line skipped, so a
    long job can count bad records instead of dying on the first one.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise DataError(problem)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            rec, problem = _parse_line(raw, required)
            if rec is not None:
                yield lineno, rec
            elif problem is None:
                continue
            elif errors is not None:
                errors.append(f"{path}:{lineno}: {problem}")
            else:
                raise DataError(f"{path}:{lineno}: {problem}")


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
        problem = file_problem(self.path)
        if problem:
            raise DataError(problem)
        good_bytes = kept = 0
        with open(self.path, "rb") as f:
            lines = f.readlines()
        for lineno, raw in enumerate(lines, 1):
            try:
                rec = json.loads(raw) if raw.endswith(b"\n") else None
                rid = rec[self.key] if isinstance(rec, dict) else None
            except (ValueError, KeyError):
                rid = None
            if rid is None:
                if lineno == len(lines):
                    break  # the torn last line of a killed writer: dropped below
                raise DataError(f"{self.path}:{lineno}: not a record with {self.key!r} in the middle of the "
                                "file; it was changed by hand or damaged (move it away to start over)")
            self.done[rid] = rec.get("signature")
            good_bytes += len(raw)
            kept += 1
        if good_bytes != self.path.stat().st_size:
            # Under the writers' lock, and only a tail that is still torn: a tail seen while another
            # process was appending is complete once the lock is ours. Without the lock two processes
            # opening a demo's shared score cache truncated it to two different lengths, and the
            # later, longer one extended the file with NUL bytes.
            with open(self.path, "r+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.seek(good_bytes)
                tail = f.read()
                if tail and not tail.endswith(b"\n"):
                    f.truncate(good_bytes)
        if kept > len(self.done):  # superseded records: keep the latest of each id
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
        # one write() on an O_APPEND descriptor: processes appending to the same log (a generator
        # pool's workers sharing a score cache) never interleave inside each other's lines
        data = "".join(lines).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # no repair truncates the file under a write
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

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
