"""Stage 06's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ..config import ConfigError, StageConfig
from ..mixed_precision import SamplingDtype
from ..options import GenerationOptions

Measure = Literal["length_words", "length_tokens", "finished", "refusal", "self_praise", "language_match", "distinct_2"]


@dataclasses.dataclass
class EvaluateConfig(GenerationOptions, StageConfig):
    """Generation (backend, temperature, top_p, max_new_tokens, batch_size, generation_processes:
    the engines answer, score HHH likelihoods and score rewards) is salmon_lib.options' group; a
    field is declared here again only where stage 06's default differs."""

    model: str = "default"  # the BASE model every policy adapter sits on (the one stage 02 fine-tuned)
    # the reward: "" for the run's rm/ (stage 04), or another reward folder load_reward accepts (outside
    # the run; the run's own artifacts are named by the stage, so the manifest hashes what is read)
    reward: str = ""
    include_base: bool = True  # also answer with the bare base model, prompted like SFT
    # more adapters to compare: {name: folder, relative to run_dir or absolute}
    extra_policies: dict[str, str] = dataclasses.field(default_factory=dict)
    max_prompts: int = 48  # held-out prompts of stage 05 answered by every policy (0: all)
    # YAML of red-team and benign-but-edgy probe prompts ("": the set shipped in salmon_lib/evaluate/data)
    probes: str = ""
    max_probes: int = 24  # probe prompts added, half red-team and half benign (0: none)
    top_p: float = 1.0  # nucleus sampling; 1.0 keeps the KL estimate exact
    # each principle of these files scores every answer, one at a time
    reward_principles: list[str] = dataclasses.field(
        default_factory=lambda: ["principles/rl.yaml", "principles/judge.yaml"])
    # the RL-time pool, drawn per prompt as stage 05 draws ("": the principles stage 05 ran with)
    rl_principles: str = ""
    score_batch_size: int = 16  # (prompt, answer) prefixes per reward-model forward pass
    kl: bool = True  # measure each policy's KL to SFT along its own answers
    hhh_eval: str = "auto"  # HHH pairs {chosen, rejected, type}: a .json path, "auto" (../shared/data) or "" to skip
    hhh_max_pairs: int = 0  # a seeded sample of N HHH pairs (0: all 221)
    # head-to-head under a judge model too: "" off, "sft" the run's SFT model (stage 03's judge), or a model spec
    judge: str = ""
    judge_principles: str = "principles/judge.yaml"  # the principle file the judge principle is taken from
    # the one principle the judge compares each policy's answer with SFT's under
    judge_principle: str = "Overall Helpful"
    bootstrap: int = 2000  # resamples behind every confidence interval
    confidence: float = 0.95  # level of every confidence interval
    # principle sets compared: {name: principle file or list of principle texts}; two or more
    controllability: dict[str, str | list[str]] = dataclasses.field(default_factory=dict)
    # train one RL arm per set with stage 05's code; False: the no-training preview only
    controllability_arms: bool = True
    # arms trained at once, each in its own process on its share of the cores: on a CPU with a
    # core per arm about that many times faster; on one GPU they would only share it
    arm_workers: int = 1
    # stage 05 parameters changed for every arm alike (e.g. max_steps)
    arm_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # what guided arms (guidance_scale > 1 in arm_overrides) sample away from: "reward", the contrast the
    # reward scores each principle against (its negation, or a request to avoid it); "other_set", the other
    # set of two, so the guidance of the two arms differs by exactly their texts, needs no negation, and
    # what both sets ask for cancels
    arm_contrast: Literal["reward", "other_set"] = "reward"
    # -- the experiment's registration, fixed before it runs (evaluate/experiment.py): the primary endpoint
    controllability_measure: Measure = "length_tokens"  # the behaviour the first two sets are meant to move apart
    # where the first set's arm should lie against the second's on that measure (concise vs comprehensive: lower)
    controllability_direction: Literal["lower", "higher"] = "lower"
    seeds: list[int] = dataclasses.field(default_factory=list)  # arms trained and measured once per seed ([]: seed)
    endpoint_prompts: int = 32  # prompts no arm trained on (stage 05's held-out slice first), answered by every arm
    endpoint_samples: int = 2  # answers per prompt and arm, averaged per prompt before the paired comparison
    endpoint_max_new_tokens: int = 256  # the endpoint answers' cap: long enough that most finish (0: max_new_tokens)
    # the endpoint engine's weights: auto takes bfloat16 where the hardware is fast at it (a GPU with bf16,
    # a CPU with AMX), float32 elsewhere; every policy compared answers in the same one
    endpoint_dtype: SamplingDtype = "auto"
    preview_n: int = 4  # best-of-N preview: SFT candidates per prompt, reranked under each set (0: no preview)
    preview_prompts: int = 16  # prompts the preview uses (the first of the evaluation set)
    samples_in_report: int = 8  # prompts shown side by side in report.html (samples.jsonl has all)

    def check(self) -> None:
        super().check()
        for name in ("max_prompts", "max_probes", "hhh_max_pairs", "preview_n", "preview_prompts",
                     "samples_in_report", "endpoint_max_new_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("score_batch_size", "arm_workers", "endpoint_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bootstrap < 100:
            raise ConfigError(f"bootstrap must be at least 100 resamples, got {self.bootstrap}")
        if not 0.5 < self.confidence < 1:
            raise ConfigError(f"confidence must be in (0.5, 1), got {self.confidence}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0 (the KL estimate needs a sampling distribution), "
                              f"got {self.temperature}")
        if len(self.controllability) == 1:
            raise ConfigError("controllability needs two or more principle sets to compare (or none)")
        for name, spec in self.controllability.items():
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ConfigError(f"controllability: set name {name!r} must be letters, digits, '-' or '_' "
                                  "(it names a folder)")
            if isinstance(spec, list) and not (spec and all(isinstance(t, str) and t.strip() for t in spec)):
                raise ConfigError(f"controllability.{name}: give a principle file or a non-empty list of "
                                  "principle texts")
            if isinstance(spec, str) and not spec.strip():
                raise ConfigError(f"controllability.{name}: empty principle file name")
        if self.arm_contrast == "other_set" and self.controllability and len(self.controllability) != 2:
            raise ConfigError(f"arm_contrast: other_set guides each arm away from the other set, so it needs exactly "
                              f"two sets in controllability, got {len(self.controllability)}")
        if self.endpoint_prompts < 2:
            raise ConfigError(f"endpoint_prompts: a paired interval needs at least 2 prompts, got "
                              f"{self.endpoint_prompts}")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ConfigError(f"seeds: give distinct seeds >= 0, got {self.seeds}")
        for key in ("run_dir", "seed"):
            if key in self.arm_overrides:
                raise ConfigError(f"arm_overrides: {key} is the experiment's own (run_dir, seeds); it cannot be "
                                  "overridden")
        reserved = {"base", "sft", "rl"}
        for name in self.extra_policies:
            if name in reserved or name.startswith("arm:"):
                raise ConfigError(f"extra_policies: name {name!r} is taken by a policy of the run; choose another")
