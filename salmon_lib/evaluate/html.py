"""report.html: one self-contained page (figures embedded as data URIs, no scripts, no external
files), in the order a reader needs it: the controllability result, reward per principle,
head-to-head, behaviour, then sample answers side by side. Every text from the run is escaped."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Mapping, Sequence

from ..io import atomic_write_text
from .stats import decimals, fmt

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.85em}
td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%;display:block;margin:.8em 0;border:1px solid #eee}
li.null{color:#666} li.found{font-weight:600} .note{background:#fff8e1;padding:.5em 1em;border-left:4px solid #f0c000}
.answer{white-space:pre-wrap;max-width:28em} .muted{color:#777;font-size:.85em}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], raw: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdicts(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    items = "".join(f'<li class="{"null" if "not distinguishable" in s else "found"}">{escape(s)}</li>' for s in lines)
    return f"<ul>{items}</ul>"


def _interval(r: Mapping | None, key: str = "mean", digits: int = 2) -> str:
    if not r or r.get(key) is None:
        return "n/a"
    ci = r.get("ci")
    if not ci:
        return fmt(r[key], digits)
    digits = decimals(r[key], *ci, minimum=digits)
    return f"{fmt(r[key], digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _skipped(section: Mapping) -> str:
    return f'<p class="note">Skipped: {escape(section["skipped"])}</p>'


def controllability(rep: dict, figs: Mapping[str, Path]) -> str:
    ctl = rep["controllability"]
    parts = ['<h2 id="controllability">Controllability: does changing the principles change the model?</h2>']
    if "skipped" in ctl:
        return "".join(parts) + _skipped(ctl)
    sets = "".join(f"<li><b>{escape(n)}</b>: {escape(s if isinstance(s, str) else ' / '.join(s))}</li>"
                   for n, s in ctl["sets"].items())
    parts.append(f"<p>Principle sets:</p><ul>{sets}</ul><p>Targeted behaviour: <b>{escape(ctl['measure'])}</b>.</p>")
    parts.append(_verdicts(ctl["verdict"]))
    if "experiment" in ctl:
        parts.append(experiment(ctl["experiment"], figs))
    if "reward_audit" in ctl:
        parts.append(reward_audit(ctl["reward_audit"], figs))
    if "controllability" in figs:
        parts.append(_img(figs["controllability"], "controllability: reward matrix and targeted behaviour"))
    if "skipped" in ctl["arms"]:
        parts.append(_skipped(ctl["arms"]))
    for kind in ("arms", "preview"):
        if kind in ctl and "skipped" not in ctl[kind]:
            block = ctl[kind]
            cols = list(next(iter(block["reward_matrix"].values())))
            digits = decimals(*(v[c] for v in block["reward_matrix"].values() for c in cols))
            rows = [[r, *(fmt(v[c], digits) for c in cols), _interval(block["measure"].get(r))]
                    for r, v in block["reward_matrix"].items()]
            title = "RL arms" if kind == "arms" else \
                (f"Preview: SFT's best of {block['candidates_per_prompt']} (n={block['n']} prompts; each pick is "
                 "the best under its own set by construction, so its reward under that set is no evidence)")
            parts.append(f"<h3>{escape(title)}</h3>")
            parts.append(_table(["policy", *(f"reward under {c}" for c in cols), f"{ctl['measure']} [CI]"], rows))
    return "".join(parts)


def experiment(exp: dict, figs: Mapping[str, Path]) -> str:
    """The registered endpoint first: what was fixed in advance, then every seed and the pooled estimate."""
    ep, pr = exp["endpoint"], exp["prompts"]
    named = "lower" if ep["direction"] == "lower" else "higher"
    parts = ["<h3>The registered experiment</h3>",
             f"<p>Primary endpoint: <b>{escape(ep['measure'])}</b>, expected {named} for the "
             f"<b>{escape(exp['a'])}</b> arm than for the <b>{escape(exp['b'])}</b> arm; {pr['n']} prompts no arm "
             f"trained on ({pr['heldout']} of stage 05's held-out slice, {pr['not_rl_trained']} outside its "
             f"training list), {ep['samples']} answers per prompt and arm (averaged per prompt), cap "
             f"{ep['max_new_tokens']} tokens, weights in {escape(ep.get('dtype', 'float32'))}; seeds "
             f"{', '.join(exp['values'])}. An effect is claimed only where the "
             "paired t-interval excludes zero.</p>", _arm_training(exp)]
    rows = []
    for label, r in [*((f"seed {s}", r) for s, r in exp["per_seed"].items()), ("pooled", exp["pooled"])]:
        if r["difference"] is None:
            continue
        d = decimals(r["difference"], *r["ci_t"])
        ci = lambda key: f"[{fmt(r[key][0], d)}, {fmt(r[key][1], d)}]" if r.get(key) else "n/a"  # noqa: E731
        rows.append([label, fmt(r["mean_a"]), fmt(r["mean_b"]), fmt(r["difference"], d), ci("ci_t"), ci("ci_bca"),
                     ci("ci_percentile"), fmt(r["effect_size_dz"]), fmt(r["sign_statistic"]),
                     {"named": "named direction", "against": "AGAINST"}.get(r["moved"], "none claimed")])
    parts.append(_table(["", exp["a"], exp["b"], "difference", "paired t CI", "BCa CI", "percentile CI", "d_z",
                         "paired sign statistic", "moved"], rows))
    seeds = exp.get("across_seeds")
    if seeds:
        parts.append(f"<p class='muted'>Across seeds (each seed's effect one replicate, t with {seeds['n_seeds'] - 1} "
                     f"df): {fmt(seeds['mean'])} [{fmt(seeds['ci_t'][0])}, {fmt(seeds['ci_t'][1])}].</p>")
    if exp.get("sft", {}).get("mean") is not None:
        parts.append(f"<p class='muted'>SFT on the same prompts: {fmt(exp['sft']['mean'])}.</p>")
    if "experiment" in figs:
        parts.append(_img(figs["experiment"], "the registered endpoint per seed"))
    return "".join(parts)


def _arm_training(exp: dict) -> str:
    """How the first seed's arm of set a was trained (stage 05's stats): method, steps, guidance."""
    first = next(iter(exp.get("train", {}).values()), {})
    arm = first.get(exp["a"], {})
    if not arm.get("method"):
        return ""
    how = f"stage 05's <b>{escape(arm['method'])}</b>, {arm.get('steps')} step(s) on {arm.get('train_prompts')} prompts"
    guidance = arm.get("guidance")
    if guidance:
        what = ("the other set's principles" if exp.get("arm_contrast") == "other_set" else
                "the contrast the reward scores each of its principles against" if guidance["contrast"] == "reward"
                else "the principles of arm_overrides' guidance_contrast")
        how += f", sampled with its set's principles in the system prompt and guided (scale {guidance['scale']:g}) " \
               f"away from {what}"
    return f"<p>Each arm: {how}; only the principle text differs between the arms.</p>"


def reward_audit(audit: dict, figs: Mapping[str, Path]) -> str:
    """Stage 04's audit of the reward the arms train on, on SFT's own answers."""
    parts = ["<h3>The reward, audited on SFT's answers (stage 04)</h3>"]
    if "skipped" in audit:
        return "".join(parts) + _skipped(audit)
    ci = lambda v: f" [{fmt(v[0])}, {fmt(v[1])}]" if v else ""  # noqa: E731
    parts.append(f"<p>{audit['answers']} answers to {audit['prompts']} prompts ({fmt(audit['finished_share'])} "
                 f"finished), each scored under <b>{escape(audit['shorter'])}</b> and "
                 f"<b>{escape(audit['longer'])}</b>. "
                 f"Mean within-prompt Spearman correlation of the score difference with shortness: "
                 f"{fmt(audit['spearman_difference'])}{ci(audit['spearman_difference_ci'])} "
                 "(t-interval over prompts); "
                 f"where the two sets' best answers differ ({audit['picks_differ']} prompts), the best under "
                 f"{escape(audit['shorter'])} is the shorter one in {fmt(audit['pick_shorter_rate'])}"
                 f"{ci(audit['pick_shorter_ci'])} of them (Wilson interval).</p>")
    if "reward_audit" in figs:
        parts.append(_img(figs["reward_audit"], "reward audit: score difference against length"))
    return "".join(parts)


def reward(rep: dict, figs: Mapping[str, Path]) -> str:
    sec = rep["reward"]
    parts = ['<h2 id="reward">Reward per principle</h2>',
             f"<p>Each answer scored by the reward model under each principle alone and under the RL-time draw "
             f"(n={sec['n']} prompts per policy; differences are paired by prompt).</p>", _verdicts(sec["verdict"])]
    for key, alt in (("reward_heatmap", "policies by principles heatmap"), ("reward_deltas", "reward deltas vs sft")):
        if key in figs:
            parts.append(_img(figs[key], alt))
    return "".join(parts)


def head_to_head(rep: dict, figs: Mapping[str, Path]) -> str:
    sec = rep["head_to_head"]
    parts = ['<h2 id="head-to-head">Head-to-head against SFT</h2>',
             "<p>Win rate of each policy's answer over SFT's answer to the same prompt; ties count as half a win.</p>",
             _verdicts(sec["verdict"])]
    rows = [[p, _interval(r, "win_rate"), r["wins"], r["ties"], r["losses"], fmt(r["sign_statistic"])]
            for p, r in sec["reward_model"].items()]
    parts.append(_table(["policy", "win rate [CI] (reward model)", "wins", "ties", "losses",
                         "paired sign statistic"], rows))
    if "head_to_head" in figs:
        parts.append(_img(figs["head_to_head"], "win rates against sft"))
    judge = sec.get("judge", {})
    if "skipped" in judge:
        parts.append(f'<p class="muted">Judge: {escape(judge["skipped"])}</p>')
    else:
        parts.append(f"<p>Judge: {escape(judge['model'])}, principle “{escape(judge['principle'])}”.</p>")
        parts.append(_table(["policy", "win rate [CI] (judge)", "order agreement"],
                            [[p, _interval(r, "win_rate"), fmt(r["order_agreement"])]
                             for p, r in judge["by_policy"].items()]))
    return "".join(parts)


def behaviour(rep: dict, figs: Mapping[str, Path]) -> str:
    sec = rep["behaviour"]
    keys = ("length_words", "finished", "refusal_red_team", "false_refusal", "self_praise", "language_match",
            "distinct_2", "kl_to_sft")
    parts = ['<h2 id="behaviour">Behaviour</h2>',
             f"<p>Refusals are counted on {sec['n_red_team']} red-team prompts and false refusals on "
             f"{sec['n_ordinary']} ordinary ones (English phrase patterns: lower bounds). Means with intervals.</p>",
             _verdicts(sec["verdict"])]
    rows = [[p, *(_interval(s.get(k)) for k in keys), fmt(s["distinct_2_corpus"]["value"])]
            for p, s in sec["by_policy"].items()]
    parts.append(_table(["policy", "length (words)", "finished", "refusal (red team)", "false refusal", "self-praise",
                         "language match", "distinct-2 (per answer)", "KL to SFT (nats)", "distinct-2 (all answers)"],
                        rows))
    if "behaviour" in figs:
        parts.append(_img(figs["behaviour"], "behaviour measures per policy"))
    hhh = rep["hhh"]
    parts.append("<h3>HHH pairs by the policy's own likelihood</h3>")
    if "skipped" in hhh:
        parts.append(_skipped(hhh))
    else:
        types = list(next(iter(hhh["by_policy"].values()))["by_type"])
        parts.append(f"<p>{escape(hhh['method'])}; n={hhh['n']} pairs.</p>" + _verdicts(hhh["verdict"]))
        parts.append(_table(["policy", "overall", *types],
                            [[p, _interval(e["overall"]), *(_interval(e["by_type"][t]) for t in types)]
                             for p, e in hhh["by_policy"].items()]))
        if "hhh" in figs:
            parts.append(_img(figs["hhh"], "HHH accuracy per category"))
    return "".join(parts)


def samples(rows: Sequence[dict]) -> str:
    parts = ['<h2 id="samples">Samples</h2>', '<p class="muted">All answers are in samples.jsonl.</p>']
    for rec in rows:
        parts.append(f"<h3>{escape(rec['prompt'])}</h3>"
                     f"<p class='muted'>{escape(rec['question_type'])}, {escape(rec['source'])}</p>")
        cells = [[escape(p), f'<div class="answer">{escape(a["text"]) or "<i>(empty)</i>"}</div>',
                  escape(fmt(a["reward"])), "yes" if a["finished"] else "no"] for p, a in rec["answers"].items()]
        cells += [[escape(f"preview: best under {s}"), f'<div class="answer">{escape(a["text"])}</div>',
                   escape(fmt(a["score"])), ""] for s, a in rec.get("preview", {}).items()]
        parts.append(_table(["policy", "answer", "reward (RL draw)", "finished"], cells, raw=True))
    return "".join(parts)


def page(rep: dict, figs: Mapping[str, Path], sample_rows: Sequence[dict]) -> str:
    policies = ", ".join(p["name"] for p in rep["policies"])
    pr, stats = rep["prompts"], rep["statistics"]
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in rep["notes"])
    header = (f"<h1>Evaluation report: {escape(rep['run'])}</h1>"
              f"<p>Policies: {escape(policies)}. Prompts: {pr['n']} ({pr['red_team']} red-team, {pr['ordinary']} "
              f"ordinary; {pr['probes']} of them probes; the rest from {escape(pr['source'])} prompts). "
              f"Created {escape(rep['created'])}.</p>{notes}"
              f"<p class='muted'>Intervals: {escape(stats['interval'])}. {escape(stats['win_rate'])}. "
              f"Effect sizes: {escape(stats['effect_sizes'])}. A result is called distinguishable only when "
              "its interval excludes the null (0 for differences, 0.5 for win rates).</p>")
    body = (header + controllability(rep, figs) + reward(rep, figs) + head_to_head(rep, figs) + behaviour(rep, figs)
            + samples(sample_rows))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>Evaluation report: {escape(rep["run"])}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def write(path: str | Path, rep: dict, figs: Mapping[str, Path], sample_rows: Sequence[dict]) -> Path:
    atomic_write_text(path, page(rep, figs, sample_rows))
    return Path(path)
