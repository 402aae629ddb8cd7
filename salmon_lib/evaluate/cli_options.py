"""The options of `steer` and `chat`, the two tools that sample from a run's policies by hand.

Their flags are built from these classes (`salmon_lib.arguments`), which take sampling and the
engine from the groups every stage uses (`salmon_lib.options`): `--temperature` means here what
`temperature` means in a preset.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import ConfigError
from ..options import GUIDANCE_PLAUSIBILITY, EngineOptions, SamplingOptions


@dataclasses.dataclass(kw_only=True)
class PolicySamplingOptions(EngineOptions, SamplingOptions):
    run: str  # run directory
    model: str | None = None  # base model spec (default: the run's, from run.yaml or sft/)
    seed: int = 0  # seed of the sampled answers
    backend: Literal["auto", "hf", "vllm"] = "hf"  # generation engine (hf starts fastest)
    top_p: float = 1.0  # nucleus sampling (1.0: the policy's own distribution)


@dataclasses.dataclass(kw_only=True)
class ChatOptions(PolicySamplingOptions):
    # base, sft, rl, arm:<set>, or an adapter folder (default: rl when the run has one, else sft)
    policy: str | None = None


@dataclasses.dataclass(kw_only=True)
class SteerOptions(PolicySamplingOptions):
    run: str  # run directory with sft/ and rm/
    principles: list[str]  # a principle text or a principle YAML file; repeat to combine
    prompt: str  # the user's message
    n: int = 4  # candidate answers from the SFT model
    reward: str | None = None  # reward model folder (default: RUN/rm)
    # > 1: sample the candidates with the principles in the system prompt, guided away from the
    # contrastive reward's contrast of each (stage 05's guidance_scale); 1: SFT's plain prompt
    guidance_scale: float = 1.0
    # guided candidates draw only among tokens with at least this share of the most likely token's
    # probability (stage 05's guidance_plausibility); 0: every token
    guidance_plausibility: float = GUIDANCE_PLAUSIBILITY
    # guided candidates are sampled away from these principles (texts or files, as --principles; repeat
    # to combine) instead of the reward's contrast of each: needs no negation and no contrastive reward
    contrast: list[str] = dataclasses.field(default_factory=list)
    # print one JSON object {"best": {...}, "candidates": [{"response", "finished", "score"}, ...]}, best first
    json: bool = False

    def check(self) -> None:
        super().check()
        if self.n < 1:
            raise ConfigError(f"n: must be at least 1, got {self.n}")
        if self.guidance_scale < 1:
            raise ConfigError(f"guidance_scale: must be >= 1 (1: no guidance), got {self.guidance_scale}")
        if not 0 <= self.guidance_plausibility < 1:
            raise ConfigError(f"guidance_plausibility: must be in [0, 1), got {self.guidance_plausibility}")
