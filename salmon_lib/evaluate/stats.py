"""Paired statistics for policies that answered the same prompts.

Every comparison is paired by prompt: policy A's answer to prompt i is compared with policy B's
answer to the same prompt, and the percentile bootstrap resamples prompts (pairs), never single
answers, so the interval reflects how much the result depends on which prompts were drawn.
A result is "distinguishable" from its null (a difference of 0, a win rate of 0.5) only when the
null lies outside the interval; every summary says which null it was tested against.

Win rates count a tie as half a win, so 0.5 means "no better, no worse" whatever the tie share.
Effect sizes: d_z (mean paired difference over the standard deviation of the differences) for
differences; Cliff's delta (2 * win rate - 1, in [-1, 1]) for win rates.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values exist (None or NaN marks a measure that does not apply)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    x = np.array([np.nan if v is None else v for v in a], dtype=float)
    y = np.array([np.nan if v is None else v for v in b], dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _excludes(ci: list[float] | None, null: float) -> bool:
    return ci is not None and not ci[0] <= null <= ci[1]


def mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Mean of one sample (a rate, when the values are 0/1) with its bootstrap interval."""
    x = np.array([np.nan if v is None else v for v in values], dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return {"n": 0, "mean": None, "ci": None}
    boot = x[_resamples(len(x), n_boot, seed)].mean(axis=1)
    return {"n": int(len(x)), "mean": float(x.mean()), "ci": _interval(boot, confidence)}


def paired_difference(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0,
                      confidence: float = 0.95) -> dict:
    """mean(a - b) over prompts, its bootstrap interval, d_z, and whether 0 lies outside the interval."""
    x, y = _paired(a, b)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean_a": None, "mean_b": None, "difference": None, "ci": None, "effect_size_dz": None,
                "null": 0.0, "distinguishable": False}
    d = x - y
    boot = d[_resamples(n, n_boot, seed)].mean(axis=1)
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    ci = _interval(boot, confidence)
    return {"n": n, "mean_a": float(x.mean()), "mean_b": float(y.mean()), "difference": float(d.mean()), "ci": ci,
            "confidence": confidence,
            # undefined when every difference is the same (sd 0): a constant shift has no spread to scale by
            "effect_size_dz": float(d.mean() / sd) if sd > 0 else None,
            "null": 0.0, "distinguishable": _excludes(ci, 0.0)}


def outcomes(a: Sequence[float], b: Sequence[float], tie_tolerance: float = 0.0) -> np.ndarray:
    """Per pair: 1 when a beats b, 0.5 on a tie (|a - b| <= tie_tolerance), 0 when b wins."""
    x, y = _paired(a, b)
    d = x - y
    return np.where(np.abs(d) <= tie_tolerance, 0.5, (d > 0).astype(float))


def win_rate(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
             tie_tolerance: float = 0.0) -> dict:
    """How often a's answer scores higher than b's on the same prompt, ties counted as half a win."""
    o = outcomes(a, b, tie_tolerance)
    n = len(o)
    if n == 0:
        return {"n": 0, "wins": 0, "ties": 0, "losses": 0, "win_rate": None, "ci": None, "cliffs_delta": None,
                "null": 0.5, "distinguishable": False, "ties_count_half": True}
    boot = o[_resamples(n, n_boot, seed)].mean(axis=1)
    rate = float(o.mean())
    ci = _interval(boot, confidence)
    return {"n": n, "wins": int((o == 1).sum()), "ties": int((o == 0.5).sum()), "losses": int((o == 0).sum()),
            "win_rate": rate, "ci": ci, "confidence": confidence, "cliffs_delta": 2 * rate - 1, "null": 0.5,
            "distinguishable": _excludes(ci, 0.5), "ties_count_half": True}


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def decimals(*values: float | None, minimum: int = 2, maximum: int = 6) -> int:
    """Decimals that show the spread of `values` (an estimate and its interval) to two significant
    digits: rewards of a few hundredths printed as "0.00 (CI 0.00 to 0.00)" say nothing."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    scale = (max(xs) - min(xs) if len(xs) > 1 else 0.0) or max(map(abs, xs), default=0.0)
    if scale == 0:
        return minimum
    return min(maximum, max(minimum, 1 - math.floor(math.log10(scale))))


def _level(result: dict) -> str:
    return f"{round(100 * result.get('confidence', 0.95))}% CI"


def describe_difference(what: str, result: dict, unit: str = "", digits: int = 2) -> str:
    """One plain sentence: the difference, its interval and whether it is distinguishable from zero."""
    if not result.get("n"):
        return f"{what}: no pairs to compare."
    ci = result["ci"]
    digits = decimals(result["difference"], *ci, minimum=digits)
    level = (f"{fmt(result['difference'], digits)}{unit} ({_level(result)} {fmt(ci[0], digits)} to "
             f"{fmt(ci[1], digits)}, n={result['n']}")
    dz = result.get("effect_size_dz")
    level += f", d_z={dz:.2f})" if dz is not None else ")"
    if result["distinguishable"]:
        return f"{what}: {level}; the interval excludes zero."
    return f"{what}: {level}; not distinguishable from zero (the interval covers 0)."


def describe_win_rate(what: str, result: dict) -> str:
    if not result.get("n"):
        return f"{what}: no pairs to compare."
    ci = result["ci"]
    text = (f"{what}: win rate {result['win_rate']:.2f} ({_level(result)} {ci[0]:.2f} to {ci[1]:.2f}; "
            f"{result['wins']} wins, {result['ties']} ties counted half, {result['losses']} losses, n={result['n']})")
    if result["distinguishable"]:
        return text + "; the interval excludes 0.5."
    return text + "; not distinguishable from an even split (the interval covers 0.5)."
