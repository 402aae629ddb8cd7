"""The reward every method optimises, one function for all, each term switchable and logged.

    score = rm + unfinished + length        (per answer; PPO adds the per-token KL on top)

- rm: the reward model's score of (bare instruction, answer, drawn principles, finished), times
  `rm_weight`, normalised as (score - mean) / std of the SFT policy's own answers of the same prompt
  type, measured once at the start (`rl_baseline.json`), so 0 means "as good as before RL"; or, with
  `group_normalise_rm`, standardised within the answers to one prompt (a group method's group), so
  the principle score's ranking of a group keeps one SD of weight however small its raw spread.
- unfinished: `unfinished_penalty` when the answer ran out of tokens before its end-of-turn token.
- length: SALMON's coef·min(tokens / length_tokens · m, cap) with m per prompt type (+1 general,
  -0.4 reasoning: long general answers gain, long reasoning answers lose).

The reward model reads the instruction as the user wrote it, never the rendered chat prompt
(the released SALMON code's policy never saw the instruction; the reward model still did).
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Mapping, Sequence

from .draw import Drawn

TERMS = ("rm", "unfinished", "length")


@dataclasses.dataclass(frozen=True)
class Shaping:
    rm_weight: float = 1.0
    normalise_rm: bool = True
    group_normalise_rm: bool = False
    unfinished_penalty: float = -6.0
    length_coef: float = 5.0
    length_tokens: int = 1024
    length_cap: float = 0.8
    length_multiplier: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg) -> "Shaping":
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})

    def length_term(self, tokens: int, prompt_type: str) -> float:
        m = self.length_multiplier.get(prompt_type, 0.0)
        return self.length_coef * min(tokens / self.length_tokens * m, self.length_cap)


@dataclasses.dataclass
class Sample:
    """One answer to score: the prompt record's fields, the answer and how it ended."""

    prompt_id: str
    instruction: str  # the bare user instruction
    question_type: str
    response: str  # the answer text, cut before its end-of-turn marker
    tokens: int  # generated tokens, the end-of-turn token included
    finished: bool  # ended with its end-of-turn token, not at the token limit
    drawn: Drawn


def baseline_stats(scores: Sequence[float], types: Sequence[str]) -> dict:
    """Mean, std and n of raw RM scores, overall and per prompt type."""
    def stats(xs):
        return {"mean": statistics.fmean(xs), "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}

    by_type: dict[str, list[float]] = {}
    for s, t in zip(scores, types):
        by_type.setdefault(t, []).append(s)
    return {"overall": stats(scores), "by_type": {t: stats(xs) for t, xs in sorted(by_type.items())}}


class RewardFunction:
    """`terms(samples)` -> one dict per sample: rm_raw, each term of TERMS, and their sum `score`."""

    def __init__(self, reward, shaping: Shaping, baseline: Mapping[str, Any] | None = None,
                 batch_size: int = 16):
        if shaping.normalise_rm and shaping.rm_weight and baseline is None and not shaping.group_normalise_rm:
            raise ValueError("normalise_rm needs the SFT baseline (rl_baseline.json); measure it first")
        self.reward, self.shaping, self.baseline, self.batch_size = reward, shaping, baseline, batch_size

    def _normalise(self, raw: float, prompt_type: str) -> float:
        if not self.shaping.normalise_rm:
            return raw
        ref = self.baseline["by_type"].get(prompt_type)
        # A type with too few baseline answers to have a spread borrows the overall statistics.
        if ref is None or ref["n"] < 2 or ref["std"] <= 0:
            ref = self.baseline["overall"]
        return (raw - ref["mean"]) / (ref["std"] if ref["std"] > 0 else 1.0)

    def raw_scores(self, samples: Sequence[Sample]) -> list[float]:
        items = [(s.instruction, s.response, list(s.drawn.texts), s.finished) for s in samples]
        return self.reward.score(items, batch_size=self.batch_size)

    def terms(self, samples: Sequence[Sample]) -> list[dict[str, float]]:
        sh = self.shaping
        raw = self.raw_scores(samples) if sh.rm_weight else [0.0] * len(samples)
        if not sh.rm_weight:
            rm = raw
        elif sh.group_normalise_rm:
            rm = _within_groups(raw, [s.prompt_id for s in samples])
        else:
            rm = [self._normalise(r, s.question_type) for r, s in zip(raw, samples)]
        out = []
        for s, r, n in zip(samples, raw, rm):
            t = {
                "rm_raw": r,
                "rm": sh.rm_weight * n if sh.rm_weight else 0.0,
                "unfinished": 0.0 if s.finished else sh.unfinished_penalty,
                "length": sh.length_term(s.tokens, s.question_type) if sh.length_coef else 0.0,
            }
            t["score"] = sum(t[k] for k in TERMS)
            out.append(t)
        return out


def _within_groups(raw: Sequence[float], groups: Sequence[str]) -> list[float]:
    """Each score minus its group's mean over the group's standard deviation (0 where a group's
    scores are all equal, or it has one answer)."""
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = [0.0] * len(raw)
    for idx in members.values():
        xs = [raw[i] for i in idx]
        sd = statistics.pstdev(xs) if len(xs) > 1 else 0.0
        if sd > 0:
            m = statistics.fmean(xs)
            for i in idx:
                out[i] = (raw[i] - m) / sd
    return out


def term_shares(rollouts: Sequence[Mapping[str, Any]], terms: Sequence[str] = TERMS) -> dict:
    """How much of the shaped score's spread each term carries: Cov(term, score) / Var(score) over
    the rollouts, which sums to 1 over the terms (a term that never varies carries 0, a term that
    moves against the others can go negative). `across` treats every answer alike (what PPO's
    baseline-free reward sees); `within_prompt` first takes out each (step, prompt) group's mean
    (what a group method such as GRPO compares), and is None when no group has two answers."""
    def shares(rows: list[dict[str, float]]) -> dict[str, float] | None:
        n = len(rows)
        if n < 2:
            return None
        total = [sum(r[t] for t in terms) for r in rows]
        mt = statistics.fmean(total)
        var = sum((x - mt) ** 2 for x in total) / n
        if var <= 0:
            return {t: 0.0 for t in terms}
        out = {}
        for t in terms:
            m = statistics.fmean(r[t] for r in rows)
            out[t] = sum((r[t] - m) * (x - mt) for r, x in zip(rows, total)) / n / var
        return out

    rows = [{t: float(r.get(t) or 0.0) for t in terms} for r in rollouts]
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rollouts):
        groups.setdefault((r.get("step"), r.get("prompt_id")), []).append(i)
    centred = []
    for idx in groups.values():
        if len(idx) < 2:
            continue
        means = {t: statistics.fmean(rows[i][t] for i in idx) for t in terms}
        centred += [{t: rows[i][t] - means[t] for t in terms} for i in idx]
    return {"answers": len(rows), "across": shares(rows), "within_prompt": shares(centred) if centred else None}
