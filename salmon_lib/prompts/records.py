"""The prompt record every later stage reads, with its stable id.

`{id, prompt, source, question_type, meta}`: `id` is a hash of the normalised prompt, so the same
question gets the same id whichever file or run it came from, and two prompts that differ only in
case, punctuation or spacing collide on purpose (that is the exact-duplicate test).

`question_type` is the coarse kind later stages key on (SALMON's RL pool uses it for length bonus
and principle boosts): "general", "reasoning" or "red_team". A finer type (a TGRT question type, a
Dolly category, an OpenOrca bucket) goes into `meta`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from ..io import DataError, iter_jsonl

QUESTION_TYPES = ("general", "reasoning", "red_team")

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Case-, punctuation- and spacing-insensitive form; keeps letters of every script."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", text).strip()


def prompt_id(text: str) -> str:
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()[:16]


def make_record(prompt: str, source: str, question_type: str = "general", **meta) -> dict:
    if question_type not in QUESTION_TYPES:
        raise ValueError(f"question_type must be one of {QUESTION_TYPES}, got {question_type!r}")
    return {"id": prompt_id(prompt), "prompt": prompt, "source": source, "question_type": question_type,
            "meta": meta}


def read_pool(run_dir: str | Path) -> list[dict]:
    """A run's prompts.jsonl as `{id, prompt, question_type}` records in file order (stages 04-06 read
    it this way); a bad line or a duplicate id names file and line."""
    path = Path(run_dir) / "prompts.jsonl"
    pool, seen = [], set()
    for lineno, rec in iter_jsonl(path, {"id": (str, int), "prompt": str}):
        pid = str(rec["id"])
        if pid in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {pid!r}")
        seen.add(pid)
        pool.append({"id": pid, "prompt": rec["prompt"], "question_type": rec.get("question_type") or "general"})
    if not pool:
        raise DataError(f"{path}: no prompts")
    return pool
