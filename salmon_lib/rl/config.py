"""Stage 05's parameters. Kept free of torch so the runner can validate them before any kernel starts.

Defaults are SALMON's RL settings where SALMON has one (§5 of the reference notes), scaled to one
process: T=0.7 sampling with log-probs at the same temperature, 3 principles drawn per prompt plus
the interventions, -6 for an unfinished answer, the length term 5·min(L/1024·m, 0.8), per-token KL
0.01 (k1 clamped at 0), γ=λ=1, clip 0.2, value clip 0.2, vf_coef 0.1, 2 PPO epochs of 2
minibatches, lr 2e-5 with a short warm-up (SALMON: 5 steps).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import ConfigError, StageConfig
from ..options import GUIDANCE_PLAUSIBILITY, OptimisationOptions, SamplingOptions

METHODS = ("ppo", "grpo", "rloo", "dpo", "best_of_n", "context_distill")
GROUP_METHODS = ("grpo", "rloo", "dpo", "best_of_n")


@dataclasses.dataclass
class RLConfig(SamplingOptions, OptimisationOptions, StageConfig):
    """Sampling (temperature, top_p, max_new_tokens) and optimisation (learning_rate, lr_scheduler,
    warmup_ratio, max_steps, quantization, gradient_checkpointing, report_to, distributed: grpo,
    rloo, dpo and best_of_n on several GPUs; ppo runs on one device) are the shared groups of
    salmon_lib.options; a field is declared here again only where RL's default differs."""

    # ppo: our compact PPO as SALMON; grpo/rloo: TRL's trainers; dpo, best_of_n: rounds of sample-rank-train;
    # context_distill: rounds of sampling with the principles in the system prompt, training without them
    method: Literal["ppo", "grpo", "rloo", "dpo", "best_of_n", "context_distill"] = "ppo"
    model: str = "default"  # the base model spec that sft/ (the SFT adapter) was trained on
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    # -- principles chosen at RL time
    principles: str | list[str] = "principles/rl.yaml"  # a principle file to draw from, or texts shown for every answer
    num_principles: int = 3  # principles drawn per prompt group, by weight without replacement (SALMON: 3)
    interventions: bool = True  # prepend the principle file's interventions that apply to the prompt's type
    # -- prompts
    heldout_prompts: int = 16  # RL prompts kept out of training for stage 06 (recorded in rl_prompts.json)
    max_prompts: int = 0  # use at most N training prompts (0: all that remain)
    exclude_used: bool = True  # drop the prompts stages 01 and 03 answered, so RL sees new prompts
    # -- rollouts
    top_p: float = 1.0  # nucleus sampling (SALMON: 1.0, no top-k)
    # hf: the live policy generates in-process; vllm: vLLM with the adapter saved each step (auto: vLLM on CUDA)
    rollout_backend: Literal["auto", "hf", "vllm"] = "auto"
    vllm_gpu_memory_utilization: float = 0.3  # share of GPU memory vLLM may take beside the policy being trained
    prompts_per_step: int = 8  # prompts sampled per step (SALMON: 576 across 48 GPUs)
    # answers per prompt of grpo/rloo/dpo/best_of_n (ppo samples one, as SALMON); context_distill: 1 trains on
    # every guided answer, more lets the reward pick the best of them
    group_size: int = 4
    # context_distill: draw each token from the guided prompt's log-probs pushed away from the contrast
    # prompt's (each principle replaced by the contrast the reward scores against) by this factor:
    # classifier-free guidance, the per-token form of the policy that maximises the contrastive reward
    # at KL coefficient 1/(scale - 1) to the guided prompt. 1: the guided prompt alone. Twice the sampling cost.
    guidance_scale: float = 1.0
    # what the contrast prompt lists: "" each drawn principle's contrast in the reward (its negation, or
    # the request to avoid it); else a principle file or texts, drawn as `principles` are (stage 06
    # gives each arm the other set's, so the two arms' guidance differs by exactly their texts)
    guidance_contrast: str | list[str] = ""
    # guided sampling draws only among tokens with at least this share of the guided prompt's most likely
    # token's probability, so a large scale sharpens the answer without pushing it into tokens neither
    # prompt would write (contrastive decoding's plausibility constraint; their 0.1). 0: every token
    guidance_plausibility: float = GUIDANCE_PLAUSIBILITY
    # -- reward shaping (each term can be switched off and is logged on its own)
    rm_weight: float = 1.0  # weight of the reward model's score (0: off, e.g. a length-only control)
    normalise_rm: bool = True  # RM term as (score - SFT mean) / SFT std of its prompt type, measured at the start
    # group methods: RM term standardised within each prompt's answers instead, so the principle score
    # ranks a group in SD units whatever its raw scale (the unfinished and length terms stay as they are)
    group_normalise_rm: bool = False
    # training prompts the SFT policy answers once to measure that mean and std (0: none, without normalise_rm)
    baseline_prompts: int = 32
    unfinished_penalty: float = -6.0  # added when an answer ends without its end-of-turn token (0: off; SALMON -6)
    length_coef: float = 5.0  # SALMON's length term coef·min(tokens/length_tokens·m, length_cap) (0: off)
    length_tokens: int = 1024  # the length term's token scale
    length_cap: float = 0.8  # the length term's cap before the coefficient
    # the length term's m per prompt type (SALMON: +1 general, -0.4 reasoning; types not listed: 0)
    length_multiplier: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"general": 1.0, "reasoning": -0.4, "red_team": 1.0})
    kl_coef: float = 0.01  # KL penalty to the SFT reference (ppo: per token in the reward; grpo/rloo: β; 0: off)
    # ppo's per-token KL estimate: SALMON clamps log π - log π_ref at 0 (k1_clamped)
    kl_estimator: Literal["k1_clamped", "k1", "k3"] = "k1_clamped"
    reward_scale: float = 1.0  # ppo multiplies every shaped reward by this (SALMON's code: 10)
    score_batch_size: int = 16  # sequences per reward-model forward pass
    # -- optimisation
    learning_rate: float = 2e-5  # policy learning rate (SALMON: 2e-5)
    value_learning_rate: float = 2e-5  # ppo's value adapter and head
    max_grad_norm: float = 1.0  # gradient clipping (SALMON: 1.0)
    ppo_epochs: int = 2  # passes over each rollout batch (SALMON: 2)
    minibatches: int = 2  # optimiser steps per pass (SALMON: a rollout of 576 over steps of 288, so 2)
    clip_range: float = 0.2  # PPO ratio clip
    value_clip_range: float = 0.2  # PPO value clip, on the reward_scale scale
    vf_coef: float = 0.1  # weight of the value loss (SALMON: 0.1)
    gamma: float = 1.0  # GAE discount (SALMON: 1)
    lam: float = 1.0  # GAE λ (SALMON: 1)
    whiten_advantages: bool = True  # normalise advantages over the batch's answer tokens
    dpo_beta: float = 0.1  # DPO's β
    sft_epochs: float = 1.0  # passes over each round's DPO pairs or best-of-N winners
    # -- budget, checkpoints, logging
    max_steps: int = 20  # ppo/grpo/rloo: optimiser steps; dpo/best_of_n/context_distill: rounds of sample-train
    max_minutes: float = 0.0  # stop cleanly and save after this many minutes of training (0: no limit)
    save_steps: int = 5  # checkpoint every N steps (the resume point)
    resume: bool = True  # continue from the last checkpoint when one exists for the same settings and inputs
    # torch threads of the training process on a CPU (0: as OMP_NUM_THREADS says); ppo is one
    # process, so on a CPU run with one thread per process the other cores would sit idle
    cpu_threads: int = 0

    def check(self) -> None:
        super().check()
        self._check_principle_source("principles")
        if not self.principles:
            raise ConfigError("principles: give a principle file or a non-empty list of texts")
        for name in ("num_principles", "prompts_per_step", "length_tokens", "score_batch_size",
                     "ppo_epochs", "minibatches", "max_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("heldout_prompts", "max_prompts", "baseline_prompts", "cpu_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.method in GROUP_METHODS and self.group_size < 2:
            raise ConfigError(f"group_size: {self.method} compares answers to one prompt, so it needs at least 2, "
                              f"got {self.group_size}")
        if self.prompts_per_step < self.minibatches and self.method == "ppo":
            raise ConfigError(f"minibatches: {self.minibatches} minibatches need at least as many prompts_per_step "
                              f"({self.prompts_per_step})")
        if self.temperature <= 0:
            raise ConfigError(f"temperature: RL samples, so it must be > 0, got {self.temperature}")
        for name in ("clip_range", "value_clip_range", "dpo_beta", "sft_epochs", "reward_scale"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("value_learning_rate", "vf_coef", "kl_coef", "max_minutes", "max_grad_norm", "length_cap"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.normalise_rm and self.rm_weight and not self.baseline_prompts:
            raise ConfigError("baseline_prompts: normalise_rm divides by the SFT baseline's spread, so it needs at "
                              "least 2 baseline prompts (or set normalise_rm: false)")
        if self.group_normalise_rm and self.method not in GROUP_METHODS:
            raise ConfigError(f"group_normalise_rm: needs several answers per prompt ({', '.join(GROUP_METHODS)}); "
                              f"method {self.method!r} samples one")
        if self.guidance_scale < 1:
            raise ConfigError(f"guidance_scale: must be >= 1 (1: no guidance), got {self.guidance_scale}")
        if not 0 <= self.guidance_plausibility < 1:
            raise ConfigError(f"guidance_plausibility: must be in [0, 1), got {self.guidance_plausibility}")
        if self.guidance_scale != 1 and self.method != "context_distill":
            raise ConfigError(f"guidance_scale: only context_distill samples under a guided prompt; method "
                              f"{self.method!r} does not (set guidance_scale: 1)")
        if self.guidance_contrast and self.guidance_scale == 1:
            raise ConfigError("guidance_contrast: only guided sampling (guidance_scale != 1) uses a contrast prompt")
        self._check_principle_source("guidance_contrast")
        if self.guidance_scale != 1 and self.rollout_backend == "vllm":
            raise ConfigError("guidance_scale: guided sampling runs in the hf rollout backend; set rollout_backend: "
                              "hf or auto")
        if self.unfinished_penalty > 0:
            raise ConfigError(f"unfinished_penalty: a penalty is <= 0, got {self.unfinished_penalty}")

    def _check_principle_source(self, name: str) -> None:
        """A principle file that exists, or an inline list of non-empty texts."""
        value = getattr(self, name)
        if isinstance(value, str) and value:
            self.file(name)
        if isinstance(value, list) and not all(p.strip() for p in value):
            raise ConfigError(f"{name}: an inline list needs non-empty texts")
