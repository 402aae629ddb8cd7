"""What every method shares: where the outputs go, the training prompts, the principle draw, the
reward function, and the signature of the settings and inputs a run's checkpoints belong to."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Sequence

from .checkpoint import step_seed
from .draw import PrincipleDraw
from .shaping import RewardFunction, Sample


@dataclasses.dataclass(frozen=True)
class RLPaths:
    run_dir: Path
    arm: str | None = None  # None: the stage's own run; a name: one of stage 06's arms

    @property
    def root(self) -> Path:
        return self.run_dir if self.arm is None else self.run_dir / "rl_arms" / self.arm

    @property
    def policy(self) -> Path:
        return self.root / "policy"

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts.jsonl"

    @property
    def metrics(self) -> Path:
        return self.root / "rl_metrics.jsonl"

    @property
    def stats(self) -> Path:
        return self.root / "rl_stats.json"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "rl_checkpoints" if self.arm is None else self.root / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.run_dir / "figures"

    @property
    def figure_prefix(self) -> str:
        return "rl" if self.arm is None else f"rl_arm_{self.arm}"


@dataclasses.dataclass
class Context:
    cfg: Any  # RLConfig
    paths: RLPaths
    records: list[dict]  # training prompts {id, prompt, question_type}, in the split's order
    draw: PrincipleDraw
    spec: Any  # the ChatSpec the SFT model was trained with
    signature: dict  # settings and input digests; checkpoints made under another signature are not resumed
    reward_fn: RewardFunction | None = None  # set once the SFT baseline it normalises against is known
    contrast_draw: PrincipleDraw | None = None  # guidance_contrast's principles; None: the reward's contrasts

    def contrast_texts(self, record: dict, round_: int, drawn: Sequence[str]) -> list[str]:
        """What guided sampling's contrast prompt lists for a prompt whose drawn principles are `drawn`."""
        if self.contrast_draw is not None:
            return list(self.contrast_draw.draw(record["id"], round_, record["question_type"]).texts)
        return self.reward_fn.reward.contrast_texts(drawn)

    def step_prompts(self, step: int, count: int) -> list[dict]:
        """The prompts of a step: an endless stream of epochs, each a seeded shuffle of the training
        prompts, cut into consecutive slices (the same slice for a step however the run was resumed)."""
        n, orders, out = len(self.records), {}, []
        for i in range(step * count, (step + 1) * count):
            epoch, pos = divmod(i, n)
            if epoch not in orders:
                orders[epoch] = list(range(n))
                random.Random(step_seed(self.cfg.seed, epoch, "prompt order")).shuffle(orders[epoch])
            out.append(self.records[orders[epoch][pos]])
        return out

    def samples(self, records: list[dict], completions: list[list], round_: int) -> list[Sample]:
        """One Sample per completion; every answer to one prompt in one round shares one draw."""
        out = []
        for rec, comps in zip(records, completions):
            drawn = self.draw.draw(rec["id"], round_, rec["question_type"])
            for c in comps:
                out.append(Sample(rec["id"], rec["prompt"], rec["question_type"], c.text, c.num_tokens,
                                  c.finish_reason == "stop", drawn))
        return out
