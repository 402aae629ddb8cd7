"""How good is the judge? Accuracy on the BIG-bench HHH alignment pairs (hhh_eval.json).

Each pair is judged under the principle matching its type (helpful, harmless, honest, other),
in both orders, with the same judge prompt the stage uses. The set is for EVALUATION ONLY: no
code path trains on it, and the project ships no copy (point `hhh_path` at your own file, or
export `HuggingFaceH4/hhh_alignment` into the same `{chosen, rejected, type}` form).

Reported per type and overall, raw and after each debiasing: accuracy with the chosen answer in
slot (a), in slot (b), of the order-averaged verdict (s12 + s21 > 0, which any per-principle
position offset leaves unchanged), how often the orders agree, and accuracy where they agree.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ..io import DataError, read_json
from .judge import content_free_bias, debias, judge_pairs, position_bias

_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _split(transcript: str, where: str) -> list[tuple[str, str]]:
    parts = _TURN.split(transcript)
    if parts[0].strip() or len(parts) < 5:
        raise DataError(f"{where}: expected '\\n\\nHuman: ...\\n\\nAssistant: ...' turns")
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]


def load_hhh(path: str | Path) -> list[dict]:
    """`[{id, type, prompt, chosen, rejected}]`: the shared context becomes the request (a
    multi-turn context is written out turn by turn) and the last assistant turns the outputs."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of {{chosen, rejected, type}}")
    items = []
    for i, rec in enumerate(data):
        where = f"{path}: item {i}"
        for field in ("chosen", "rejected", "type"):
            if not isinstance(rec.get(field) if isinstance(rec, dict) else None, str):
                raise DataError(f"{where}: missing or non-string field {field!r}")
        chosen, rejected = _split(rec["chosen"], f"{where}.chosen"), _split(rec["rejected"], f"{where}.rejected")
        if chosen[:-1] != rejected[:-1] or chosen[-1][0] != "Assistant" or rejected[-1][0] != "Assistant":
            raise DataError(f"{where}: chosen and rejected must share the context and end in an assistant turn")
        context = chosen[:-1]
        prompt = context[0][1] if len(context) == 1 else "\n\n".join(
            f"{'User' if role == 'Human' else 'Assistant'}: {text}" for role, text in context)
        items.append({"id": f"hhh-{i}", "type": rec["type"], "prompt": prompt,
                      "chosen": chosen[-1][1], "rejected": rejected[-1][1]})
    return items


def principles_for_types(
    types: Sequence[str], principle_set, overrides: dict[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """{type: (principle name, definition)}: the set's first principle with that `hhh_type`, or
    the principle named in `overrides[type]`."""
    out = {}
    for t in sorted(set(types)):
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
    for t, pairs in sorted(by_type.items()):
        for j in judge_pairs(gen, fmt, pairs, [principles[t]], adapter=adapter, batch_pairs=batch_pairs):
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
    return {"overall": summary(judgements), **{t: summary(js) for t, js in sorted(by_type.items())}}


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
