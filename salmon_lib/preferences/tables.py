"""Stage 03's results (sections of preferences_stats.json) as pandas tables, for the notebook."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_COLUMNS = ["id", "dominant", "score_gap", "flags", "chosen", "rejected"]
FIGURES = {"judge": ("judge_position_bias", "judge_scores", "judge_principle_correlation"),
           "rlcd": ("rlcd_contrast",), "signal": ("judge_hhh_accuracy", "judge_signal")}
PAIRWISE_ONLY = ("judge_position_bias", "judge_hhh_accuracy")


def section(stats: dict, name: str):
    """A section of flat statistics (pairs, aggregate, almost) as a Series."""
    import pandas as pd

    return pd.Series(stats[name], name=name)


def judge(stats: dict):
    """Pairwise: per principle, how often the two orders agree, raw and under each debiasing.
    Likelihood modes: per principle, the judgements, their mean and RMS score and response 1's wins."""
    import pandas as pd

    judged = stats["judge"]
    if judged["mode"] == "pairwise":
        return pd.DataFrame({m: {p: s["agreement"] for p, s in a.items()}
                             for m, a in judged["agreement"].items()}).round(3)
    return pd.DataFrame(judged["by_principle"]).T.round(3)


def rlcd(stats: dict):
    """Per principle: words on each side of the RLCD pairs and the contrastive margin."""
    import pandas as pd

    return pd.DataFrame(stats["rlcd_contrast"]["by_principle"]).T.round(2)


def judge_signal(stats: dict):
    """One row per judge mode: HHH accuracy overall and per type, correct flips per wording."""
    import pandas as pd

    from .signal import table

    return pd.DataFrame(table(stats["signal"])).T.round(3)


def hhh_debiasing(stats: dict):
    """The pairwise judge's HHH accuracy per type, raw and after each debiasing; None when the
    judge was not pairwise or HHH was skipped (`stats["hhh"]["skipped"]` says why)."""
    import pandas as pd

    hhh = stats.get("hhh", {})
    if "none" not in hhh:
        return None
    return pd.concat({m: pd.DataFrame(hhh[m]).T for m in ("none", "mean_position", "content_free")}).round(3)


def examples(records: list[dict], n: int = 5):
    """The first `n` preference examples, the columns stage 04 reads first."""
    import pandas as pd

    return pd.DataFrame(records[:n], columns=EXAMPLE_COLUMNS)


def figures(run_dir: str | Path, step: str, judge_mode: str) -> list[Path]:
    """The figures `step` (judge, rlcd, signal) saved under figures/; those only the pairwise judge
    draws are left out in another mode, where they could only be an earlier run's."""
    folder = Path(run_dir) / "figures"
    names = [n for n in FIGURES[step] if judge_mode == "pairwise" or n not in PAIRWISE_ONLY]
    return [folder / f"{n}.png" for n in names if (folder / f"{n}.png").is_file()]
