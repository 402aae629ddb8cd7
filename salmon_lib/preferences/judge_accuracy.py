"""How good is the judge? Accuracy on the HHH alignment pairs (`salmon_lib.hhh_data`, evaluation only).

Each pair is judged under the principle matching its type (helpful, harmless, honest, other),
in both orders, with the same judge prompt the stage uses.

Reported per type and overall, raw and after each debiasing: accuracy with the chosen answer in
slot (a), in slot (b), of the order-averaged verdict (s12 + s21 > 0, which any per-principle
position offset leaves unchanged), how often the orders agree, and accuracy where they agree.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ..hhh_data import types_in_order
from .judge import content_free_bias, debias, judge_pairs, position_bias


def principles_for_types(
    types: Sequence[str], principle_set, overrides: dict[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """{type: (principle name, definition)}: the set's first principle with that `hhh_type`, or
    the principle named in `overrides[type]`."""
    out = {}
    for t in types_in_order(types):
        p = principle_set.by_name(overrides[t]) if overrides and t in overrides else principle_set.for_hhh_type(t)
        out[t] = (p.name, p.text(False))
    return out


def judge_hhh(gen, fmt, items: Sequence[dict], principles: dict[str, tuple[str, str]], adapter=None,
              batch_pairs: int = 8) -> list[dict]:
    """Judgements with `response_1` = the human-preferred answer, so s > 0 means correct."""
    out = []
    by_type = defaultdict(list)
    for it in items:
        by_type[it["type"]].append({"id": it["id"], "prompt": it["prompt"], "response_1": it["chosen"],
                                    "response_2": it["rejected"]})
    for t in types_in_order(by_type):
        for j in judge_pairs(gen, fmt, by_type[t], [principles[t]], adapter=adapter, batch_pairs=batch_pairs):
            out.append({**j, "type": t})
    return out


def accuracy(judgements: Sequence[dict]) -> dict:
    def summary(js):
        n = len(js)
        agreeing = [j for j in js if j["agree"]]
        return {
            "n": n,
            "acc_chosen_in_a": sum(j["s12"] > 0 for j in js) / n,
            "acc_chosen_in_b": sum(j["s21"] > 0 for j in js) / n,
            "acc_both_orders": sum(j["s12"] + j["s21"] > 0 for j in js) / n,
            "order_agreement": len(agreeing) / n,
            "acc_when_orders_agree": sum(j["s12"] > 0 for j in agreeing) / len(agreeing) if agreeing else None,
        }

    by_type = defaultdict(list)
    for j in judgements:
        by_type[j["type"]].append(j)
    return {"overall": summary(judgements), **{t: summary(by_type[t]) for t in types_in_order(by_type)}}


def evaluate(gen, fmt, items: Sequence[dict], principles: dict[str, tuple[str, str]], adapter=None) -> dict:
    """Raw, mean-position-debiased and content-free-calibrated accuracy tables."""
    raw = judge_hhh(gen, fmt, items, principles, adapter=adapter)
    calib = content_free_bias(gen, fmt, sorted(set(principles.values())), adapter=adapter)
    return {
        "none": accuracy(raw),
        # fitted on these judgements without their labels: the judge's own slot-(a) habit
        "mean_position": accuracy(debias(raw, position_bias(raw))),
        "content_free": accuracy(debias(raw, calib)),
        "content_free_bias": calib,
    }
