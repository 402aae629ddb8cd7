"""How much principle signal does the judge carry? Measured in stage 03 itself, per judge mode.

Two questions, side by side for one mode or all of them:
- quality: accuracy on the HHH pairs, each judged under the principle matching its type
  (pairwise: the order-averaged verdict; likelihood modes: the sign of v(chosen) - v(rejected));
- principle sensitivity: the flip probes (`salmon_lib/scoring/data/flip_probes.yaml`, in their own
  wording and in the principle file's): a correct flip prefers the obeying reply under the
  principle and the violating one under its negation.
Everything a likelihood mode needs is scored in one backend call, so comparing modes costs little
more than the most expensive one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ..chat_format import ChatFormat
from ..scoring.judge_modes import ENSEMBLE_PARTS, LIKELIHOOD_MODES, Criterion, combine, response_values

# What `judge_compare` measures: each mode once, and the contrastive score in both layouts.
COMPARED = ("pairwise", "contrastive", "contrastive-suffix", "likelihood", "pmi", "pointwise", "ensemble")


def mode_and_layout(key: str) -> tuple[str, str]:
    mode, _, layout = key.partition("-")
    return mode, layout or "system"


def _margins(gen, fmt: ChatFormat, items: Sequence[tuple[str, str, str, Criterion]], keys: Sequence[str],
             adapter: str | None, batch_pairs: int = 8) -> dict[str, list[float]]:
    """{key: [margin of each (request, first, second, criterion)]}: positive prefers `first`."""
    out: dict[str, list[float]] = {}
    flat = [(q, r, c) for q, a, b, c in items for r in (a, b)]

    def diffs(v):
        return [v[2 * i] - v[2 * i + 1] for i in range(len(items))]

    wanted = [mode_and_layout(k) for k in keys]
    system = sorted({m for m, layout in wanted if m in LIKELIHOOD_MODES and layout == "system"})
    if system:
        out.update({m: diffs(v) for m, v in response_values(gen, fmt, flat, system, adapter=adapter).items()})
    if ("contrastive", "suffix") in wanted:
        v = response_values(gen, fmt, flat, ["contrastive"], layout="suffix", adapter=adapter)["contrastive"]
        out["contrastive-suffix"] = diffs(v)
    if "ensemble" in keys:
        recs = [{"principle": c.name, "parts": {p: out[p][i] for p in ENSEMBLE_PARTS}}
                for i, (*_, c) in enumerate(items)]
        out["ensemble"] = [r["s12"] for r in combine(recs)]
    if "pairwise" in keys:
        from .judge import judge_pairs

        pairs = [{"id": f"m{i}", "prompt": q, "response_1": a, "response_2": b} for i, (q, a, b, _) in enumerate(items)]
        by_criterion = defaultdict(list)
        for i, (*_, c) in enumerate(items):
            by_criterion[c].append(i)
        margins = [0.0] * len(items)
        for c, idx in by_criterion.items():
            for i, j in zip(idx, judge_pairs(gen, fmt, [pairs[i] for i in idx], [("", c.text)], adapter=adapter,
                                             batch_pairs=batch_pairs, progress=False)):
                margins[i] = j["s12"] + j["s21"]
        out["pairwise"] = margins
    return {k: out[k] for k in keys}


def hhh_accuracy(gen, fmt: ChatFormat, items: Sequence[dict], criteria: dict[str, Criterion], keys: Sequence[str],
                 adapter: str | None = None) -> dict[str, dict]:
    """{key: {"overall": acc, type: acc, ..., "n": n}} on HHH items `{type, prompt, chosen, rejected}`."""
    rows = [(it["prompt"], it["chosen"], it["rejected"], criteria[it["type"]]) for it in items]
    margins = _margins(gen, fmt, rows, keys, adapter)
    out = {}
    for key, ms in margins.items():
        by_type = defaultdict(list)
        for it, m in zip(items, ms):
            by_type[it["type"]].append(m > 0)
        out[key] = {"n": len(ms), "overall": sum(m > 0 for m in ms) / len(ms),
                    **{t: sum(v) / len(v) for t, v in sorted(by_type.items())}}
    return out


def flip_sensitivity(gen, fmt: ChatFormat, kinds: dict, keys: Sequence[str],
                     adapter: str | None = None) -> dict[str, dict]:
    """{key: {"overall": {...}, "by_kind": {kind: {...}}}} with the reward evaluation's flip summary
    (`flip_rate`: obeying wins under the principle and violating under the negation)."""
    from ..scoring.flip_probes import flip_summary

    rows, owner = [], []
    for kind, spec in kinds.items():
        c = Criterion(kind, spec["principle"], spec["negation"])
        for probe in spec["probes"]:
            for crit in (c, c.negated()):
                rows.append((probe["prompt"], probe["obeys"], probe["violates"], crit))
            owner.append(kind)
    margins = _margins(gen, fmt, rows, keys, adapter)
    out = {}
    for key, ms in margins.items():
        pos, neg = ms[0::2], ms[1::2]
        per_kind = defaultdict(lambda: ([], []))
        for kind, a, b in zip(owner, pos, neg):
            per_kind[kind][0].append(a)
            per_kind[kind][1].append(b)
        out[key] = {"overall": flip_summary(_counts(pos, neg), pos, neg),
                    "by_kind": {k: flip_summary(_counts(a, b), a, b) for k, (a, b) in per_kind.items()}}
    return out


def _counts(pos: Sequence[float], neg: Sequence[float]) -> dict:
    return {"n": len(pos), "principle": sum(m > 0 for m in pos), "negation": sum(m < 0 for m in neg),
            "flip": sum(a > 0 > b for a, b in zip(pos, neg)), "wrong_way": sum(a < 0 < b for a, b in zip(pos, neg))}


def table(signal: dict) -> dict[str, dict]:
    """{key: {HHH overall, per type, correct flips per wording}}: one row per mode for display."""
    rows = {}
    for key, hhh in signal.get("hhh", {}).items():
        rows[key] = {f"hhh_{k}": v for k, v in hhh.items() if k != "n"}
    for wording, flips in signal.get("flips", {}).items():
        for key, f in flips.items():
            rows.setdefault(key, {})[f"flips_{wording}"] = f["overall"]["flip_rate"]
    return rows
