"""Stage 05's results as pandas tables, for the notebook: the prompt split, the run's summary,
the first and last step, the RM term per drawn principle and sample rollouts."""

from __future__ import annotations


def split(record: dict):
    """rl_prompts.json as counts: training, held out, and excluded per earlier stage."""
    import pandas as pd

    return pd.Series({"train": len(record["train"]), "held out": len(record["heldout"]),
                      **{f"excluded ({k})": v for k, v in record.get("excluded", {}).items()}})


def summary(stats: dict):
    """rl_stats.json's scalar entries (the per-step sections are `first_and_last_step`)."""
    import pandas as pd

    return pd.Series({k: v for k, v in stats.items() if not isinstance(v, dict)})


def first_and_last_step(stats: dict):
    """Reward, RM term, KL, length and finished share at the first and the last step."""
    import pandas as pd

    return pd.DataFrame({k: stats[k] for k in ("first_step", "last_step") if k in stats}).T


def principle_table(rollouts: list[dict]):
    """Mean RM term per drawn principle, over the first and the second half of the steps."""
    import pandas as pd

    if not rollouts:
        return pd.DataFrame()
    steps = sorted({r["step"] for r in rollouts})
    middle = steps[len(steps) // 2]
    rows = [{"principle": name, "half": "early" if r["step"] < middle or len(steps) == 1 else "late",
             "rm": r.get("rm", 0.0)} for r in rollouts for name in r["principles"]]
    return pd.DataFrame(rows).pivot_table(index="principle", columns="half", values="rm", aggfunc="mean")


def rollout_table(rollouts: list[dict], per_phase: int = 3, width: int = 300):
    """A few answers from the first and the last step, with their principles and reward terms."""
    import pandas as pd

    if not rollouts:
        return pd.DataFrame()
    first, last = min(r["step"] for r in rollouts), max(r["step"] for r in rollouts)
    rows = []
    for phase, step in (("early", first), ("late", last)):
        for r in [r for r in rollouts if r["step"] == step][:per_phase]:
            rows.append({"phase": f"{phase} (step {step})", "prompt_id": r["prompt_id"],
                         "principles": ", ".join(r["principles"]), "response": r["response"][:width],
                         "tokens": r["tokens"], "finished": r["finished"], "rm": r.get("rm"),
                         "reward": r.get("reward", r.get("score"))})
    return pd.DataFrame(rows)
