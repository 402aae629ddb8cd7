"""ROUGE-L novelty: a generated prompt is kept only if its ROUGE-L F-score against every prompt
already in the pool stays below a threshold (Self-Instruct used 0.7, ALMoST 0.5).

ROUGE-L F = 2 * LCS / (len(a) + len(b)) over lower-cased word tokens (F1, no stemming). The
longest common subsequence is bounded by the multiset overlap of the two token lists, so most
references are ruled out by that cheap bound before any LCS is computed.
"""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"\w+", re.UNICODE)


def rouge_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(a: str | list[str], b: str | list[str]) -> float:
    ta = rouge_tokens(a) if isinstance(a, str) else a
    tb = rouge_tokens(b) if isinstance(b, str) else b
    if not ta or not tb:
        return 0.0
    return 2.0 * lcs_length(ta, tb) / (len(ta) + len(tb))


class NoveltyFilter:
    """The growing reference pool; `check` returns the best ROUGE-L match's score."""

    def __init__(self, references: list[str] = (), threshold: float = 0.7):
        self.threshold = threshold
        self._refs: list[tuple[list[str], Counter]] = []
        for ref in references:
            self.add(ref)

    def add(self, text: str) -> None:
        tokens = rouge_tokens(text)
        self._refs.append((tokens, Counter(tokens)))

    def max_score(self, text: str) -> float:
        tokens = rouge_tokens(text)
        if not tokens:
            return 0.0
        counts, best = Counter(tokens), 0.0
        for ref_tokens, ref_counts in self._refs:
            denom = len(tokens) + len(ref_tokens)
            overlap = sum((counts & ref_counts).values())
            if 2.0 * overlap / denom <= best:
                continue
            best = max(best, 2.0 * lcs_length(tokens, ref_tokens) / denom)
            if best >= self.threshold:
                break
        return best

    def is_novel(self, text: str) -> bool:
        return self.max_score(text) < self.threshold

    def __len__(self) -> int:
        return len(self._refs)
