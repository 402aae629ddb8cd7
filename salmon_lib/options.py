"""Option groups that several stages share, as dataclass mixins of their configs.

A stage config lists the groups it uses before `StageConfig`
(`class RewardConfig(LoraOptions, TrainingOptions, StageConfig)`) and redeclares a field only to
give it another default (with its own intent comment). The groups nest: GenerationOptions is
EngineOptions + SamplingOptions + batching; TrainingOptions is OptimisationOptions + epochs and
batches over a data set, so a stage takes exactly the part it uses (stage 05 makes its own
batches: it takes SamplingOptions and OptimisationOptions). Command-line tools build their flags
from the same classes (`salmon_lib.arguments`). Each group checks its own ranges; a
stage's `check` calls `super().check()` so that every group's check runs. Torch-free: the runner
validates configs before any kernel starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Literal

from .config import Config, ConfigError
from .launch import Distributed
from .mixed_precision import MixedPrecision, SamplingDtype

# Guided sampling's plausibility floor wherever guidance is used (stage 05, `steer`): contrastive
# decoding's value, which kept the demo model's guided answers readable (RESULTS.md, 2026-12-05).
GUIDANCE_PLAUSIBILITY = 0.1


def _at_least_one(cfg: Config, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name}: must be at least 1, got {getattr(cfg, name)}")


@dataclasses.dataclass
class SamplingOptions(Config):
    """How each text is sampled, whatever engine samples it."""

    temperature: float = 0.7  # sampling temperature (0: greedy)
    top_p: float = 0.95  # nucleus sampling
    max_new_tokens: int = 256  # token limit of each generated text

    def check(self) -> None:
        super().check()
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        _at_least_one(self, "max_new_tokens")


@dataclasses.dataclass
class EngineOptions(Config):
    """Which engine generates text."""

    # generation backend (auto: vLLM where it serves the model; Hugging Face otherwise, and for LoRA
    # adapters on a CPU, where HF is the faster)
    backend: Literal["auto", "hf", "vllm"] = "auto"


@dataclasses.dataclass
class GenerationOptions(EngineOptions, SamplingOptions):
    """How a stage samples text from a model: the engine, the sampling, and how calls are batched."""

    batch_size: int = 16  # prompts per generate call
    # engines in worker processes sharing each call's prompts (a CPU: one per core, each on its
    # share of the cores); 1 keeps the engine in the stage's process
    generation_processes: int = 1

    def check(self) -> None:
        super().check()
        _at_least_one(self, "batch_size", "generation_processes")


@dataclasses.dataclass
class DataSamplingOptions(Config):
    """The engine of a stage that only samples text to keep as data: nothing it computes is compared
    with another engine's, so it may compute in bf16 where the hardware is fast at it."""

    # the engine's weights: auto takes bfloat16 where the hardware is fast at it (a GPU with bf16, a CPU
    # with AMX: about twice vLLM's float32 tokens/s there, RESULTS.md), float32 elsewhere
    sampling_dtype: SamplingDtype = "auto"

    def sampling_model(self, spec: str):
        """The `ModelConfig` of `spec` with its weights in `sampling_dtype`, resolved for this machine."""
        from .mixed_precision import sampling_dtype
        from .models import ModelConfig

        return ModelConfig(spec=spec, dtype=sampling_dtype(self.sampling_dtype))


@dataclasses.dataclass
class LoraOptions(Config):
    """The LoRA adapter a training stage puts on its base model (peft)."""

    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator
    lora_dropout: float = 0.0  # dropout on the LoRA input
    # peft target_modules: "all-linear" or a comma-separated list of module names
    lora_target_modules: str = "all-linear"

    def check(self) -> None:
        super().check()
        _at_least_one(self, "lora_r")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")

    def lora_targets(self) -> str | list[str]:
        """`lora_target_modules` as peft takes it."""
        if self.lora_target_modules == "all-linear":
            return "all-linear"
        return [t.strip() for t in self.lora_target_modules.split(",") if t.strip()]


# transformers schedulers that need nothing beyond the warm-up and the number of steps
LrScheduler = Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts",
                      "polynomial", "inverse_sqrt"]


@dataclasses.dataclass
class OptimisationOptions(Config):
    """How a training stage optimises, however it makes its batches: learning rate and schedule,
    step budget, the base's precision, memory, logging and the multi-GPU strategy."""

    quantization: Literal["none", "4bit"] = "none"  # "4bit": train on an NF4-quantized base (QLoRA; LoRA only)
    learning_rate: float = 2e-4  # peak learning rate
    lr_scheduler: LrScheduler = "cosine"  # learning-rate schedule after the warm-up (transformers' names)
    warmup_ratio: float = 0.03  # fraction of the steps with a linear warm-up
    max_steps: int = -1  # stop after this many optimiser steps (-1: run the epochs)
    gradient_checkpointing: bool = False  # trade compute for memory (worth it for 7B+ on a GPU)
    # bf16 autocast over fp32 weights while training; auto: on GPUs with bf16 and on CPUs with AMX tiles
    # (dpo excepted), where it is faster (salmon_lib.mixed_precision); no: fp32, as on other CPUs
    mixed_precision: MixedPrecision = "auto"
    report_to: Literal["none", "tensorboard"] = "none"  # extra logging backend
    distributed: Distributed = "ddp"  # strategy when several GPUs are visible (accelerate launch); unused otherwise

    def check(self) -> None:
        super().check()
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"max_steps: must be -1 (use epochs) or a positive number, got {self.max_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if self.quantization != "none" and importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(f"quantization: {self.quantization} needs the package bitsandbytes, which is not "
                              "installed (pip install -c constraints.txt bitsandbytes); or use quantization: none")


@dataclasses.dataclass
class TrainingOptions(OptimisationOptions):
    """The optimisation of a training stage that passes over a fixed data set (TRL trainer arguments)."""

    renamed = {"warmup": "renamed to warmup_ratio (the same fraction of the steps)"}

    epochs: float = 1.0  # passes over the training data
    batch_size: int = 4  # examples per device per step
    grad_accum: int = 1  # steps accumulated per optimiser update; the global batch is batch_size x grad_accum x GPUs
    logging_steps: int = 1  # log the training loss every this many steps
    # with no GPU: training processes on the CPU (DDP over gloo, OMP_NUM_THREADS threads each); the
    # global batch is batch_size x grad_accum x processes, so halve grad_accum when doubling this
    cpu_processes: int = 1

    def check(self) -> None:
        super().check()
        _at_least_one(self, "batch_size", "grad_accum", "logging_steps", "cpu_processes")
        if self.max_steps == -1 and self.epochs <= 0:
            raise ConfigError(f"epochs: must be > 0 when max_steps is -1, got {self.epochs}")
