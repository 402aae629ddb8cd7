"""Paired statistics for policies that answered the same prompts.

Every comparison is paired by prompt: policy A's answer to prompt i is compared with policy B's
answer to the same prompt, and the percentile bootstrap resamples prompts (pairs), never single
answers, so the interval reflects how much the result depends on which prompts were drawn.
A result is "distinguishable" from its null (a difference of 0, a win rate of 0.5) only when the
null lies outside the interval; every summary says which null it was tested against.

Win rates count a tie as half a win, so 0.5 means "no better, no worse" whatever the tie share.
Effect sizes: d_z (mean paired difference over the standard deviation of the differences) for
differences; for win rates the paired sign statistic 2 * win rate - 1 in [-1, 1] (P(a > b) - P(a < b)
over pairs; Cliff's delta is its unpaired cousin, over all cross pairs, and is not what is computed).

The percentile bootstrap is narrow at small n (about 92% coverage for a nominal 95% at n=16), so the
controllability experiment's primary interval is the paired t-interval, with scipy's BCa beside it
(`paired_effect`).
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
        return {"n": 0, "wins": 0, "ties": 0, "losses": 0, "win_rate": None, "ci": None, "sign_statistic": None,
                "null": 0.5, "distinguishable": False, "ties_count_half": True}
    boot = o[_resamples(n, n_boot, seed)].mean(axis=1)
    rate = float(o.mean())
    ci = _interval(boot, confidence)
    return {"n": n, "wins": int((o == 1).sum()), "ties": int((o == 0.5).sum()), "losses": int((o == 0).sum()),
            "win_rate": rate, "ci": ci, "confidence": confidence, "sign_statistic": 2 * rate - 1, "null": 0.5,
            "distinguishable": _excludes(ci, 0.5), "ties_count_half": True}


def paired_effect(a: Sequence[float], b: Sequence[float], direction: str = "lower", n_boot: int = 2000,
                  seed: int = 0, confidence: float = 0.95) -> dict:
    """mean(a - b) over pairs with three intervals: the paired t-interval (primary: it holds its
    coverage at a few dozen pairs where the percentile bootstrap does not), scipy's BCa bootstrap and
    the percentile bootstrap; d_z; the paired sign statistic; and `moved`: "named" when the t-interval
    excludes 0 on the side `direction` names ("lower": a below b), "against" on the other side, else None."""
    from scipy import stats

    if direction not in ("lower", "higher"):
        raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}")
    x, y = _paired(a, b)
    d, n = x - y, len(x)
    out = {"n": n, "direction": direction, "confidence": confidence, "mean_a": None, "mean_b": None,
           "difference": None, "ci_t": None, "p_t": None, "ci_bca": None, "ci_percentile": None,
           "effect_size_dz": None, "sign_statistic": None, "moved": None}
    if n < 2:
        return out
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    out.update(mean_a=float(x.mean()), mean_b=float(y.mean()), difference=mean,
               sign_statistic=float(np.mean(np.sign(d))), ci_percentile=_interval(
                   d[_resamples(n, n_boot, seed)].mean(axis=1), confidence))
    if sd == 0:  # a constant shift: every interval is the point itself
        out.update(ci_t=[mean, mean], ci_bca=[mean, mean], p_t=0.0 if mean else 1.0)
    else:
        lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
        boot = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_boot, method="BCa",
                               random_state=np.random.default_rng(seed))
        out.update(ci_t=[float(lo), float(hi)], p_t=float(stats.ttest_1samp(d, 0.0).pvalue),
                   ci_bca=[float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
                   effect_size_dz=mean / sd)
    lo, hi = out["ci_t"]
    if hi < 0 or lo > 0:
        out["moved"] = "named" if (hi < 0) == (direction == "lower") else "against"
    return out


def describe_effect(what: str, r: dict, unit: str = "") -> str:
    """One sentence on a `paired_effect`: the estimate, its t and BCa intervals, and the verdict."""
    if r["difference"] is None:
        return f"{what}: fewer than 2 pairs, nothing to estimate."
    ci, bca = r["ci_t"], r["ci_bca"]
    digits = decimals(r["difference"], *ci)
    level = f"{round(100 * r['confidence'])}%"
    text = (f"{what}: {fmt(r['difference'], digits)}{unit} (paired t {level} CI {fmt(ci[0], digits)} to "
            f"{fmt(ci[1], digits)}; BCa {fmt(bca[0], digits)} to {fmt(bca[1], digits)}; n={r['n']} prompts")
    text += f", d_z={r['effect_size_dz']:.2f})" if r["effect_size_dz"] is not None else ")"
    named = "below" if r["direction"] == "lower" else "above"
    if r["moved"] == "named":
        return text + f"; moved in the named direction (the interval lies {named} zero)."
    if r["moved"] == "against":
        return text + "; moved AGAINST the named direction (the interval excludes zero on the other side)."
    return text + "; not distinguishable from zero (the interval covers 0): no effect is claimed."


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
