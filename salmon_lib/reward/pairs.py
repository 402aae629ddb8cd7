"""Preference pairs for the reward model: stage 03's principle-labelled pairs and human pairs for
preference-model pre-training (PMP: Anthropic HH-RLHF and Stanford SHP formats)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from pathlib import Path
from typing import Iterable, Literal, Sequence

from ..io import DataError, iter_jsonl, read_json

ASSISTANT = "\n\nAssistant:"


@dataclasses.dataclass
class Pair:
    id: str
    prompt: str
    chosen: str
    rejected: str
    principles: list[str]  # principle texts as the RM sees them (negative definitions already applied)
    source: str = "preferences"
    label_noise: bool = False  # stage 03 flipped this label on purpose (flags.label_noise): never an accuracy target


PREFERENCE_FIELDS = {"id": (str, int), "prompt": str, "chosen": str, "rejected": str, "principles": list}


def read_preferences(path: str | Path) -> list[Pair]:
    """Stage 03's `preferences.jsonl` (SALMON or ALMoST path). Any bad line is an error naming the
    file, line and field: a silently shrunken training set is worse than a stopped stage."""
    pairs = []
    for lineno, rec in iter_jsonl(path, required=PREFERENCE_FIELDS):
        texts = []
        for k, p in enumerate(rec["principles"]):
            text = p.get("text") if isinstance(p, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{path}:{lineno}: field 'principles'[{k}] needs a non-empty 'text' string")
            texts.append(text)
        flags = rec.get("flags")
        if flags is not None and not isinstance(flags, dict):
            raise DataError(f"{path}:{lineno}: field 'flags' should be a mapping, got {type(flags).__name__}")
        noisy = (flags or {}).get("label_noise", False)
        if not isinstance(noisy, bool):
            raise DataError(f"{path}:{lineno}: field 'flags'.'label_noise' should be true or false, got {noisy!r}")
        pairs.append(Pair(str(rec["id"]), rec["prompt"], rec["chosen"], rec["rejected"], texts, label_noise=noisy))
    if not pairs:
        raise DataError(f"{path}: no preference pairs in the file")
    return pairs


def without_noised_labels(pairs: Sequence[Pair]) -> list[Pair]:
    """The pairs whose label stage 03 did not flip on purpose: what held-out accuracy is measured on
    (a flipped label counted as the target would charge the noise to the model)."""
    return [p for p in pairs if not p.label_noise]


def split_held_out(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out by prompt, so that the several draws stage 03 makes from one pair never sit on both
    sides of the split (that would inflate held-out accuracy)."""
    if fraction <= 0:
        return list(pairs), []

    def held(prompt: str) -> bool:
        h = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < fraction

    train = [p for p in pairs if not held(p.prompt)]
    test = [p for p in pairs if held(p.prompt)]
    if not train or not test:
        # Too few prompts for a hash split to land on both sides: split the prompt list itself.
        prompts = sorted({p.prompt for p in pairs})
        random.Random(seed).shuffle(prompts)
        n_test = max(1, round(fraction * len(prompts))) if len(prompts) > 1 else 0
        test_prompts = set(prompts[:n_test])
        train = [p for p in pairs if p.prompt not in test_prompts]
        test = [p for p in pairs if p.prompt in test_prompts]
    return train, test


def split_transcript(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """HH-style transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ...") that differ only in the last
    assistant turn -> (conversation so far, chosen reply, rejected reply)."""
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(ASSISTANT)
    if cut < 0:
        raise DataError(f"{where}: chosen and rejected do not share a conversation ending in 'Assistant:'")
    prompt = chosen[:cut].strip()
    return prompt, chosen[cut + len(ASSISTANT):].strip(), rejected[cut + len(ASSISTANT):].strip()


PmpFormat = Literal["auto", "hh", "shp"]


def read_human_pairs(source: str, fmt: PmpFormat = "auto", max_pairs: int = 0, shp_min_ratio: float = 2.0,
                     seed: int = 0) -> list[Pair]:
    """Human preference pairs from a local .json/.jsonl file or a `datasets` id (split "train").
    HH-RLHF rows: {chosen, rejected} transcripts. SHP rows: {history, human_ref_A, human_ref_B,
    labels, score_ratio}; only pairs with score_ratio above `shp_min_ratio` are kept."""
    rows = list(_rows(source))
    if fmt == "auto":
        fmt = _detect(rows, source)
    pairs: list[Pair] = []
    for n, (where, row) in enumerate(rows):
        try:
            if fmt == "hh":
                prompt, chosen, rejected = split_transcript(row["chosen"], row["rejected"], where)
            else:
                if float(row["score_ratio"]) <= shp_min_ratio:
                    continue
                a, b = row["human_ref_A"], row["human_ref_B"]
                prompt, (chosen, rejected) = row["history"], ((a, b) if int(row["labels"]) == 1 else (b, a))
        except DataError:
            raise
        except KeyError as err:
            raise DataError(f"{where}: missing field {err.args[0]!r} for the {fmt} format") from None
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: malformed {fmt} row ({err})") from None
        if chosen and rejected and chosen != rejected:
            pairs.append(Pair(f"{fmt}-{n}", prompt, chosen, rejected, [], source=fmt))
    if max_pairs and len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    return pairs


def _detect(rows: list, source: str) -> Literal["hh", "shp"]:
    if not rows:
        raise DataError(f"{source}: no rows")
    first = rows[0][1]
    if {"chosen", "rejected"} <= set(first):
        return "hh"
    if {"history", "human_ref_A", "human_ref_B"} <= set(first):
        return "shp"
    raise DataError(
        f"{rows[0][0]}: neither HH-RLHF (chosen, rejected) nor SHP (history, human_ref_A, human_ref_B) fields"
    )


def _rows(source: str) -> Iterable[tuple[str, dict]]:
    path = Path(source).expanduser()
    if path.suffix == ".jsonl":
        yield from ((f"{path}:{n}", rec) for n, rec in iter_jsonl(path))
    elif path.suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of rows")
        yield from ((f"{path}[{i}]", rec) for i, rec in enumerate(data))
    elif path.exists():
        raise DataError(f"{path}: expected a .json or .jsonl file")
    else:
        import datasets

        try:
            ds = datasets.load_dataset(source, split="train")
        except Exception as err:  # datasets raises many types for an unknown or unreachable id
            raise DataError(f"{source}: neither a local .json/.jsonl file nor a loadable dataset id ({err})") from None
        yield from ((f"{source}[{i}]", dict(rec)) for i, rec in enumerate(ds))
