"""Stage 04's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import ConfigError, StageConfig
from ..options import LoraOptions, TrainingOptions
from .pairs import PmpFormat

PREFERENCES = "preferences.jsonl"  # stage 03's principle-labelled pairs, in the run directory


@dataclasses.dataclass
class RewardConfig(LoraOptions, TrainingOptions, StageConfig):
    file_params = ("hhh_principles", "flip_probes", "flip_principles", "plot_principles", "audit_shorter",
                   "audit_longer")
    file_checks = {"hhh_principles": "salmon_lib.principles:load_principles",
                   "audit_shorter": "salmon_lib.principles:load_principles",
                   "audit_longer": "salmon_lib.principles:load_principles",
                   "flip_principles": "salmon_lib.principles:load_principles",
                   "plot_principles": "salmon_lib.principles:load_principles",
                   "flip_probes": "salmon_lib.reward.evaluate:read_flip_probes"}
    renamed = {"preferences": f"the stage reads <run_dir>/{PREFERENCES}, the input the manifest hashes"}

    # trained: LoRA + score head on preferences.jsonl; contrastive: rm/ is a training-free reward
    # scoring with the model's own likelihoods (reward/contrastive.py), evaluated the same way
    kind: Literal["trained", "contrastive"] = "trained"
    model: str = "default"  # the BASE model spec (not the SFT adapter): SALMON's RM starts from the base
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    lora_alpha: int = 32  # LoRA scaling numerator
    max_prompt_tokens: int = 256  # the instruction keeps its LAST this-many tokens (never dropped)
    max_response_tokens: int = 768  # the response keeps its FIRST this-many tokens (never dropped)
    eval_fraction: float = 0.1  # share of prompts held out for accuracy (split by prompt)
    epochs: float = 1.0  # passes over the principle-labelled pairs
    max_steps: int = -1  # stop each phase after this many optimiser steps (-1: run the epochs)
    learning_rate: float = 3e-5  # principle fine-tuning learning rate
    batch_size: int = 4  # response pairs per device per step, each with all its principle draws
    center_rewards: float = 0.0  # >0 adds TRL's penalty on the mean reward (keeps scores near 0)
    logging_steps: int = 5  # steps between logged training loss/accuracy points
    eval_steps: int = 20  # steps between held-out evaluations during training
    # human pairs for pre-training: .json/.jsonl files or dataset ids
    pmp_data: list[str] = dataclasses.field(default_factory=list)
    pmp_format: PmpFormat = "auto"  # hh (Anthropic HH-RLHF), shp (Stanford SHP) or auto-detect per source
    pmp_max_pairs: int = 0  # >0 samples this many human pairs per source
    pmp_shp_min_ratio: float = 2.0  # SHP pairs need a score ratio above this
    pmp_epochs: float = 1.0  # passes over the human pairs
    pmp_learning_rate: float = 5e-5  # pre-training learning rate
    score_batch_size: int = 16  # sequences per forward pass when scoring/evaluating
    # kind contrastive: scoring processes sharing each evaluation's rows (a CPU: one per core)
    generation_processes: int = 1
    # HHH pairs {chosen, rejected, type}: a .json path, a dataset id, "auto" (../shared/data) or "" to skip
    hhh_eval: str = "auto"
    hhh_max_pairs: int = 0  # score a seeded sample of N HHH pairs (0: all 221; each pair costs 4 scorings)
    # each HHH type is scored under the first principle with that hhh_type
    hhh_principles: str = "principles/judge.yaml"
    flip_probes: str = ""  # principle-flip probes YAML (empty: the set shipped in salmon_lib/scoring/data)
    # the probes are also run in the wording of this principle file (empty: skip)
    flip_principles: str = "principles/judge.yaml"
    plot_principles: str = "principles/judge.yaml"  # principles shown as columns of the per-principle plots
    plot_responses: int = 12  # (prompt, response) rows taken from preferences.jsonl for the plots
    chat_format: str = "chatml"  # contrastive kind: the chat format it prompts the model with
    # contrastive kind: the principle contrast alone, or plus the answer's likelihood (scores without principles too)
    contrastive_mode: Literal["contrastive", "ensemble"] = "contrastive"
    # contrastive kind: what each principle is contrasted with: its known negation, else a request to
    # avoid it (avoid; free-text flips 0.46 against 0.17 for negation on the default model, RESULTS.md)
    # or its absence (negation); or its absence always (absent) (reward/contrastive.py)
    contrastive_contrast: Literal["negation", "absent", "avoid"] = "avoid"
    # contrastive kind: the answer's log-likelihood ratio summed over its tokens, or their mean (the mean
    # divides a principle about length down to one token: on the default model's own answers the audit
    # read 0.46 for sum against 0.26 for mean, known-negation flips 0.67 against 0.79; RESULTS.md)
    contrastive_aggregate: Literal["mean", "sum"] = "sum"
    # contrastive kind: score with stage 02's sft/ adapter on `model`; false: the base model alone
    contrastive_use_sft: bool = True
    # contrastive kind: files whose principles (and negations) it knows
    contrastive_principles: list[str] = dataclasses.field(
        default_factory=lambda: ["principles/judge.yaml", "principles/rl.yaml"])

    # reward audit (reward/audit.py): SFT's own answers scored under a set that asks for shorter
    # answers and under one that asks for longer ones; empty skips the audit
    audit_shorter: str = "principles/concise.yaml"
    audit_longer: str = "principles/comprehensive.yaml"  # the audit's set that asks for longer answers
    audit_prompts: int = 12  # prompts of prompts.jsonl (a seeded sample) the SFT model answers
    audit_samples: int = 6  # answers per prompt, sampled at audit_temperature
    audit_max_new_tokens: int = 320  # long enough that most answers finish (a cut one is scored as cut)
    audit_temperature: float = 0.9  # sampling temperature of the audit's answers (spread in length)

    def check(self) -> None:
        super().check()
        if self.audit_shorter and not self.audit_longer:
            raise ConfigError("audit_longer: empty while audit_shorter is set; the audit compares two sets")
        if self.audit_temperature < 0:
            raise ConfigError(f"audit_temperature must be >= 0, got {self.audit_temperature}")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        for name in ("max_prompt_tokens", "max_response_tokens", "score_batch_size", "eval_steps",
                     "generation_processes", "audit_prompts", "audit_samples", "audit_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")

    def template(self):
        from .template import RMTemplate

        return RMTemplate(max_prompt_tokens=self.max_prompt_tokens, max_response_tokens=self.max_response_tokens)

    def model_config(self):
        from ..models import ModelConfig

        dtype = self.dtype
        if self.quantization == "4bit" and dtype == "auto":
            # TRL keeps a quantized model's trainable weights (LoRA and the head) in bf16, so the
            # activations must be bf16 too (QLoRA's usual compute dtype).
            dtype = "bfloat16"
        return ModelConfig(spec=self.model, quantization=self.quantization, dtype=dtype)
