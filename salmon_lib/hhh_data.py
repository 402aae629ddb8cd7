"""The HHH alignment pairs (BIG-bench `hhh_eval.json`, or `HuggingFaceH4/hhh_alignment`), read one
way for every stage that evaluates on them (the judge in stage 03, the reward model in stage 04,
the policies in stage 06).

The set is for EVALUATION ONLY: no code path trains on it, and the project ships no copy (point
the stage's setting at your own file). One reading: the request is the bare user text, as in the
training data (a multi-turn context is written out turn by turn), and the two outputs are the last
assistant turns. One type order (`HHH_TYPES`) for every table and loop.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from .io import DataError, read_json
from .paths import find_file

HHH_TYPES = ("helpful", "harmless", "honest", "other")
SHARED_FILE = "shared/data/hhh_eval.json"  # where the evaluation data lives beside a checkout
_TURN = re.compile(r"\n\n(Human|Assistant): ")


def find_hhh(setting: str) -> str | None:
    """Resolve an HHH setting: "" = none, "auto" = $SALMON_HHH_EVAL or shared/data/hhh_eval.json
    beside the project, a file the path resolver finds, else as given (a dataset id)."""
    if not setting:
        return None
    if setting != "auto":
        found = find_file(setting, beside_project=True)
        return str(found) if found else setting
    env = os.environ.get("SALMON_HHH_EVAL", "")
    if env and Path(env).is_file():
        return env
    found = find_file(SHARED_FILE, beside_project=True)
    return str(found) if found else None


def hhh_source(setting: str) -> tuple[str | None, str | None]:
    """(what to read, None), or (None, why the HHH evaluation is skipped)."""
    source = find_hhh(setting)
    if source is None:
        return None, ("the HHH setting is empty" if not setting else
                      f"no HHH file found ({setting!r}: $SALMON_HHH_EVAL or ../{SHARED_FILE}); the project ships no "
                      "copy: point the setting at your own hhh_eval.json")
    if source.endswith(".json") and not Path(source).expanduser().is_file():
        return None, (f"{setting}: file not found (the project ships no copy; point the setting at your own "
                      "hhh_eval.json)")
    return source, None


def _turns(transcript: str, where: str) -> list[tuple[str, str]]:
    parts = _TURN.split(transcript)
    if parts[0].strip() or len(parts) < 5:
        raise DataError(f"{where}: expected '\\n\\nHuman: ...\\n\\nAssistant: ...' turns")
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]


def _request(context: list[tuple[str, str]]) -> str:
    if len(context) == 1:
        return context[0][1]
    return "\n\n".join(f"{'User' if role == 'Human' else 'Assistant'}: {text}" for role, text in context)


def load_hhh(source: str | Path) -> list[dict]:
    """`[{id, type, prompt, chosen, rejected}]` from a local `{chosen, rejected, type}` JSON list of
    transcripts, or from the `HuggingFaceH4/hhh_alignment` dataset (one config per type)."""
    path = Path(source).expanduser()
    if path.suffix != ".json":
        return _load_dataset(str(source))
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of {{chosen, rejected, type}}")
    items = []
    for i, rec in enumerate(data):
        where = f"{path}: item {i}"
        for field in ("chosen", "rejected", "type"):
            if not isinstance(rec.get(field) if isinstance(rec, dict) else None, str):
                raise DataError(f"{where}: missing or non-string field {field!r}")
        chosen, rejected = _turns(rec["chosen"], f"{where}.chosen"), _turns(rec["rejected"], f"{where}.rejected")
        if chosen[:-1] != rejected[:-1] or chosen[-1][0] != "Assistant" or rejected[-1][0] != "Assistant":
            raise DataError(f"{where}: chosen and rejected must share the context and end in an assistant turn")
        items.append({"id": f"hhh-{i}", "type": rec["type"], "prompt": _request(chosen[:-1]),
                      "chosen": chosen[-1][1], "rejected": rejected[-1][1]})
    return items


def _load_dataset(name: str) -> list[dict]:
    import datasets

    items = []
    for kind in HHH_TYPES:
        for i, row in enumerate(datasets.load_dataset(name, kind, split="test")):
            choices, labels = row["targets"]["choices"], row["targets"]["labels"]
            items.append({"id": f"hhh-{kind}-{i}", "type": kind, "prompt": row["input"].strip(),
                          "chosen": choices[labels.index(1)], "rejected": choices[labels.index(0)]})
    return items


def sample_hhh(items: list[dict], max_pairs: int, seed: int) -> list[dict]:
    """A seeded sample of `max_pairs` items in file order (all of them when 0 or more than there are)."""
    if not max_pairs or max_pairs >= len(items):
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), max_pairs))]


def types_in_order(types) -> list[str]:
    """The types present, in `HHH_TYPES` order (any other type after them, sorted)."""
    present = set(types)
    return [t for t in HHH_TYPES if t in present] + sorted(present - set(HHH_TYPES))
