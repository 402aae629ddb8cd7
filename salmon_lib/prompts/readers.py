"""Readers for the four prompt-pool formats the originals used, from local files or a hub dataset id.

Each reader turns rows into prompt records and fills a `SourceReport`: a malformed row (bad JSON,
a missing or ill-typed field, a null parquet cell) becomes one error naming the file and line (or
parquet row) and is skipped; a row that is well formed but not wanted (a single-turn ShareGPT
conversation, a Dolly item with a context) is counted under a reason. Nothing here raises on bad
data: a pool of a million rows should not die on row 900,000.

Locations: a `.json` / `.jsonl` / `.parquet` file, or a Hugging Face dataset id with an optional
split (`OpenAssistant/oasst1:train`), loaded through `datasets` when the hub is reachable.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

from ..io import DataError, iter_jsonl, read_text
from .records import make_record

DOLLY_CONTEXT_FREE = ("creative_writing", "brainstorming", "open_qa", "general_qa", "classification")
OPENORCA_BUCKETS = ("niv", "flan", "t0", "cot")
# OpenOrca's NLI items read as "premise ... hypothesis ... can we conclude"; they make poor chat prompts.
_NLI = re.compile(r"it is not possible to tell|\bpremise\b.*\bhypothesis\b|\bhypothesis\b.*\bpremise\b",
                  re.IGNORECASE | re.DOTALL)
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.\[\]%:-]+)?$")


@dataclasses.dataclass
class SourceReport:
    """What reading one location gave: rows seen, prompts kept, errors, and skips by reason."""

    source: str
    location: str
    rows: int = 0
    kept: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    skipped: Counter = dataclasses.field(default_factory=Counter)

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def to_dict(self, max_errors: int = 20) -> dict:
        return {"source": self.source, "location": self.location, "rows": self.rows, "kept": self.kept,
                "errors": len(self.errors), "first_errors": self.errors[:max_errors],
                "skipped": dict(self.skipped)}


def is_hub_id(location: str) -> bool:
    return not Path(location).exists() and bool(_HUB_ID.match(location))


def check_location(location: str) -> str | None:
    """Why `location` cannot be read (None when it looks readable); used before a stage starts."""
    path = Path(location).expanduser()
    if path.is_file():
        if path.suffix not in (".json", ".jsonl", ".parquet"):
            return f"{location}: expected a .json, .jsonl or .parquet file"
        return None
    if path.exists():
        return f"{location}: is not a file"
    if is_hub_id(location):
        return None
    return f"{location}: file not found (and not a dataset id of the form owner/name[:split])"


# --- rows -------------------------------------------------------------------------------------

def _json_array_rows(path: Path, report: SourceReport) -> Iterator[tuple[str, Any]]:
    """Elements of a top-level JSON array with the line each starts on. A syntax error stops the
    file there (JSON cannot be resynchronised reliably); what was read before it is kept."""
    try:
        text = read_text(path)
    except DataError as err:
        report.error(str(path), str(err).removeprefix(f"{path}: "))
        return
    decoder = json.JSONDecoder()
    ws = re.compile(r"[\s,]*")
    pos, line, counted = ws.match(text, 0).end(), 1, 0
    if not text[pos:pos + 1] == "[":
        report.error(f"{path}:1", "expected a JSON array of records (or use a .jsonl file)")
        return
    pos = ws.match(text, pos + 1).end()
    while pos < len(text) and text[pos] != "]":
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            report.error(f"{path}:{err.lineno}", f"not valid JSON ({err.msg}); the rest of the file is skipped")
            return
        yield f"{path}:{line}", obj
        pos = ws.match(text, end).end()
    if pos >= len(text):
        report.error(f"{path}:{text.count(chr(10)) + 1}", "JSON array is not closed; the rest of the file is skipped")


def _parquet_rows(path: Path, report: SourceReport, columns: list[str]) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several unrelated types for a corrupt file
        report.error(str(path), f"not a readable parquet file ({err})")
        return
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        report.error(str(path), f"missing column(s) {', '.join(missing)}; has {', '.join(pf.schema_arrow.names)}")
        return
    row = 0
    for batch in pf.iter_batches(columns=columns, batch_size=8192):
        for rec in batch.to_pylist():
            row += 1
            yield f"{path}:row {row}", rec


def _hub_rows(location: str, report: SourceReport) -> Iterator[tuple[str, Any]]:
    from ..hub import hub_reachable

    name, _, split = location.partition(":")
    split = split or "train"
    if not hub_reachable():
        report.error(location, "not a local file, and the Hugging Face Hub is unreachable from this machine; "
                               "download the data set where a hub is reachable and pass the file")
        return
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # network, auth and format errors all end the same way: skip this source
        report.error(location, f"could not load the data set ({type(err).__name__}: {err})")
        return
    for i, rec in enumerate(ds, 1):
        yield f"{location}[{split}] row {i}", rec


def iter_rows(
    location: str, report: SourceReport, parquet_columns: list[str] | None = None
) -> Iterator[tuple[str, Any]]:
    """(where, row) for every parsed row of a file or hub data set; unreadable rows and inputs go
    to `report.errors` (so `report.rows` counts parsed rows, not lines)."""
    problem = check_location(location)
    if problem:
        report.errors.append(problem)
        return
    path = Path(location).expanduser()
    if not path.exists():
        rows = _hub_rows(location, report)
    elif path.suffix == ".parquet":
        rows = _parquet_rows(path, report, parquet_columns or [])
    elif path.suffix == ".jsonl":
        rows = ((f"{path}:{n}", rec) for n, rec in iter_jsonl(path, errors=report.errors))
    else:
        rows = _json_array_rows(path, report)
    from tqdm.auto import tqdm

    for item in tqdm(rows, desc=f"reading {location}", unit=" rows", leave=False, mininterval=2):
        report.rows += 1
        yield item


def _text(rec: dict, field: str, where: str, report: SourceReport) -> str | None:
    value = rec.get(field)
    if field not in rec:
        report.error(where, f"missing field {field!r}")
    elif not isinstance(value, str):
        report.error(where, f"field {field!r} should be a string, got {type(value).__name__}")
    else:
        return value
    return None


def _rows_of_dicts(location: str, report: SourceReport, columns: list[str] | None = None) -> Iterator[tuple[str, dict]]:
    for where, rec in iter_rows(location, report, columns):
        if isinstance(rec, dict):
            yield where, rec
        else:
            report.error(where, f"expected a JSON object, got {type(rec).__name__}")


# --- the four formats --------------------------------------------------------------------------

def read_sharegpt(location: str, report: SourceReport) -> list[dict]:
    """First user turn of each conversation with at least two turns that a human opens."""
    out = []
    for where, rec in _rows_of_dicts(location, report):
        turns = rec.get("conversations", rec.get("items"))
        if not isinstance(turns, list):
            report.error(where, "missing field 'conversations' (a list of turns)")
            continue
        if len(turns) < 2:
            report.skipped["fewer than 2 turns"] += 1
            continue
        first = turns[0]
        if not isinstance(first, dict):
            report.error(where, f"conversations[0] should be an object, got {type(first).__name__}")
            continue
        role = first.get("from", first.get("role"))
        if role not in ("human", "user"):
            report.skipped["first turn not from the user"] += 1
            continue
        # The processed ShareGPT dumps keep the text under `value` or `markdown`.
        field = next((f for f in ("value", "markdown", "content", "text") if f in first), "value")
        text = _text(first, field, f"{where}: conversations[0]", report)
        if text is None:
            continue
        out.append(make_record(text, "sharegpt", where=where, conversation_id=rec.get("id")))
    report.kept += len(out)
    return out


def read_openorca(location: str, report: SourceReport) -> list[dict]:
    """The `question` of each row, bucketed by id prefix; NLI-style items are skipped."""
    out = []
    for where, rec in _rows_of_dicts(location, report, ["id", "question"]):
        rid = _text(rec, "id", where, report)
        question = _text(rec, "question", where, report) if rid is not None else None
        if question is None:
            continue
        bucket = rid.split(".", 1)[0]
        if bucket not in OPENORCA_BUCKETS:
            report.skipped[f"id prefix not in {'/'.join(OPENORCA_BUCKETS)}"] += 1
            continue
        if _NLI.search(question):
            report.skipped["NLI-style item"] += 1
            continue
        out.append(make_record(question, "openorca", "reasoning", where=where, bucket=bucket, orca_id=rid))
    report.kept += len(out)
    return out


def read_dolly(location: str, report: SourceReport, categories: tuple[str, ...] = DOLLY_CONTEXT_FREE) -> list[dict]:
    """Instructions of the context-free categories (the answer does not depend on a passage)."""
    out = []
    for where, rec in _rows_of_dicts(location, report):
        instruction = _text(rec, "instruction", where, report)
        category = _text(rec, "category", where, report) if instruction is not None else None
        if category is None:
            continue
        if category not in categories:
            report.skipped["category not selected"] += 1
            continue
        if rec.get("context"):
            report.skipped["has a context passage"] += 1
            continue
        out.append(make_record(instruction, "dolly", where=where, category=category))
    report.kept += len(out)
    return out


def read_oasst1(location: str, report: SourceReport) -> list[dict]:
    """Root prompts that got at least one reply, in any language.

    Accepts the flat message table (`message_id`, `parent_id`, `text`, as on the hub) and the
    nested tree export (`{"prompt": {"text", "replies": [...]}}` per line)."""
    # File order is kept: entries are tree-export records, or ids of flat roots resolved at the end.
    entries: list[dict | str] = []
    roots: dict[str, dict] = {}
    has_reply: set[str] = set()
    for where, rec in _rows_of_dicts(location, report):
        if isinstance(rec.get("prompt"), dict):  # tree export: one root per row
            root = rec["prompt"]
            text = _text(root, "text", f"{where}: prompt", report)
            if text is None:
                continue
            if root.get("replies"):
                entries.append(make_record(text, "oasst1", where=where, lang=root.get("lang"),
                                           message_id=root.get("message_id")))
            else:
                report.skipped["root without replies"] += 1
            continue
        mid = _text(rec, "message_id", where, report)
        if mid is None:
            continue
        parent = rec.get("parent_id")
        if parent is None:
            text = _text(rec, "text", where, report)
            if text is not None:
                roots[mid] = make_record(text, "oasst1", where=where, lang=rec.get("lang"), message_id=mid)
                entries.append(mid)
        elif isinstance(parent, str):
            has_reply.add(parent)
        else:
            report.error(where, f"field 'parent_id' should be a string or null, got {type(parent).__name__}")
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            out.append(entry)
        elif entry in has_reply:
            out.append(roots[entry])
        else:
            report.skipped["root without replies"] += 1
    report.kept += len(out)
    return out


READERS: dict[str, Callable[[str, SourceReport], list[dict]]] = {
    "sharegpt": read_sharegpt,
    "openorca": read_openorca,
    "dolly": read_dolly,
    "oasst1": read_oasst1,
}


def read_source(kind: str, location: str) -> tuple[list[dict], SourceReport]:
    if kind not in READERS:
        raise ValueError(f"unknown source format {kind!r}; known: {', '.join(READERS)}")
    report = SourceReport(kind, location)
    return READERS[kind](location, report), report
