"""Stage 02's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import ConfigError, StageConfig
from .format import SYSTEM_VARIANTS


@dataclasses.dataclass
class EngraveConfig(StageConfig):
    model: str = "default"  # base model spec to fine-tune (the same base that wrote self_align.jsonl)
    chat_format: str = "chatml"  # salmon_lib.chat format the model is trained on; later stages read it from sft/chat_format.json
    assistant_name: str | None = None  # the assistant's name in the system prompt (None: the one stage 01 used)
    assistant_creator: str | None = None  # who the system prompt says built it (None: the one stage 01 used)
    system_variants: list[str] = dataclasses.field(default_factory=lambda: list(SYSTEM_VARIANTS))  # system prompts, alternated by example
    method: Literal["lora", "qlora", "full"] = "lora"  # LoRA on the full-precision base, LoRA on a 4-bit base, or all weights
    lora_r: int = 16  # LoRA rank (the 70B original used 64)
    lora_alpha: int = 16  # LoRA scaling numerator
    lora_dropout: float = 0.0  # dropout on the LoRA input
    lora_target_modules: str = "all-linear"  # peft target_modules: "all-linear" or a comma-separated list of module names
    learning_rate: float = 2e-4  # peak learning rate (the 70B QLoRA original: 1e-4)
    lr_scheduler: str = "cosine"  # transformers scheduler name
    warmup_ratio: float = 0.03  # fraction of steps with a linear warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 0.3  # gradient clipping, as in the original QLoRA recipe
    epochs: float = 1.0  # passes over the kept examples
    max_steps: int = -1  # stop after this many optimiser steps (-1: run the epochs)
    batch_size: int = 4  # examples per device per step
    grad_accum: int = 4  # steps accumulated per optimiser update; the global batch is batch_size x grad_accum x GPUs
    max_length: int = 1024  # tokens per example (prompt + answer), longer ones are cut at the end
    gradient_checkpointing: bool = False  # trade compute for memory (worth it for 7B+ on a GPU)
    heldout: int = 4  # kept examples left out of training and answered before/after engraving
    heldout_max_new_tokens: int = 128  # answer length in the before/after table
    backend: Literal["auto", "hf", "vllm"] = "auto"  # generation backend of the before/after answers (auto: vLLM when it serves the model)
    max_examples: int | None = None  # cap on training examples (None: all kept records)
    save_steps: int = 50  # checkpoint every this many steps (resume point)
    save_total_limit: int = 2  # checkpoints kept on disk
    logging_steps: int = 1  # log the loss every this many steps
    distributed: Literal["ddp", "fsdp", "zero2", "zero3"] = "ddp"  # strategy when several GPUs are visible
    report_to: Literal["none", "tensorboard"] = "none"  # extra logging backend (TensorBoard logs go to sft_checkpoints/runs)
    resume: bool = True  # continue from the last checkpoint in sft_checkpoints/ if there is one

    def check(self) -> None:
        for v in self.system_variants:
            if v not in SYSTEM_VARIANTS:
                raise ConfigError(f"system_variants: unknown variant {v!r}; known: {', '.join(SYSTEM_VARIANTS)}")
        if not self.system_variants:
            raise ConfigError("system_variants: give at least one variant")
        for name in ("lora_r", "batch_size", "grad_accum", "max_length", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.heldout < 0:
            raise ConfigError(f"heldout: must be >= 0, got {self.heldout}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"max_steps: -1 (use epochs) or a positive number, got {self.max_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
