"""Seeded subsampling: a cap per OpenOrca-style bucket, a per-source mix and a total size.

Selected records keep their pool order, so the output reads source by source and a rerun with
the same seed picks the same prompts.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict


def _pick(indices: list[int], k: int, rng: random.Random) -> list[int]:
    return indices if k >= len(indices) else rng.sample(indices, k)


def cap_buckets(records: list[dict], cap: int, rng: random.Random) -> list[dict]:
    """At most `cap` records per (source, meta.bucket), chosen at random; records without a
    bucket are untouched. cap <= 0 means no cap."""
    if cap <= 0:
        return records
    groups: dict[tuple, list[int]] = defaultdict(list)
    keep: set[int] = set()
    for i, rec in enumerate(records):
        bucket = rec["meta"].get("bucket")
        if bucket is None:
            keep.add(i)
        else:
            groups[(rec["source"], bucket)].append(i)
    for key in sorted(groups):
        keep.update(_pick(groups[key], cap, rng))
    return [rec for i, rec in enumerate(records) if i in keep]


def _largest_remainder(shares: dict[str, float], total: int) -> dict[str, int]:
    floors = {s: math.floor(v) for s, v in shares.items()}
    left = total - sum(floors.values())
    for s in sorted(shares, key=lambda s: (floors[s] - shares[s], s))[:max(left, 0)]:
        floors[s] += 1
    return floors


def quotas(available: dict[str, int], mix: dict[str, float], total: int) -> dict[str, int]:
    """How many to take per source: proportional to `mix` (every source weight 1 when empty),
    as close as the pool allows; a source that runs short leaves its share to the others.
    total <= 0 with a mix means the largest pool that has exactly the mix."""
    weights = {s: (mix.get(s, 0.0) if mix else 1.0) for s in available}
    weights = {s: w for s, w in weights.items() if w > 0 and available[s] > 0}
    if not weights:
        return {s: 0 for s in available}
    if not mix:
        weights = {s: float(available[s]) for s in weights}  # natural proportions
    if total <= 0:
        total = sum(available[s] for s in weights) if not mix else \
            int(min(available[s] * sum(weights.values()) / w for s, w in weights.items()))
    total = min(total, sum(available[s] for s in weights))
    take = {s: 0 for s in available}
    open_ = dict(weights)
    remaining = total
    while remaining > 0 and open_:
        wsum = sum(open_.values())
        share = _largest_remainder({s: remaining * w / wsum for s, w in open_.items()}, remaining)
        full = {s for s in open_ if take[s] + share[s] >= available[s]}
        if not full:
            for s in open_:
                take[s] += share[s]
            break
        for s in full:  # saturate the short sources, then share what is left among the rest
            remaining -= available[s] - take[s]
            take[s] = available[s]
            del open_[s]
    return take


def subsample(records: list[dict], total: int, mix: dict[str, float], rng: random.Random) -> list[dict]:
    """Keep `quotas(...)` records per source, drawn at random, in pool order."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        by_source[rec["source"]].append(i)
    if total <= 0 and not mix:
        return records
    take = quotas({s: len(ix) for s, ix in by_source.items()}, mix, total)
    keep: set[int] = set()
    for source in sorted(by_source):
        keep.update(_pick(by_source[source], take[source], rng))
    return [rec for i, rec in enumerate(records) if i in keep]
