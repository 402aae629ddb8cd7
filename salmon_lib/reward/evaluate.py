"""Evaluate a principle-following reward model -> `<run>/rm_eval.json`.

Three questions: does it rank held-out synthetic pairs right; does it rank the human-written HHH
pairs right, with and without the principle matching each pair's type; and does it follow the
principle text (prefer the obeying response under a principle and the violating one under its
negation: the principle-flip probes of `salmon_lib/scoring/data/flip_probes.yaml`, once in the probes' own wording
and once in the wording of the principle file the RM was trained on)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..hhh_data import HHH_TYPES, find_hhh, load_hhh, sample_hhh, types_in_order
from ..io import atomic_write_json
from ..scoring.flip_probes import flip_summary, read_flip_probes, with_judge_wording
from .pairs import Pair


def pair_margins(rm, pairs: Sequence[Pair], principles: Sequence[str] | None = None, batch_size: int = 16,
                 progress: bool = False) -> list[float]:
    """score(chosen) - score(rejected) per pair, under each pair's own principles or `principles`."""
    return margins_under(rm, pairs, [principles], batch_size, progress)[0]


def margins_under(rm, pairs: Sequence[Pair], principle_sets: Sequence[Sequence[str] | None], batch_size: int = 16,
                  progress: bool = False) -> list[list[float]]:
    """pair_margins under each principle set, scored in one call so that each response's prefix
    is run once for all the sets (None = each pair's own principles)."""
    items = []
    for ps in principle_sets:
        for p in pairs:
            shown = p.principles if ps is None else ps
            items += [(p.prompt, p.chosen, shown), (p.prompt, p.rejected, shown)]
    s = rm.score(items, batch_size=batch_size, progress=progress)
    n = len(pairs)
    return [[s[2 * (k * n + i)] - s[2 * (k * n + i) + 1] for i in range(n)] for k in range(len(principle_sets))]


def _accuracy(margins: Sequence[float]) -> dict:
    n = len(margins)
    return {"n": n, "accuracy": sum(m > 0 for m in margins) / n if n else None,
            "ties": sum(m == 0 for m in margins), "mean_margin": sum(margins) / n if n else None}


# ---------------------------------------------------------------------------- HHH
def hhh_principle_texts(path: str | Path) -> dict[str, str]:
    """{HHH type: text of the first principle with that `hhh_type`} from a principle file."""
    from ..principles import load_principles

    out: dict[str, str] = {}
    for p in load_principles(path).principles:
        if p.hhh_type in HHH_TYPES:
            out.setdefault(p.hhh_type, p.text())
    return out


def hhh_accuracy(rm, source: str | None, principles: Mapping[str, str], batch_size: int = 16,
                 progress: bool = False, max_pairs: int = 0, seed: int = 0) -> dict:
    """Accuracy per type under the matching principle (`principles`: type -> text) and under none,
    on the HHH pairs as `salmon_lib.hhh_data` reads them (the bare request, as in training);
    `max_pairs` scores a seeded sample instead of every pair."""
    if source is None:
        return {"skipped": "no HHH evaluation file: set hhh_eval to a {chosen, rejected, type} JSON file "
                           "(e.g. ../shared/data/hhh_eval.json) or to HuggingFaceH4/hhh_alignment"}
    if Path(source).suffix == ".json" and not Path(source).expanduser().is_file():
        return {"skipped": f"{source}: file not found"}
    items = load_hhh(source)
    result: dict = {"source": str(source), "by_type": {}}
    sampled = sample_hhh(items, max_pairs, seed)
    if len(sampled) < len(items):
        result["sampled_pairs"] = len(sampled)
    pooled: dict[str, list[float]] = {"principle": [], "none": []}
    for kind in types_in_order(it["type"] for it in sampled):
        pairs = [Pair(it["id"], it["prompt"], it["chosen"], it["rejected"], [], source="hhh")
                 for it in sampled if it["type"] == kind]
        sets = [[]] + ([[principles[kind]]] if kind in principles else [])
        none, *matched = margins_under(rm, pairs, sets, batch_size, progress)
        pooled["none"] += none
        entry = {"n": len(pairs), "principle": principles.get(kind),
                 "accuracy_no_principle": _accuracy(none)["accuracy"]}
        if matched:
            match = matched[0]
            pooled["principle"] += match
            entry["accuracy_principle"] = _accuracy(match)["accuracy"]
            entry["gain"] = entry["accuracy_principle"] - entry["accuracy_no_principle"]
        result["by_type"][kind] = entry
    result["accuracy_no_principle"] = _accuracy(pooled["none"])["accuracy"]
    result["accuracy_principle"] = _accuracy(pooled["principle"])["accuracy"]  # over types with a principle
    return result


# ---------------------------------------------------------------------------- flip probes
def flip_rates(rm, kinds: dict, batch_size: int = 16, progress: bool = False) -> dict:
    """Per kind: how often the obeying response wins under the principle, how often the violating
    one wins under the negation, and the flip rate: both at once, the preference reversing the right
    way round when the principle is negated. A reversal the wrong way round (the violating response
    wins under the principle, the obeying one under the negation) is counted apart: it is no flip."""
    result, totals = {"by_kind": {}}, {"n": 0, "principle": 0, "negation": 0, "flip": 0, "wrong_way": 0}
    for kind, spec in kinds.items():
        pairs = [Pair(f"{kind}-{i}", p["prompt"], p["obeys"], p["violates"], []) for i, p in enumerate(spec["probes"])]
        pos, neg = margins_under(rm, pairs, [[spec["principle"]], [spec["negation"]]], batch_size, progress)
        counts = {"n": len(pairs), "principle": sum(m > 0 for m in pos), "negation": sum(m < 0 for m in neg),
                  "flip": sum(a > 0 > b for a, b in zip(pos, neg)),
                  "wrong_way": sum(a < 0 < b for a, b in zip(pos, neg))}
        for k in totals:
            totals[k] += counts[k]
        result["by_kind"][kind] = flip_summary(counts, pos, neg)
    result["overall"] = flip_summary(totals)
    return result


# ---------------------------------------------------------------------------- all of it
def evaluate_reward_model(rm, cfg, progress: bool = True) -> dict:
    """Held-out accuracy, HHH per type, principle-flip rates -> `<run>/rm_eval.json`."""
    from .config import PREFERENCES
    from .pairs import read_preferences, split_held_out, without_noised_labels

    run = Path(cfg.run_dir)
    _, held = split_held_out(read_preferences(run / PREFERENCES), cfg.eval_fraction, cfg.seed)
    clean = without_noised_labels(held)
    bs = cfg.score_batch_size
    hhh = find_hhh(cfg.hhh_eval)
    kinds = read_flip_probes(cfg.file("flip_probes") if cfg.flip_probes else None)
    learn = getattr(rm, "learn_opposites", None)
    # A contrastive reward scores a text whose negation it does not know against its absence: the
    # probes' principles and negations first as such free text, as a user's own wording reaches it
    free = flip_rates(rm, kinds, bs, progress) if learn is not None else None
    if learn is not None:  # then with each probe's negation known, the contrast it was built for
        learn((spec["principle"], spec["negation"]) for spec in kinds.values())
    result = {
        # labels stage 03 flipped on purpose (label_noise) are no target: they are left out and counted
        "held_out": {**_accuracy(pair_margins(rm, clean, None, bs, progress)),
                     "noised_labels_left_out": len(held) - len(clean)} if clean
        else {"skipped": "no held-out pairs (eval_fraction is 0, or every held-out label was noised)"},
        "hhh": hhh_accuracy(rm, hhh, hhh_principle_texts(cfg.file("hhh_principles")) if hhh else {}, bs, progress,
                            cfg.hhh_max_pairs, cfg.seed),
        "flip": flip_rates(rm, kinds, bs, progress),
    }
    if free is not None:
        result["flip_free_text"] = free
    if cfg.flip_principles:
        judge = with_judge_wording(kinds, cfg.file("flip_principles"))
        result["flip_judge_wording"] = flip_rates(rm, judge, bs, progress) if judge else {
            "skipped": f"no probe kind names a negatable principle of {cfg.flip_principles}"}
    atomic_write_json(run / "rm_eval.json", result)
    return result
