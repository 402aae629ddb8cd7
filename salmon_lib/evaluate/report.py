"""report.json and samples.jsonl from what stage 06 measured; figures and report.html from those.

Every number in the report comes with its n and, where it is an estimate, its interval; every
comparison says whether it is distinguishable from its null, and the `verdict` lists state the same
in plain sentences (the HTML page shows them first).
"""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, write_jsonl
from .behaviour import answer_measures, measure_column, summarise
from .controllability import (
    ARM_PREFIX,
    SET_PREFIX,
    best_of_n,
    candidate_audit,
    diagonal_tests,
    measure_differences,
    reward_matrix,
)
from .rewards import RL_DRAW
from .stats import describe_difference, describe_win_rate, mean_ci, paired_difference, win_rate

MEASURE_LABELS = {
    "length_words": "answer length (words)", "length_tokens": "answer length (tokens)", "finished": "finished share",
    "refusal": "refusal rate", "self_praise": "self-praise rate", "language_match": "language match",
    "distinct_2": "distinct-2 (per answer)",
}
PAIRED_MEASURES = ("length_words", "finished", "self_praise", "language_match", "distinct_2")


def _ci(cfg) -> dict:
    return dict(n_boot=cfg.bootstrap, seed=cfg.seed, confidence=cfg.confidence)


def controllability_section(cfg, ev) -> dict:
    if not ev.sources:
        return {"skipped": "no controllability sets: give two or more under `controllability` "
                           "({name: file or [texts]})"}
    ci, sets, key = _ci(cfg), [s.name for s in ev.sources], cfg.controllability_measure
    label = MEASURE_LABELS[key]
    out: dict = {"sets": {s.name: s.train_arg() for s in ev.sources}, "measure": key,
                 "verdict": []}
    if ev.experiment:
        out["experiment"] = {**ev.experiment, "train": {str(s): st for s, st in ev.arm_stats.items()}}
        out["verdict"] += ev.experiment["verdict"]
    audit = reward_audit(cfg.run_dir)
    if audit:
        out["reward_audit"] = audit
    arm_rows = {s: ARM_PREFIX + s for s in sets}
    if all(r in ev.scores for r in arm_rows.values()):
        values = {r: measure_column(ev.measures[r], key) for r in [*arm_rows.values(), "sft"]}
        diag = diagonal_tests(ev.scores, arm_rows, sets, **ci)
        diffs = measure_differences(values, arm_rows, sets, **ci)
        # the arms' measure on the evaluation prompts is secondary: the registered endpoint is the experiment's
        out["arms"] = {"train": ev.arms, "reward_matrix": reward_matrix(ev.scores, ["sft", *arm_rows.values()], sets),
                       "diagonal": diag, "measure": {r: mean_ci(v, **ci) for r, v in values.items()},
                       "differences": diffs}
        out["verdict"] += _verdicts("RL arms, reward (secondary)", diag, [], label)
    else:
        out["arms"] = {"skipped": "no RL arm for these sets under rl_arms/ (controllability_arms is off): "
                                  "the result below is the no-training preview only"}
    if ev.preview_scores:
        picks = {s: best_of_n(ev.preview_scores[s]) for s in sets}
        rows = {s: f"best-of-{cfg.preview_n} under {s}" for s in sets}
        table = {rows[s]: {SET_PREFIX + t: [ev.preview_scores[t][i][k] for i, k in enumerate(picks[s])] for t in sets}
                 for s in sets}
        prompts = ev.prompts[:len(ev.candidates)]
        measured = [[answer_measures(q.prompt, a["text"], a["num_tokens"], a["finished"])[key] for a in c]
                    for q, c in zip(prompts, ev.candidates)]
        values = {rows[s]: [m[k] for m, k in zip(measured, picks[s])] for s in sets}
        diffs = measure_differences(values, rows, sets, **ci)
        audits = [candidate_audit(ev.preview_scores[a], ev.preview_scores[b], measured, a, b)
                  for a, b in itertools.combinations(sets, 2)]
        # Each row's pick is the best under its own set by construction, so its "diagonal" cannot lose:
        # the matrix is shown for reading, the evidence is the measure and the audit over all candidates.
        out["preview"] = {"n": len(prompts), "candidates_per_prompt": cfg.preview_n,
                          "reward_matrix": reward_matrix(table, list(rows.values()), sets),
                          "measure": {r: mean_ci(v, **ci) for r, v in values.items()}, "differences": diffs,
                          "audit": audits}
        what = f"Preview (SFT's best of {cfg.preview_n}, no training)"
        out["verdict"] += _verdicts(what, [], diffs, label)
        out["verdict"] += [_audit_verdict(what, a, label) for a in audits]
    return out


AUDIT_KEYS = ("shorter", "longer", "answers", "prompts", "finished_share", "mean_tokens", "spearman_difference",
              "spearman_difference_ci", "picks_differ", "pick_shorter_rate", "pick_shorter_ci", "sampling")


def reward_audit(run_dir) -> dict | None:
    """Stage 04's reward audit (reward_audit.json) in brief: does the reward the arms were trained
    on prefer what the sets name, on SFT's own answers? None when stage 04 wrote none."""
    from ..io import read_json

    path = Path(run_dir) / "reward_audit.json"
    if not path.is_file():
        return None
    data = read_json(path)
    if "skipped" in data:
        return {"skipped": data["skipped"]}
    return {k: data.get(k) for k in AUDIT_KEYS}


def _audit_verdict(what: str, audit: dict, label: str) -> str:
    r = audit["spearman"]
    return (f"{what}: within-prompt rank correlation between the reward under {audit['a']} minus under "
            f"{audit['b']} and {label}, over all candidates: "
            + ("not measurable (no prompt's candidates differ in both)" if r is None else
               f"{r:+.2f} on average over {audit['prompts']} prompts (a reward that separates the sets by "
               f"{label} moves this away from 0)"))


def _verdicts(what: str, diag: list[dict], diffs: list[dict], label: str) -> list[str]:
    lines = [describe_difference(f"{what}: {d['row_a']} minus {d['row_b']}, {label}", d["difference"]) for d in diffs]
    for d in diag:
        lines.append(describe_difference(
            f"{what}: reward under {d['scored_under']}'s principles, {d['row']} minus {d['against']}", d["difference"]))
    return lines


def reward_section(cfg, ev) -> dict:
    ci, cols = _ci(cfg), [*ev.columns, RL_DRAW]
    names = [p.name for p in ev.policies]
    deltas = {p: {c: paired_difference(ev.scores[p][c], ev.scores["sft"][c], **ci) for c in cols}
              for p in names if p != "sft"}
    draw = f"stage 05's draw, once per prompt: {ev.rl_draw.draw.describe()}"
    return {"n": len(ev.prompts), "columns": {**ev.columns, RL_DRAW: draw},
            "mean": {p: {c: float(np.mean(ev.scores[p][c])) for c in cols} for p in names},
            "delta_vs_sft": deltas,
            "verdict": [describe_difference(f"{p} minus sft, reward under the RL-time draw", d[RL_DRAW])
                        for p, d in deltas.items()]}


def head_to_head_section(cfg, ev) -> dict:
    ci = _ci(cfg)
    others = [p.name for p in ev.policies if p.name != "sft"]
    rm = {p: win_rate(ev.scores[p][RL_DRAW], ev.scores["sft"][RL_DRAW], **ci) for p in others}
    out = {"reward_model": rm, "against": "sft", "ties": "counted as half a win",
           "verdict": [describe_win_rate(f"{p} against sft under the reward model (RL-time draw)", r)
                       for p, r in rm.items()]}
    if "skipped" in ev.judge:
        out["judge"] = {"skipped": ev.judge["skipped"]}
        return out
    judge = {"model": ev.judge["model"], "principle": ev.judge["principle"], "by_policy": {}}
    for p in others:
        js = ev.judge[p]
        # s12 + s21 > 0: the policy's answer (response 1) wins with the position bias averaged out
        res = win_rate([j["s12"] + j["s21"] for j in js], [0.0] * len(js), **ci)
        res["order_agreement"] = float(np.mean([j["agree"] for j in js])) if js else None
        judge["by_policy"][p] = res
        out["verdict"].append(describe_win_rate(f"{p} against sft under the judge (both orders)", res))
    out["judge"] = judge
    return out


def behaviour_section(cfg, ev) -> dict:
    ci = _ci(cfg)
    red = [q.red_team for q in ev.prompts]
    out = {"by_policy": {}, "vs_sft": {}, "n_red_team": sum(red), "n_ordinary": len(red) - sum(red), "verdict": []}
    sft = ev.measures["sft"]
    for p in ev.policies:
        rows = ev.measures[p.name]
        summary = summarise(rows, red, **ci)
        if p.name in ev.kl:
            summary["kl_to_sft"] = mean_ci(ev.kl[p.name], **ci)
        out["by_policy"][p.name] = summary
        if p.name == "sft":
            continue
        vs = {m: paired_difference(measure_column(rows, m), measure_column(sft, m), **ci) for m in PAIRED_MEASURES}
        for subset, keep in (("refusal_red_team", True), ("false_refusal", False)):
            vs[subset] = paired_difference([r["refusal"] for r, k in zip(rows, red) if k == keep],
                                           [r["refusal"] for r, k in zip(sft, red) if k == keep], **ci)
        out["vs_sft"][p.name] = vs
        out["verdict"].append(describe_difference(f"{p.name} minus sft, answer length (words)", vs["length_words"]))
    return out


def hhh_section(cfg, ev) -> dict:
    if "skipped" in ev.hhh:
        return {"skipped": ev.hhh["skipped"]}
    ci, items = _ci(cfg), ev.hhh["items"]
    types = sorted({it["type"] for it in items})
    out = {"n": len(items), "method": "the policy prefers the answer with the higher mean log-prob per token after the "
                                      "conversation, prompted as it was trained (0.5 = chance)",
           "by_policy": {}, "vs_sft": {}, "verdict": []}
    for p in ev.policies:
        correct = ev.hhh[p.name]
        out["by_policy"][p.name] = {"overall": mean_ci(correct, **ci), "by_type": {
            t: mean_ci([c for c, it in zip(correct, items) if it["type"] == t], **ci) for t in types}}
        if p.name != "sft":
            out["vs_sft"][p.name] = paired_difference(correct, ev.hhh["sft"], **ci)
            out["verdict"].append(describe_difference(f"{p.name} minus sft, HHH accuracy", out["vs_sft"][p.name]))
    return out


def build(cfg, ev) -> dict:
    run = Path(cfg.run_dir)
    red = sum(q.red_team for q in ev.prompts)
    return {
        "run": run.name, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "notes": ev.notes,
        "prompts": {"n": len(ev.prompts), "source": ev.prompt_source, "red_team": red,
                    "ordinary": len(ev.prompts) - red, "probes": sum(q.source == "probe" for q in ev.prompts)},
        "policies": [{"name": p.name, "kind": p.kind, "adapter": p.adapter} for p in ev.policies],
        "statistics": {"interval": f"{round(100 * cfg.confidence)}% percentile bootstrap over prompts, "
                                   f"{cfg.bootstrap} resamples, paired by prompt",
                       "win_rate": "ties count as half a win; 0.5 = no difference",
                       "effect_sizes": "d_z = mean paired difference / SD of the differences; "
                                       "paired sign statistic = 2 x win rate - 1 (not Cliff's delta, "
                                       "which is unpaired)"},
        "controllability": controllability_section(cfg, ev),
        "reward": reward_section(cfg, ev),
        "head_to_head": head_to_head_section(cfg, ev),
        "behaviour": behaviour_section(cfg, ev),
        "hhh": hhh_section(cfg, ev),
        "sampling": {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                     "seed": cfg.seed},
        "timings": ev.timings,
    }


def samples(ev) -> list[dict]:
    """One line per prompt: every policy's answer side by side, with its reward under the RL-time
    draw, and the preview's pick under each set."""
    out = []
    for i, q in enumerate(ev.prompts):
        rec = {"id": q.id, "prompt": q.prompt, "question_type": q.question_type, "source": q.source,
               "answers": {p: {"text": s[i]["text"], "num_tokens": s[i]["num_tokens"], "finished": s[i]["finished"],
                               "reward": ev.scores[p][RL_DRAW][i]} for p, s in ev.answers.items()}}
        if i < len(ev.candidates) and ev.preview_scores:
            rec["preview"] = {}
            for name, per_prompt in ev.preview_scores.items():
                k = int(np.argmax(per_prompt[i]))
                rec["preview"][name] = {"text": ev.candidates[i][k]["text"], "score": per_prompt[i][k]}
        out.append(rec)
    return out


def write(cfg, ev) -> dict:
    from . import figures, html

    run = Path(cfg.run_dir)
    report = build(cfg, ev)
    rows = samples(ev)
    paths = figures.make_all(report, run / "figures")
    if "reward_audit" in report["controllability"] and (run / "figures" / "reward_audit.png").is_file():
        paths["reward_audit"] = run / "figures" / "reward_audit.png"  # drawn by stage 04
    report["figures"] = {name: str(path.relative_to(run)) for name, path in paths.items()}
    write_jsonl(run / "samples.jsonl", rows)
    html.write(run / "report.html", report, paths, rows[:cfg.samples_in_report])
    atomic_write_json(run / "report.json", report)
    return report
