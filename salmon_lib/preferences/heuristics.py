"""Rules that override the judge on pairs where a surface feature is a safer signal than a weak
judge: an "as an AI language model" style disclaimer, and an answer in another language than
the request.

Language identification is py3langid (the langid.py model, shipped inside the package: it runs
offline and needs no download, unlike the fastText model the original used). Short texts are
too short to identify reliably, so below `min_chars` the language counts as unknown and the rule
does not fire.
"""

from __future__ import annotations

import re
from functools import lru_cache

DISCLAIMER = re.compile(
    r"\bas an? (?:ai|artificial intelligence)(?: language)? (?:model|assistant|system)\b"
    r"|\bI(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence)(?: language)? (?:model|assistant)\b"
    r"|\bI(?:'m| am) (?:just |only )?an? (?:large )?language model\b",
    re.IGNORECASE,
)


def has_disclaimer(text: str) -> bool:
    return DISCLAIMER.search(text) is not None


@lru_cache(maxsize=65536)
def detect_language(text: str, min_chars: int = 20) -> str | None:
    """ISO 639-1 code from py3langid, or None when the text is too short to tell."""
    import py3langid

    text = text.strip()
    if len(text) < min_chars:
        return None
    return py3langid.classify(text)[0]


def disclaimer_winner(response_1: str, response_2: str) -> int | None:
    """1 or 2 when exactly one response carries a disclaimer (the other one wins), else None."""
    d1, d2 = has_disclaimer(response_1), has_disclaimer(response_2)
    if d1 == d2:
        return None
    return 2 if d1 else 1


def language_verdict(prompt: str, response_1: str, response_2: str, min_chars: int = 20) -> int | str | None:
    """1 or 2 when exactly that response is in the prompt's language; "neither" when both are in
    another language; None when the rule does not apply (both match, or a language is unknown)."""
    lp = detect_language(prompt, min_chars)
    l1, l2 = detect_language(response_1, min_chars), detect_language(response_2, min_chars)
    if lp is None or l1 is None or l2 is None:
        return None
    m1, m2 = l1 == lp, l2 == lp
    if m1 and m2:
        return None
    if not m1 and not m2:
        return "neither"
    return 1 if m1 else 2
