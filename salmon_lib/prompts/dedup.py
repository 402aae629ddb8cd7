"""Exact and near-duplicate removal; the first occurrence of a prompt wins, so source order is
the priority order.

Near duplicates: Jaccard similarity of word n-gram sets, found with MinHash + LSH banding so a
pool of a few hundred thousand prompts is compared in about linear time instead of all pairs.
Every LSH candidate is confirmed with the exact Jaccard before a prompt is dropped, so banding
can only miss duplicates (rarely, near the threshold), never invent them.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np
from tqdm.auto import tqdm

from .records import normalise

_PRIME = (1 << 31) - 1  # hash values < 2**32 times multipliers < 2**31 stay below 2**63 in uint64


def exact_dedup(records: list[dict]) -> list[dict]:
    """Keep the first record of each id (ids hash the normalised prompt)."""
    seen: set[str] = set()
    out = []
    for rec in records:
        if rec["id"] not in seen:
            seen.add(rec["id"])
            out.append(rec)
    return out


def shingles(text: str, n: int) -> frozenset[str]:
    """Word n-grams of the normalised text; a text shorter than n words is one shingle."""
    words = normalise(text).split()
    if len(words) <= n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@lru_cache(maxsize=32)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) whose S-curve 1-(1-s^r)^b best separates pairs below and above `threshold`.
    Every candidate is verified exactly, so a false positive only costs one Jaccard computation
    while a false negative keeps a duplicate: misses weigh four times as much."""
    s = np.linspace(0.0, 1.0, 401)
    below, above = s < threshold, s >= threshold
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        r = num_perm // b
        p = 1.0 - (1.0 - s ** r) ** b
        err = np.trapezoid(p[below], s[below]) + 4.0 * np.trapezoid(1.0 - p[above], s[above])
        if err < best_err:
            best, best_err = (b, r), err
    return best


class MinHasher:
    def __init__(self, num_perm: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)

    def signature(self, grams: frozenset[str]) -> np.ndarray:
        h = np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams))
        return ((h[:, None] * self.a + self.b) % _PRIME).min(axis=0)


def near_dedup(records: list[dict], threshold: float = 0.8, ngram: int = 3, num_perm: int = 64,
               seed: int = 0) -> list[dict]:
    """Drop each prompt whose word-`ngram` Jaccard with an earlier kept prompt is >= `threshold`.
    A dropped record's near twin is not recorded: the kept one is the first of its cluster."""
    bands, rows = lsh_bands(threshold, num_perm)
    hasher = MinHasher(num_perm, seed)
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    kept_grams: list[frozenset] = []
    out = []
    for rec in tqdm(records, desc="near-duplicates", leave=False, disable=len(records) < 5000):
        grams = shingles(rec["prompt"], ngram)
        sig = hasher.signature(grams)
        keys = [sig[i * rows:(i + 1) * rows].tobytes() for i in range(bands)]
        candidates = {j for band, key in zip(buckets, keys) for j in band.get(key, ())}
        if any(jaccard(grams, kept_grams[j]) >= threshold for j in candidates):
            continue
        idx = len(kept_grams)
        kept_grams.append(grams)
        for band, key in zip(buckets, keys):
            band.setdefault(key, []).append(idx)
        out.append(rec)
    return out

