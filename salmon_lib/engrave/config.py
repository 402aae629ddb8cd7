"""Stage 02's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import ConfigError, StageConfig
from ..options import EngineOptions, LoraOptions, TrainingOptions
from .format import SYSTEM_VARIANTS


@dataclasses.dataclass
class EngraveConfig(EngineOptions, LoraOptions, TrainingOptions, StageConfig):
    renamed = {"method=qlora": "write method: lora with quantization: 4bit"}

    model: str = "default"  # base model spec to fine-tune (the same base that wrote self_align.jsonl)
    # the chat format (salmon_lib.chat_format) the model is trained on; later stages read it from sft/chat_format.json
    chat_format: str = "chatml"
    assistant_name: str | None = None  # the assistant's name in the system prompt (None: the one stage 01 used)
    assistant_creator: str | None = None  # who the system prompt says built it (None: the one stage 01 used)
    # system prompts, alternated by example
    system_variants: list[str] = dataclasses.field(default_factory=lambda: list(SYSTEM_VARIANTS))
    method: Literal["lora", "full"] = "lora"  # LoRA adapter (on a 4-bit base with quantization: 4bit) or all weights
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 0.3  # gradient clipping, as in the original QLoRA recipe
    grad_accum: int = 4  # steps accumulated per optimiser update; the global batch is batch_size x grad_accum x GPUs
    max_length: int = 1024  # tokens per example (prompt + answer), longer ones are cut at the end
    heldout: int = 4  # kept examples left out of training and answered before/after engraving
    heldout_max_new_tokens: int = 128  # answer length in the before/after table
    max_examples: int | None = None  # cap on training examples (None: all kept records)
    save_steps: int = 50  # checkpoint every this many steps (resume point)
    save_total_limit: int = 2  # checkpoints kept on disk
    resume: bool = True  # continue from the last checkpoint in sft_checkpoints/ if there is one

    def check(self) -> None:
        super().check()
        for v in self.system_variants:
            if v not in SYSTEM_VARIANTS:
                raise ConfigError(f"system_variants: unknown variant {v!r}; known: {', '.join(SYSTEM_VARIANTS)}")
        if not self.system_variants:
            raise ConfigError("system_variants: give at least one variant")
        for name in ("max_length", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.heldout < 0:
            raise ConfigError(f"heldout: must be >= 0, got {self.heldout}")
        if self.method == "full" and self.quantization != "none":
            raise ConfigError(f"quantization: {self.quantization} trains a LoRA adapter (QLoRA): use method: lora")
