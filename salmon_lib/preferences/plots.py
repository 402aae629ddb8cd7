"""Figures of the judge: what its scores look like, how position-biased it is, and how much its
principles say the same thing. Each function returns the figure and saves it when given a path."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence


def _save(fig, path: str | Path | None):
    if path is not None:
        from ..io import atomic_path

        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    return fig


def _by_principle(judgements: Sequence[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for j in judgements:
        out[j["principle"]].append(j)
    return dict(sorted(out.items()))


def score_distributions(judgements: Sequence[dict], path=None):
    """Per principle, the histogram of order-averaged scores (s12 + s21) / 2."""
    import matplotlib.pyplot as plt

    groups = _by_principle(judgements)
    cols = min(4, len(groups)) or 1
    rows = math.ceil(len(groups) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    for ax, (name, js) in zip(axes.flat, groups.items()):
        ax.hist([(j["s12"] + j["s21"]) / 2 for j in js], bins=20, color="tab:blue", alpha=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.supxlabel("order-averaged score (log-odds for response 1)")
    fig.suptitle("Judge scores per principle")
    fig.tight_layout()
    return _save(fig, path)


def position_bias(agreement: dict[str, dict[str, dict]], path=None):
    """Per principle, how often the two orders disagree, under each debiasing (`agreement` is
    the `judge.agreement` section of the stats: {method: {principle: stats}})."""
    import matplotlib.pyplot as plt

    methods = list(agreement)
    names = sorted(next(iter(agreement.values())))
    fig, ax = plt.subplots(figsize=(min(12, max(6, 0.35 * len(names) * len(methods))), 3.6))
    width = 0.8 / len(methods)
    for m, method in enumerate(methods):
        ax.bar([i + m * width for i in range(len(names))], [1 - agreement[method][n]["agreement"] for n in names],
               width, label=method)
    ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(names))], names, rotation=40, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("order disagreement")
    ax.set_title("Position bias: the two orders name different winners")
    ax.legend(title="debiasing", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def principle_correlation(judgements: Sequence[dict], path=None):
    """Pearson correlation between principles of the order-averaged pair scores."""
    import matplotlib.pyplot as plt
    import numpy as np

    groups = _by_principle(judgements)
    names = list(groups)
    pairs = sorted({j["pair_id"] for j in judgements})
    index = {p: i for i, p in enumerate(pairs)}
    m = np.full((len(names), len(pairs)), np.nan)
    for r, name in enumerate(names):
        for j in groups[name]:
            m[r, index[j["pair_id"]]] = (j["s12"] + j["s21"]) / 2
    m = m[:, ~np.isnan(m).any(axis=0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(m) if m.shape[1] > 1 else np.full((len(names), len(names)), np.nan)
    fig, ax = plt.subplots(figsize=(0.55 * len(names) + 3, 0.55 * len(names) + 2))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xticks(range(len(names)), names, rotation=50, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson r")
    ax.set_title(f"Principle x principle correlation ({m.shape[1]} pairs)")
    fig.tight_layout()
    return _save(fig, path)


def hhh_accuracy(hhh: dict, path=None):
    """Accuracy per HHH type under each debiasing: slot a, slot b, order-averaged."""
    import matplotlib.pyplot as plt

    methods = [m for m in ("none", "mean_position", "content_free") if m in hhh]
    types = list(hhh["none"])
    metrics = ("acc_chosen_in_a", "acc_chosen_in_b", "acc_both_orders", "order_agreement")
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.4), squeeze=False, sharey=True)
    width = 0.8 / len(metrics)
    for ax, method in zip(axes.flat, methods):
        for k, metric in enumerate(metrics):
            ax.bar([i + k * width for i in range(len(types))], [hhh[method][t][metric] for t in types], width,
                   label=metric)
        ax.axhline(0.5, color="k", lw=0.8, ls="--")
        ax.set_xticks([i + width * 1.5 for i in range(len(types))], types, rotation=30)
        ax.set_title(f"debias: {method}")
    axes.flat[0].set_ylabel("fraction of HHH pairs")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Judge on the HHH pairs")
    fig.tight_layout()
    return _save(fig, path)


def judge_signal(rows: dict[str, dict], path=None):
    """Per judge mode (`signal.table`): HHH accuracy overall and correct flips on the flip probes in
    each wording, side by side; chance is 0.5 for HHH and 0.25 for a correct flip."""
    import matplotlib.pyplot as plt

    modes = list(rows)
    metrics = [m for m in ("hhh_overall", "flips_probe_wording", "flips_judge_wording")
               if any(m in r for r in rows.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(modes) * max(1, len(metrics)) / 2), 3.6))
    width = 0.8 / max(1, len(metrics))
    for k, metric in enumerate(metrics):
        ax.bar([i + k * width for i in range(len(modes))], [rows[m].get(metric, 0) for m in modes], width, label=metric)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(modes))], modes, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction")
    ax.set_title("Principle signal per judge mode")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def rlcd_contrast(stats: dict, path=None):
    """Per principle (`rlcd.contrast_stats`): mean words of the answer written under the principle
    and under its negation, and the mean contrastive margin between them."""
    import matplotlib.pyplot as plt

    by = stats["by_principle"]
    names = list(by)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 0.9 * len(names) + 4), 3.6))
    width = 0.4
    left.bar([i for i in range(len(names))], [by[n]["words_pos"] for n in names], width, label="under the principle")
    left.bar([i + width for i in range(len(names))], [by[n]["words_neg"] for n in names], width,
             label="under its negation")
    left.set_xticks([i + width / 2 for i in range(len(names))], names, rotation=40, ha="right", fontsize=8)
    left.set_ylabel("mean words")
    left.legend(fontsize=8)
    right.bar(range(len(names)), [by[n]["mean_margin"] for n in names], color="tab:green")
    right.axhline(0, color="k", lw=0.8)
    right.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    right.set_ylabel("mean contrastive margin (nats)")
    fig.suptitle("RLCD pairs: how different the two answers are")
    fig.tight_layout()
    return _save(fig, path)
