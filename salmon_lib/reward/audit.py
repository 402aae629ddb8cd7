"""The reward audit: does the reward prefer what a principle set names, on the policy's own answers?

Flip probes test a reward on hand-written pairs; RL only ever shows it the policy's samples. The
audit samples several answers per prompt from the policy (a cap long enough that most finish),
scores each under two principle sets whose behaviour has a programmatic measure, and reads how the
reward's preference follows that measure. For a `shorter` set (e.g. concise.yaml) against a
`longer` one (comprehensive.yaml), the measure is the answer's length in tokens:

- `spearman_difference`: per prompt, the rank correlation between score(shorter) - score(longer)
  and shortness (fewer tokens ranks higher), averaged over prompts: what separates the two arms;
- `spearman_shorter` / `spearman_longer`: the same for each set's own score (against shortness and
  against length): what each arm alone is pushed towards;
- `pick_shorter_rate`: over the prompts where the set's best answers differ, how often the best
  under `shorter` has fewer tokens than the best under `longer` (best-of-N under each set).

With a dozen prompts these are estimates with wide intervals: `spearman_difference_ci` is the
t-interval over the prompts' correlations, `pick_shorter_ci` Wilson's interval for the rate.

Every per-prompt value is kept (`by_prompt`) so a reader can see how much of the mean one prompt
carries; prompts whose answers all have one length are left out of the correlations.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Answer:
    prompt: str  # the bare user request (what the reward reads)
    response: str
    finished: bool  # ended with its end-of-turn token, not at the token limit
    tokens: int  # generated tokens, the end-of-turn token included


def sample_answers(gen, render, prompts: Sequence[str], samples: int, max_new_tokens: int, temperature: float,
                   seed: int, stop: Sequence[str], adapter: str | None = None) -> list[Answer]:
    """`samples` answers per prompt from `gen` (prompt rendered by `render`), seeded per prompt."""
    comps = gen.generate([render(p) for p in prompts], n=samples, temperature=temperature, top_p=1.0,
                         max_new_tokens=max_new_tokens, stop=tuple(stop),
                         seed=[seed + i for i in range(len(prompts))], adapter=adapter)
    return [Answer(p, c.text.strip(), c.finish_reason == "stop", c.num_tokens)
            for p, cs in zip(prompts, comps) for c in cs if c.text.strip()]


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Rank correlation with tied values given their average rank; None when either side is constant."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    r = np.corrcoef(_ranks(a), _ranks(b))[0, 1]
    return None if math.isnan(r) else float(r)


def _ranks(x: Sequence[float]) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def length_audit(reward, answers: Sequence[Answer], shorter: tuple[str, Sequence[str]],
                 longer: tuple[str, Sequence[str]], batch_size: int = 16, progress: bool = False) -> dict:
    """Score `answers` under the two sets ((name, principle texts) each) and read the reward's
    preference against answer length (module docstring). Unfinished answers are scored as such."""
    items = [(a.prompt, a.response, list(texts), a.finished) for texts in (shorter[1], longer[1]) for a in answers]
    flat = reward.score(items, batch_size=batch_size, progress=progress)
    n = len(answers)
    s_short, s_long = flat[:n], flat[n:]
    by_prompt: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        by_prompt.setdefault(a.prompt, []).append(i)
    rows = []
    for prompt, idx in by_prompt.items():
        tokens = [answers[i].tokens for i in idx]
        short_rank = [-t for t in tokens]
        diff = [s_short[i] - s_long[i] for i in idx]
        best_short = idx[max(range(len(idx)), key=lambda k: s_short[idx[k]])]
        best_long = idx[max(range(len(idx)), key=lambda k: s_long[idx[k]])]
        rows.append({
            "prompt": prompt, "answers": len(idx), "tokens": tokens,
            "finished": sum(answers[i].finished for i in idx),
            "spearman_difference": spearman(diff, short_rank),
            "spearman_shorter": spearman([s_short[i] for i in idx], short_rank),
            "spearman_longer": spearman([s_long[i] for i in idx], tokens),
            "pick_tokens": {shorter[0]: answers[best_short].tokens, longer[0]: answers[best_long].tokens},
        })

    def mean_of(key: str) -> float | None:
        xs = [r[key] for r in rows if r[key] is not None]
        return statistics.fmean(xs) if xs else None

    differ = [r for r in rows if r["pick_tokens"][shorter[0]] != r["pick_tokens"][longer[0]]]
    shorter_picks = sum(r["pick_tokens"][shorter[0]] < r["pick_tokens"][longer[0]] for r in differ)
    return {
        "shorter": shorter[0], "longer": longer[0], "answers": n, "prompts": len(rows),
        "finished_share": sum(a.finished for a in answers) / n if n else None,
        "mean_tokens": statistics.fmean(a.tokens for a in answers) if n else None,
        "spearman_difference": mean_of("spearman_difference"),
        "spearman_shorter": mean_of("spearman_shorter"),
        "spearman_longer": mean_of("spearman_longer"),
        "prompts_with_spread": sum(r["spearman_difference"] is not None for r in rows),
        "picks_differ": len(differ),
        # over prompts (each prompt's rho one observation): the t-interval of their mean
        "spearman_difference_ci": t_interval([r["spearman_difference"] for r in rows], bounds=(-1.0, 1.0)),
        "pick_shorter_rate": shorter_picks / len(differ) if differ else None,
        "pick_shorter_ci": wilson(shorter_picks, len(differ)),
        "by_prompt": rows,
        "scores": [{"prompt": a.prompt, "response": a.response, "tokens": a.tokens, "finished": a.finished,
                    shorter[0]: s, longer[0]: lo} for a, s, lo in zip(answers, s_short, s_long)],
    }


def t_interval(values: Sequence[float | None], confidence: float = 0.95,
               bounds: tuple[float, float] | None = None) -> list[float] | None:
    """The t-interval of the mean of the non-missing values (None with fewer than 2), cut to
    `bounds`, the range the mean can take (a correlation's [-1, 1]): what the cut removes holds no
    possible value, so the interval keeps its coverage."""
    from scipy import stats

    xs = [v for v in values if v is not None]
    if len(xs) < 2:
        return None
    mean, sd = statistics.fmean(xs), statistics.stdev(xs)
    if sd == 0:
        return [mean, mean]
    lo, hi = stats.t.interval(confidence, len(xs) - 1, loc=mean, scale=sd / len(xs) ** 0.5)
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return [float(lo), float(hi)]


def wilson(k: int, n: int, confidence: float = 0.95) -> list[float] | None:
    """Wilson's interval for k successes in n (it keeps its coverage at the dozen prompts audited)."""
    from scipy import stats

    if n == 0:
        return None
    ci = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def plot_length_audit(result: dict, ax=None):
    """Each answer's score(shorter) - score(longer), centred per prompt, against its length centred
    per prompt: a reward that follows the sets falls from left to right. Unfinished answers hollow."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    short, long_ = result["shorter"], result["longer"]
    groups: dict[str, list[dict]] = {}
    for s in result["scores"]:
        groups.setdefault(s["prompt"], []).append(s)
    for k, rows in enumerate(groups.values()):
        mt = statistics.fmean(r["tokens"] for r in rows)
        md = statistics.fmean(r[short] - r[long_] for r in rows)
        color = plt.cm.tab20(k % 20)
        for r in rows:
            ax.scatter(r["tokens"] - mt, r[short] - r[long_] - md, s=22, edgecolors=[color],
                       facecolors=[color] if r["finished"] else "none")
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    rho = result["spearman_difference"]
    rate = result["pick_shorter_rate"]
    ci, pci = result.get("spearman_difference_ci"), result.get("pick_shorter_ci")
    ax.set_title(f"Reward audit: {short} minus {long_} against length\n"
                 f"mean within-prompt Spearman with shortness {_fmt(rho)}{_range(ci)}; "
                 f"best under {short} shorter on {_fmt(rate)}{_range(pci)} of {result['picks_differ']} prompts",
                 fontsize=9)
    ax.set_xlabel("answer tokens (minus the prompt's mean)")
    ax.set_ylabel(f"score({short}) - score({long_}) (minus the prompt's mean)")
    return ax


def audit_table(result: dict):
    """The audit's figures as a one-column DataFrame, for a notebook."""
    import pandas as pd

    keys = ("answers", "prompts", "finished_share", "mean_tokens", "spearman_difference", "spearman_difference_ci",
            "spearman_shorter", "spearman_longer", "picks_differ", "pick_shorter_rate", "pick_shorter_ci")
    return pd.DataFrame({"value": [result[k] for k in keys]}, index=list(keys))


def _range(ci: list[float] | None) -> str:
    return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"
