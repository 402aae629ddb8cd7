"""Cleaning filters for a prompt pool: ShareGPT artefacts, token length, language, decontamination.

Each filter takes a list of records and returns the ones it keeps (in order); the stage counts
what each removed per source. Deduplication lives in `dedup.py`, subsampling in `sampling.py`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

from ..io import DataError, read_json, read_text
from .records import normalise, prompt_id

# Text the ShareGPT browser extension and the chat UI pasted into exported prompts. Stripped
# repeatedly from both ends, because a prompt can carry several ("1 / 1 ... Translate now").
_LANGUAGES = ("English", "Chinese", "Korean", "Japanese", "Spanish", "French", "German", "Italian",
              "Portuguese", "Russian", "Arabic", "Hindi", "Vietnamese", "Thai", "Indonesian", "Turkish",
              "Dutch", "Polish", "Swedish", "Ukrainian", "Czech", "Greek", "Hebrew", "Persian",
              "Romanian", "Hungarian", "Danish", "Finnish", "Norwegian", "Malay", "Bengali", "Tagalog")
_LANG_ALT = r"(?:" + "|".join(_LANGUAGES) + r")(?:\s*\(\w+\))?"
_LEADING = [
    # The UI's page counter, "2 / 3", glued to the text; "1/2 cup" (no spaces) is not one.
    re.compile(r"^\s*(\d{1,2}) / (\d{1,2})(?!\d)"),
]
_TRAILING = [
    re.compile(r"(?<!\d)(\d{1,2}) / (\d{1,2})\s*$"),
    re.compile(r"\s*(?:Share|Copy)\s+Prompt\s*$", re.IGNORECASE),
    re.compile(r"\s*Translate\s+now\s*$", re.IGNORECASE),
    re.compile("\\s*\uc9c0\uae08\\s*\ubc88\uc5ed\ud558\uae30\\s*$"),  # Korean for "translate now"
    re.compile(r"\s*(?:Output\s+)?Language\s*:\s*" + _LANG_ALT + r"\s*\.?\s*$", re.IGNORECASE),
]


def _strip_ok(m: re.Match | None) -> bool:
    # A match with two groups is an "n / m" candidate: n <= m looks like a page counter, while
    # "10 / 2" is arithmetic and stays.
    return m is not None and (m.lastindex != 2 or 1 <= int(m.group(1)) <= int(m.group(2)))


def strip_sharegpt_artifacts(text: str) -> str:
    changed = True
    while changed:
        changed = False
        for pattern in _LEADING:
            m = pattern.search(text)
            if _strip_ok(m):
                text, changed = text[m.end():].lstrip(), True
        for pattern in _TRAILING:
            m = pattern.search(text)
            if _strip_ok(m):
                text, changed = text[:m.start()].rstrip(), True
    return text.strip()


def strip_artifacts(records: list[dict]) -> tuple[list[dict], int]:
    """Strip whitespace everywhere and interface artefacts from ShareGPT prompts; drop prompts left
    empty. Returns the records (ids recomputed) and how many texts changed."""
    out, changed = [], 0
    for rec in records:
        text = rec["prompt"]
        new = strip_sharegpt_artifacts(text) if rec["source"] == "sharegpt" else text.strip()
        if new != text:
            changed += 1
            rec = {**rec, "prompt": new, "id": prompt_id(new)}
        if new:
            out.append(rec)
    return out, changed


def token_lengths(texts: Sequence[str], tokenizer, batch_size: int = 1024) -> list[int]:
    """Token counts with the tokenizer's special tokens (a BOS counts, as in the original filter)."""
    counts = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i:i + batch_size]), add_special_tokens=True)["input_ids"]
        counts.extend(len(ids) for ids in enc)
    return counts


def length_filter(records: list[dict], tokenizer, min_tokens: int, max_tokens: int) -> list[dict]:
    lengths = token_lengths([r["prompt"] for r in records], tokenizer)
    return [r for r, n in zip(records, lengths) if min_tokens <= n <= max_tokens]


def detect_language(text: str) -> str:
    import py3langid

    return py3langid.classify(text)[0]


def language_filter(records: list[dict], languages: Iterable[str]) -> list[dict]:
    """Keep prompts whose detected language (py3langid, offline) is in `languages`; the detected
    code goes into `meta.lang_detected` so a wrong call can be inspected."""
    from tqdm.auto import tqdm

    wanted = set(languages)
    out = []
    for rec in tqdm(records, desc="language", leave=False, disable=len(records) < 5000):
        lang = detect_language(rec["prompt"])
        if lang in wanted:
            out.append({**rec, "meta": {**rec["meta"], "lang_detected": lang}})
    return out


def read_eval_prompts(path: str | Path) -> list[str]:
    """Evaluation prompts to keep out of the pool: a .txt file (one per line), a .jsonl file, or a
    .json list, of strings or of objects with a prompt/instruction/question field."""
    path = Path(path)
    if path.suffix not in (".txt", ".json", ".jsonl"):
        raise DataError(f"{path}: expected a .txt, .json or .jsonl file of evaluation prompts")
    text = read_text(path, "evaluation prompt file")
    if path.suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((n, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{n}: not valid JSON ({err.msg})") from None
    else:
        data = read_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of prompts")
        items = list(enumerate(data, 1))
    prompts = []
    for n, item in items:
        if isinstance(item, dict):
            item = next((item[k] for k in ("prompt", "instruction", "question", "input") if k in item), None)
        if not isinstance(item, str):
            raise DataError(f"{path}:{n}: expected a string or an object with a 'prompt' field")
        prompts.append(item)
    return prompts


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def decontaminate(records: list[dict], eval_prompts: Sequence[str], ngram: int = 8) -> list[dict]:
    """Drop prompts equal to an evaluation prompt after normalisation, or sharing any word
    `ngram`-gram with one (a prompt that quotes a benchmark question inside a longer request)."""
    exact = {normalise(p) for p in eval_prompts}
    grams: set[tuple[str, ...]] = set()
    for p in eval_prompts:
        grams |= _ngrams(normalise(p).split(), ngram)
    out = []
    for rec in records:
        norm = normalise(rec["prompt"])
        if norm in exact or (grams and not grams.isdisjoint(_ngrams(norm.split(), ngram))):
            continue
        out.append(rec)
    return out
