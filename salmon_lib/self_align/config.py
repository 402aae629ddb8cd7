"""Stage 01's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses

from ..config import ConfigError, StageConfig
from ..options import DataSamplingOptions, GenerationOptions
from .parse import FilterSettings


@dataclasses.dataclass
class SelfAlignConfig(FilterSettings, DataSamplingOptions, GenerationOptions, StageConfig):
    """Generation comes from salmon_lib.options' group; its batch_size is also how often results are saved."""

    file_params = ("principles",)
    file_checks = {"principles": "salmon_lib.principles:load_self_align"}

    model: str = "default"  # base model spec that writes the answers (and is engraved in stage 02)
    chat_format: str = "chatml"  # the prompt's chat format (salmon_lib.chat_format); its stop strings end each answer
    principles: str = "principles/self_align.yaml"  # rules + exemplars file (a user's own set works too)
    assistant_name: str | None = None  # the assistant's name in prompt and identity data (None: the file's default)
    assistant_creator: str = "the SALMON Workbench team"  # who the identity answers say built the assistant
    knowledge_cutoff: str | None = None  # filled into the rules (None: the file's default)
    max_exemplars: int | None = None  # use only the first N exemplars of the file: a shorter prompt (None: all)
    max_prompts: int | None = None  # answer only the first N prompts of prompts.jsonl (None: all)
    thoughts_max_tokens: int = 128  # token limit of the internal thoughts (see trim_truncated for longer ones)
    max_new_tokens: int = 512  # token limit of the answer (the original: 512 for thoughts + answer)
    identity_examples: int = 24  # "who are you"-style examples answered under assistant_name (0: none)

    def check(self) -> None:
        super().check()
        if self.thoughts_max_tokens < 1:
            raise ConfigError(f"thoughts_max_tokens: must be at least 1, got {self.thoughts_max_tokens}")
        if self.identity_examples < 0 or (self.max_prompts is not None and self.max_prompts < 0):
            raise ConfigError("identity_examples and max_prompts must be >= 0")
        if self.max_exemplars is not None and self.max_exemplars < 1:
            raise ConfigError(f"max_exemplars: must be at least 1 (or None for all), got {self.max_exemplars}")
