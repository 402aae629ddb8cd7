"""Figures of an RL run (`figures/rl_*.png`, or `rl_arm_<arm>_*.png`): the reward and each of its
terms over steps, the RM term per drawn principle (early vs late), length / KL / finished share over
steps, and sample rollouts early vs late."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ..io import atomic_path, read_jsonl
from .context import RLPaths
from .tables import principle_table, rollout_table

TERM_COLUMNS = ("reward", "score", "rm", "unfinished", "length_term", "kl_penalty")
FIGURES = ("reward", "length_kl", "principles", "rollouts", "term_shares")


def figure_paths(run_dir: str | Path, arm: str | None = None) -> dict[str, Path]:
    """{name: the PNG `save_all` writes} of the run (or of one of its arms)."""
    paths = RLPaths(Path(run_dir), arm)
    return {name: paths.figures / f"{paths.figure_prefix}_{name}.png" for name in FIGURES}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _rows(path: Path) -> list[dict]:
    return read_jsonl(path) if path.is_file() else []


def plot_reward_terms(metrics: list[dict]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in metrics]
    for key in TERM_COLUMNS:
        ys = [r.get(key) for r in metrics]
        if any(isinstance(y, (int, float)) and y != 0 for y in ys):
            ax.plot(steps, [y if y is not None else float("nan") for y in ys], label=key,
                    lw=2.5 if key == "reward" else 1.2, marker="o" if len(steps) < 30 else None)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel("mean per answer")
    ax.set_title("Reward and its terms (rm: 0 = the SFT policy's level)")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_length_kl(metrics: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    steps = [r["step"] for r in metrics]
    for ax, key, label in zip(axes, ("length", "kl", "finished"),
                              ("answer tokens", "KL to the SFT reference (per answer)", "finished share")):
        ys = [r.get(key) if r.get(key) is not None else float("nan") for r in metrics]
        ax.plot(steps, ys, marker="o" if len(steps) < 30 else None)
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_principles(rollouts: list[dict]):
    import matplotlib.pyplot as plt

    table = principle_table(rollouts)
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(table), 4) + 1.2))
    if len(table):
        table.plot.barh(ax=ax)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_xlabel("mean RM term of the answers it was drawn for")
    ax.set_title("Reward per drawn principle, early vs late steps", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def plot_rollout_table(rollouts: list[dict]):
    import matplotlib.pyplot as plt

    table = rollout_table(rollouts, width=160)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 1.1 * max(len(table), 1)))
    ax.axis("off")
    if len(table):
        cells = [[textwrap.fill(str(v), 60) if k == "response" else
                  (f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in row.items()]
                 for row in table.drop(columns=["prompt_id", "principles"]).to_dict("records")]
        t = ax.table(cellText=cells, colLabels=[c for c in table.columns if c not in ("prompt_id", "principles")],
                     loc="center", cellLoc="left", colWidths=[0.12, 0.58, 0.07, 0.07, 0.07, 0.09])
        t.auto_set_font_size(False)
        t.set_fontsize(7)
        t.scale(1, 4.2)
    ax.set_title("Sample rollouts, first vs last step", fontsize=10)
    fig.tight_layout()
    return fig


def plot_term_shares(rollouts: list[dict]):
    """Share of the shaped score's spread carried by each term, across answers and within a prompt's
    group: a principle score that carries little of it is not what the policy is trained on."""
    import matplotlib.pyplot as plt

    from .shaping import TERMS, term_shares

    shares = term_shares(rollouts)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    views = [(k, shares[k]) for k in ("across", "within_prompt") if shares[k] is not None]
    width = 0.8 / max(len(views), 1)
    for j, (name, values) in enumerate(views):
        ax.bar([i + j * width for i in range(len(TERMS))], [values[t] for t in TERMS], width,
               label=name.replace("_", " "))
    ax.set_xticks([i + width * (len(views) - 1) / 2 for i in range(len(TERMS))], TERMS)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("Cov(term, score) / Var(score)")
    ax.set_title(f"What the shaped reward is made of ({shares['answers']} answers)", fontsize=10)
    if views:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_all(run_dir: str | Path, arm: str | None = None) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = RLPaths(Path(run_dir), arm)
    metrics, rollouts = _rows(paths.metrics), _rows(paths.rollouts)
    figures = {"reward": plot_reward_terms(metrics), "length_kl": plot_length_kl(metrics),
               "principles": plot_principles(rollouts), "rollouts": plot_rollout_table(rollouts),
               "term_shares": plot_term_shares(rollouts)}
    out = []
    for name, path in figure_paths(run_dir, arm).items():
        out.append(_save(figures[name], path))
        plt.close(figures[name])
    return out
