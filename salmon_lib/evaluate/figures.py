"""Stage 06's figures, drawn from report.json alone (so they can be redrawn from a finished run).

Intervals are drawn as error bars; a comparison whose interval excludes its null is a filled
marker, one that does not is hollow, so "not distinguishable" is visible without reading numbers.
Figures are built without pyplot, so calling this from a notebook displays nothing by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import atomic_path
from .stats import decimals

BEHAVIOUR_PANELS = (
    ("length_words", "answer length (words)"), ("finished", "finished share"),
    ("refusal_red_team", "refusal rate, red-team prompts"), ("false_refusal", "false-refusal rate, ordinary prompts"),
    ("self_praise", "self-praise rate"), ("language_match", "answer in the prompt's language"),
    ("distinct_2", "distinct-2 (mean per answer)"), ("kl_to_sft", "KL to SFT (nats per answer)"),
)


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _errorbars(ax, labels: Sequence[str], results: Sequence[dict | None], value: str, null: float | None = None,
               horizontal: bool = False) -> None:
    """One point per label with its interval; filled when the interval excludes `null`."""
    for k, (label, r) in enumerate(zip(labels, results)):
        if not r or r.get(value) is None:
            continue
        v, (lo, hi) = r[value], r["ci"] if r.get("ci") else (r[value], r[value])
        excluded = null is not None and not lo <= null <= hi
        style = dict(fmt="o", capsize=3, color="C0" if excluded or null is None else "C7",
                     markerfacecolor=None if excluded or null is None else "white")
        err = [[max(0.0, v - lo)], [max(0.0, hi - v)]]
        if horizontal:
            ax.errorbar(v, k, xerr=err, **style)
        else:
            ax.errorbar(k, v, yerr=err, **style)
    ticks = range(len(labels))
    if horizontal:
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.invert_yaxis()
        if null is not None:
            ax.axvline(null, color="grey", lw=0.8, ls="--")
    else:
        ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=8)
        if null is not None:
            ax.axhline(null, color="grey", lw=0.8, ls="--")


def _heatmap(ax, matrix: Mapping[str, Mapping[str, float]], title: str) -> None:
    rows, cols = list(matrix), list(next(iter(matrix.values())))
    values = np.array([[matrix[r][c] for c in cols] for r in rows])
    im = ax.imshow(values, aspect="auto", cmap="RdYlGn")
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if values.size <= 60:
        digits = decimals(*values.ravel().tolist())
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.{digits}f}", ha="center", va="center", fontsize=7)
    ax.figure.colorbar(im, ax=ax, label="mean reward")
    ax.set_title(title, fontsize=10)


def controllability(report: dict, folder: Path) -> Path | None:
    ctl = report["controllability"]
    blocks = [(k, ctl[k]) for k in ("arms", "preview") if k in ctl and "skipped" not in ctl[k]]
    if not blocks:
        return None
    fig, axes = _figure(12, 3.6 * len(blocks), rows=len(blocks), cols=2)
    for (kind, block), (left, right) in zip(blocks, axes):
        what = "RL arms" if kind == "arms" else f"preview: SFT's best of {block['candidates_per_prompt']}"
        note = "diagonal should win" if kind == "arms" else "each pick is the best under its own set by construction"
        _heatmap(left, block["reward_matrix"], f"{what}: reward under each set\n({note})")
        rows = list(block["measure"])
        _errorbars(right, rows, [block["measure"][r] for r in rows], "mean")
        right.set_title(f"{what}: {ctl['measure']} (mean, CI)", fontsize=10)
    return _save(fig, folder, "eval_controllability")


def experiment(report: dict, folder: Path) -> Path | None:
    """The registered endpoint: each seed's arms side by side (one point per prompt, SFT's mean as a
    line) and the effect per seed and pooled with its paired t-interval (filled when it excludes 0)."""
    exp = report["controllability"].get("experiment")
    if not exp:
        return None
    a, b, seeds = exp["a"], exp["b"], list(exp["values"])
    measure = exp["endpoint"]["measure"]
    fig, axes = _figure(12, 3.8, cols=2)
    left, right = axes[0]
    rng = np.random.default_rng(0)
    for k, s in enumerate(seeds):
        for j, name in enumerate((a, b)):
            ys = [v for v in exp["values"][s][name] if v is not None]
            x = 3 * k + j
            left.scatter(x + rng.uniform(-0.15, 0.15, len(ys)), ys, s=10, alpha=0.6, color=f"C{j}",
                         label=name if k == 0 else None)
            left.boxplot([ys], positions=[x], widths=0.5, showfliers=False)
    if exp.get("sft", {}).get("mean") is not None:
        left.axhline(exp["sft"]["mean"], color="grey", lw=0.8, ls="--", label="sft (mean)")
    left.set_xticks([3 * k + 0.5 for k in range(len(seeds))], [f"seed {s}" for s in seeds], fontsize=8)
    left.set_ylabel(f"{measure}, mean over a prompt's answers")
    left.set_title(f"each arm, per prompt (n={exp['prompts']['n']})", fontsize=10)
    left.legend(fontsize=8)
    rows = [(f"seed {s}", exp["per_seed"][s]) for s in seeds]
    if len(seeds) > 1:
        rows.append(("pooled", exp["pooled"]))
    _errorbars(right, [r[0] for r in rows], [dict(r[1], ci=r[1]["ci_t"]) for r in rows], "difference", null=0.0,
               horizontal=True)
    named = "below" if exp["endpoint"]["direction"] == "lower" else "above"
    right.set_xlabel(f"{a} minus {b}, {measure} (paired t CI)")
    right.set_title(f"effect per seed (named direction: {named} 0)", fontsize=10)
    return _save(fig, folder, "eval_experiment")


def reward_heatmap(report: dict, folder: Path) -> Path:
    mean = report["reward"]["mean"]
    cols = len(next(iter(mean.values())))
    fig, axes = _figure(0.55 * cols + 4, 0.45 * len(mean) + 2.5)
    _heatmap(axes[0][0], mean, "Mean reward per policy under each principle alone\nand under the RL-time draw")
    return _save(fig, folder, "eval_reward_heatmap")


def reward_deltas(report: dict, folder: Path) -> Path | None:
    deltas = report["reward"]["delta_vs_sft"]
    if not deltas:
        return None
    cols = list(next(iter(deltas.values())))
    fig, axes = _figure(4.2 * len(deltas), 0.3 * len(cols) + 1.8, cols=len(deltas))
    for ax, (policy, d) in zip(axes[0], deltas.items()):
        _errorbars(ax, cols, [d[c] for c in cols], "difference", null=0.0, horizontal=True)
        ax.set_title(f"{policy} minus sft (reward, CI)", fontsize=10)
        if ax is not axes[0][0]:
            ax.set_yticklabels([])
    return _save(fig, folder, "eval_reward_deltas")


def head_to_head(report: dict, folder: Path) -> Path | None:
    h2h = report["head_to_head"]
    panels = [("reward model, RL-time draw", h2h["reward_model"])]
    if "by_policy" in h2h.get("judge", {}):
        panels.append(("judge, both orders", h2h["judge"]["by_policy"]))
    if not h2h["reward_model"]:
        return None
    fig, axes = _figure(4.5 * len(panels), 3.6, cols=len(panels))
    for ax, (title, results) in zip(axes[0], panels):
        names = list(results)
        _errorbars(ax, names, [results[n] for n in names], "win_rate", null=0.5)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"Win rate against sft\n({title}; a tie counts half)", fontsize=10)
    return _save(fig, folder, "eval_head_to_head")


def behaviour(report: dict, folder: Path) -> Path:
    by_policy = report["behaviour"]["by_policy"]
    names = list(by_policy)
    fig, axes = _figure(14, 6.5, rows=2, cols=4)
    for ax, (key, title) in zip(axes.flat, BEHAVIOUR_PANELS):
        _errorbars(ax, names, [by_policy[n].get(key) for n in names], "mean")
        ax.set_title(title, fontsize=10)
    return _save(fig, folder, "eval_behaviour")


def hhh(report: dict, folder: Path) -> Path | None:
    section = report["hhh"]
    if "by_policy" not in section:
        return None
    names = list(section["by_policy"])
    types = ["overall", *next(iter(section["by_policy"].values()))["by_type"]]
    fig, axes = _figure(2.2 * len(types) + 3, 3.8)
    ax = axes[0][0]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        entry = section["by_policy"][name]
        res = [entry["overall"], *(entry["by_type"][t] for t in types[1:])]
        x = np.arange(len(types)) + (k - (len(names) - 1) / 2) * width
        means = [r["mean"] for r in res]
        err = np.array([[m - r["ci"][0], r["ci"][1] - m] for m, r in zip(means, res)]).T
        ax.bar(x, means, width, yerr=err, capsize=2, label=name)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(types)), types)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (by the policy's own likelihood)")
    ax.set_title(f"HHH pairs (n={section['n']}): per category, CI", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, folder, "eval_hhh")


def make_all(report: dict, folder: str | Path) -> dict[str, Path]:
    """Every figure the report has data for: {name: path}, in the page's order."""
    folder = Path(folder)
    made = {"experiment": experiment(report, folder), "controllability": controllability(report, folder),
            "reward_heatmap": reward_heatmap(report, folder),
            "reward_deltas": reward_deltas(report, folder), "head_to_head": head_to_head(report, folder),
            "behaviour": behaviour(report, folder), "hhh": hhh(report, folder)}
    return {k: v for k, v in made.items() if v is not None}
