"""Stage 01's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import ConfigError, StageConfig
from .parse import FilterSettings


@dataclasses.dataclass
class SelfAlignConfig(StageConfig):
    file_params = ("principles",)

    model: str = "default"  # base model spec that writes the answers (and is engraved in stage 02)
    chat_format: str = "chatml"  # salmon_lib.chat format of the prompt; its stop strings end each answer
    backend: Literal["auto", "hf", "vllm"] = "auto"  # generation backend (auto: vLLM when installed)
    principles: str = "principles/self_align.yaml"  # rules + exemplars file (a user's own set works too)
    assistant_name: str | None = None  # the assistant's name in prompt and identity data (None: the file's default)
    assistant_creator: str = "the SALMON Workbench team"  # who the identity answers say built the assistant
    knowledge_cutoff: str | None = None  # filled into the rules (None: the file's default)
    max_exemplars: int | None = None  # use only the first N exemplars of the file: a shorter prompt (None: all)
    max_prompts: int | None = None  # answer only the first N prompts of prompts.jsonl (None: all)
    temperature: float = 0.7  # sampling temperature (the original: 0.7)
    top_p: float = 0.95  # nucleus sampling (the original: 0.95)
    thoughts_max_tokens: int = 128  # token limit of the internal thoughts (longer ones are dropped)
    max_new_tokens: int = 512  # token limit of the answer (the original: 512 for thoughts + answer)
    batch_size: int = 16  # prompts per generate call; also how often results are saved
    identity_examples: int = 24  # "who are you"-style examples answered under assistant_name (0: none)
    min_chars: int = 40  # answers shorter than this are dropped (the original: 160)
    keep_truncated: bool = False  # keep answers cut by max_new_tokens (the original kept them)
    leak_ngram: int = 6  # word n-gram length of the exemplar-leakage check
    leak_threshold: float = 0.3  # drop answers sharing this fraction of their n-grams with one exemplar answer
    echo_min_chars: int = 16  # drop answers repeating a prompt at least this long verbatim (0: off)
    require_cited_rules: bool = False  # drop answers whose thoughts cite no existing rule
    cut_repetition: bool = True  # cut an answer where it starts repeating an earlier sentence
    repetition_min_words: int = 4  # sentences shorter than this may repeat without a cut

    def check(self) -> None:
        super().check()
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0, got {self.temperature}")
        for name in ("thoughts_max_tokens", "max_new_tokens", "batch_size", "leak_ngram"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.leak_threshold <= 1.0:
            raise ConfigError(f"leak_threshold: must be in (0, 1], got {self.leak_threshold}")
        if self.identity_examples < 0 or (self.max_prompts is not None and self.max_prompts < 0):
            raise ConfigError("identity_examples and max_prompts must be >= 0")
        if self.max_exemplars is not None and self.max_exemplars < 1:
            raise ConfigError(f"max_exemplars: must be at least 1 (or None for all), got {self.max_exemplars}")

    def filter_settings(self) -> FilterSettings:
        names = {f.name for f in dataclasses.fields(FilterSettings)}
        return FilterSettings(**{k: v for k, v in self.to_dict().items() if k in names})
