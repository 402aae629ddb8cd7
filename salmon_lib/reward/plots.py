"""Reward per principle, as pictures: a responses x principles heatmap, per-principle score
distributions, one prompt's candidates as grouped bars, training curves, and a small widget to
type a principle and rescore. Every function takes a `RewardModel`, so it works on any run."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..io import read_jsonl


def responses_from_run(
    run_dir: str | Path, limit: int = 12, preferences: str = "preferences.jsonl"
) -> list[tuple[str, str]]:
    """(prompt, response) pairs from stage 03's preference file: both sides of the first pairs."""
    seen, out = set(), []
    for rec in read_jsonl(Path(run_dir) / preferences, required={"prompt": str, "chosen": str, "rejected": str}):
        for resp in (rec["chosen"], rec["rejected"]):
            if (rec["prompt"], resp) not in seen and len(out) < limit:
                seen.add((rec["prompt"], resp))
                out.append((rec["prompt"], resp))
    return out


def principle_texts(path: str | Path, negated: bool = False) -> dict[str, str]:
    """{name: text} of a principle file."""
    from ..principles import load_principles

    return {p.name: p.text(negated) for p in load_principles(path).principles}


def score_matrix(rm, responses: Sequence[tuple[str, str]], principles: Mapping[str, str], batch_size: int = 16,
                 labels: Sequence[str] | None = None):
    """DataFrame of scores: one row per (prompt, response), one column per named principle.
    All principle columns of a row share the row's prefix pass."""
    import pandas as pd

    names = list(principles)
    items = [(p, r, [principles[n]]) for p, r in responses for n in names]
    flat = rm.score(items, batch_size=batch_size)
    labels = list(labels) if labels else [_label(p, r) for p, r in responses]
    rows = [flat[i * len(names):(i + 1) * len(names)] for i in range(len(responses))]
    return pd.DataFrame(rows, index=labels, columns=names)


def _label(prompt: str, response: str, width: int = 38) -> str:
    def short(s: str) -> str:
        return (" ".join(s.split())[: width - 1] + "…") if len(s) > width else " ".join(s.split())

    return f"{short(prompt)} → {short(response)}"


def plot_heatmap(df, ax=None, title: str = "Reward by response and principle"):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * len(df.columns) + 5, 0.35 * len(df) + 1.5))
    im = ax.imshow(df.values, aspect="auto", cmap="RdYlGn")
    ax.set_xticks(range(len(df.columns)), df.columns, rotation=40, ha="right")
    ax.set_yticks(range(len(df)), df.index, fontsize=7)
    ax.figure.colorbar(im, ax=ax, label="score")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax


def plot_distributions(df, ax=None, title: str = "Score distribution per principle"):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(df.columns) + 3, 4))
    ax.boxplot([df[c].values for c in df.columns], showmeans=True)
    ax.set_xticks(range(1, len(df.columns) + 1), df.columns, rotation=40, ha="right")
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax


def plot_prompt_bars(rm, prompt: str, responses: Sequence[str], principles: Mapping[str, str], ax=None,
                     batch_size: int = 16):
    """For one prompt: each candidate response's score under each principle, as grouped bars."""
    import matplotlib.pyplot as plt
    import numpy as np

    df = score_matrix(rm, [(prompt, r) for r in responses], principles, batch_size,
                      labels=[f"response {i + 1}" for i in range(len(responses))])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.4 * len(principles) + 4, 4))
    width = 0.8 / len(df)
    x = np.arange(len(df.columns))
    for i, (label, row) in enumerate(df.iterrows()):
        ax.bar(x + i * width - 0.4 + width / 2, row.values, width, label=label)
    ax.set_xticks(x, df.columns, rotation=30, ha="right")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("score")
    ax.set_title(_label(prompt, "", 70).rstrip(" →"))
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax, df


def plot_training_curves(stats: Mapping, axes=None):
    """Loss and accuracy per step (training and held-out) for each phase in reward_stats.json."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for phase, ph in stats["phases"].items():
        hist = ph["history"]
        for ax, key in zip(axes, ("loss", "accuracy")):
            for prefix, style in (("", "-"), ("eval_", "o--")):
                pts = [(h["step"], h[prefix + key]) for h in hist if prefix + key in h]
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{phase} {'held-out' if prefix else 'train'}")
    for ax, key in zip(axes, ("Bradley-Terry loss", "pairwise accuracy")):
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.legend(fontsize=8)
    axes[0].figure.tight_layout()
    return axes


def principle_widget(rm, prompt: str, responses: Sequence[str], principles: Mapping[str, str] | None = None):
    """Type a principle, press Rescore: the bars show every response under the given principles
    plus the typed one. Returns the ipywidgets box to display."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    base = dict(principles or {})
    text = w.Text(placeholder="e.g. The reply should use a friendly, informal tone.", description="Principle:",
                  continuous_update=False, layout=w.Layout(width="80%"))
    button = w.Button(description="Rescore")
    out = w.Output()

    def redraw(_=None):
        shown = dict(base)
        if text.value.strip():
            shown["typed"] = text.value.strip()
        out.clear_output(wait=True)
        with out:
            if not shown:
                print("Type a principle and press Rescore.")
                return
            ax, df = plot_prompt_bars(rm, prompt, responses, shown)
            plt.show()
            display(df.round(3))

    button.on_click(redraw)
    text.observe(redraw, names="value")  # Enter (or leaving the box) rescores too
    redraw()
    return w.VBox([w.HBox([text, button]), out])


def save_figure(ax, run_dir: str | Path, name: str) -> Path:
    """Write a figure to `<run>/figures/<name>.png` atomically."""
    from ..io import atomic_path

    path = Path(run_dir) / "figures" / f"{name}.png"
    fig = ax.figure if hasattr(ax, "figure") else ax[0].figure
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
