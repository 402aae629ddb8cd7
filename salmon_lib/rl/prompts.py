"""RL prompts: those of prompts.jsonl that stages 01 and 03 did not answer, split into a training
set and a held-out slice for stage 06, recorded in `rl_prompts.json`.

A prompt counts as used when its id, or the id of its normalised text, appears in
`self_align.jsonl` (stage 01) or `preferences.jsonl` / `pairs.jsonl` (stage 03): matching the text as
well catches a record whose id field means something else (stage 03's pair ids).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from ..io import DataError, atomic_write_json, iter_jsonl, read_json
from ..prompts.records import prompt_id, read_pool

SPLIT_FILE = "rl_prompts.json"
USED_BY = {"self_align": ("self_align.jsonl",), "preferences": ("preferences.jsonl", "pairs.jsonl")}


def used_ids(run_dir: str | Path) -> dict[str, set[str]]:
    """Per earlier stage, the prompt ids (and ids of normalised prompt texts) it answered."""
    used: dict[str, set[str]] = {}
    for stage, files in USED_BY.items():
        ids: set[str] = set()
        for name in files:
            path = Path(run_dir) / name
            if not path.is_file():
                continue
            for _, rec in iter_jsonl(path):
                for key in ("id", "prompt_id", "pair_id"):
                    if isinstance(rec.get(key), (str, int)):
                        ids.add(str(rec[key]))
                if isinstance(rec.get("prompt"), str):
                    ids.add(prompt_id(rec["prompt"]))
        used[stage] = ids
    return used


def split_prompts(pool: list[dict], used: dict[str, set[str]], heldout: int, seed: int,
                  exclude_used: bool = True, max_prompts: int = 0) -> dict:
    """The `rl_prompts.json` record: a seeded shuffle of the unused prompts, the first `heldout` for
    stage 06 and the rest (at most `max_prompts`) for training."""
    excluded = {stage: 0 for stage in used}
    fresh = []
    for rec in pool:
        keys = {rec["id"], prompt_id(rec["prompt"])}
        hit = next((stage for stage, ids in used.items() if keys & ids), None) if exclude_used else None
        if hit is None:
            fresh.append(rec["id"])
        else:
            excluded[hit] += 1
    random.Random(seed).shuffle(fresh)
    train = fresh[heldout:]
    if max_prompts:
        train = train[:max_prompts]
    if not train:
        raise DataError(
            f"no RL training prompts: prompts.jsonl has {len(pool)}, {sum(excluded.values())} were used by earlier "
            f"stages ({', '.join(f'{k} {v}' for k, v in excluded.items())}) and {min(heldout, len(fresh))} are held "
            "out; add prompts in stage 00, lower heldout_prompts, or set exclude_used = False")
    return {"train": train, "heldout": fresh[:heldout], "excluded": excluded, "seed": seed}


def write_split(run_dir: str | Path, heldout: int, seed: int, exclude_used: bool = True, max_prompts: int = 0) -> dict:
    split = split_prompts(read_pool(run_dir), used_ids(run_dir), heldout, seed, exclude_used, max_prompts)
    atomic_write_json(Path(run_dir) / SPLIT_FILE, split)
    return split


def read_split(run_dir: str | Path) -> dict:
    path = Path(run_dir) / SPLIT_FILE
    split = read_json(path)
    for key in ("train", "heldout"):
        if not isinstance(split.get(key), list):
            raise DataError(f"{path}: field {key!r} missing or not a list; rerun stage 05 (rl)")
    return split


def train_records(run_dir: str | Path, split: dict) -> list[dict]:
    """The training prompts' records, in the split's (shuffled) order."""
    by_id = {r["id"]: r for r in read_pool(run_dir)}
    missing = [i for i in split["train"] if i not in by_id]
    if missing:
        raise DataError(f"{Path(run_dir) / SPLIT_FILE}: {len(missing)} training id(s) are not in prompts.jsonl "
                        f"(e.g. {missing[0]!r}): prompts.jsonl changed since the split; rerun stage 05 (rl)")
    return [by_id[i] for i in split["train"]]


def split_digest(split: dict) -> str:
    return hashlib.sha256(repr((split["train"], split["heldout"])).encode()).hexdigest()[:16]
