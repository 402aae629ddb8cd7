"""report.json sections as pandas tables, for the notebook (value and interval side by side)."""

from __future__ import annotations

from .rewards import RL_DRAW


def _interval(r: dict | None, key: str = "mean") -> tuple:
    if not r or r.get(key) is None:
        return (None, None, None)
    lo, hi = r["ci"] if r.get("ci") else (None, None)
    return (r[key], lo, hi)


def experiment(report: dict):
    """The registered endpoint: one row per seed and the pooled estimate, with all three intervals."""
    import pandas as pd

    exp = report["controllability"]["experiment"]
    rows = {}
    for label, r in [*((f"seed {s}", r) for s, r in exp["per_seed"].items()), ("pooled", exp["pooled"])]:
        t, bca = r["ci_t"] or (None, None), r["ci_bca"] or (None, None)
        rows[label] = {exp["a"]: r["mean_a"], exp["b"]: r["mean_b"], "difference": r["difference"],
                       "t_low": t[0], "t_high": t[1], "bca_low": bca[0], "bca_high": bca[1], "d_z": r["effect_size_dz"],
                       "moved": r["moved"] or "none claimed"}
    return pd.DataFrame(rows).T


def behaviour(report: dict):
    import pandas as pd

    keys = ("length_words", "finished", "refusal_red_team", "false_refusal", "self_praise", "language_match",
            "distinct_2", "kl_to_sft")
    rows = {p: {k: _interval(s.get(k))[0] for k in keys} for p, s in report["behaviour"]["by_policy"].items()}
    return pd.DataFrame(rows).T


def head_to_head(report: dict):
    import pandas as pd

    rows = {p: dict(zip(("win_rate", "ci_low", "ci_high"), _interval(r, "win_rate")), wins=r["wins"], ties=r["ties"],
                    losses=r["losses"], distinguishable=r["distinguishable"])
            for p, r in report["head_to_head"]["reward_model"].items()}
    return pd.DataFrame(rows).T


def reward_deltas(report: dict, column: str = RL_DRAW):
    import pandas as pd

    rows = {p: dict(zip(("difference", "ci_low", "ci_high"), _interval(d[column], "difference")), n=d[column]["n"],
                    d_z=d[column]["effect_size_dz"], distinguishable=d[column]["distinguishable"])
            for p, d in report["reward"]["delta_vs_sft"].items()}
    return pd.DataFrame(rows).T


def samples(rows: list[dict], limit: int = 5):
    """Prompts as rows, policies as columns: the answers side by side."""
    import pandas as pd

    return pd.DataFrame({r["prompt"][:80]: {p: a["text"] for p, a in r["answers"].items()} for r in rows[:limit]}).T
