"""Stage 03's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from ..config import ConfigError, StageConfig
from ..options import GenerationOptions
from .aggregate import AggregateOptions

# More shots and better demonstrations win (ALMoST's rules of thumb, on one model).
DEFAULT_RUBRIC = (("sft:detailed:3",), ("sft:detailed:1",), ("sft:plain:1",))
PROBABILITIES = ("p_continue", "p_negate", "disclaimer_p", "label_noise", "rule_label_noise", "swap_p")


@dataclasses.dataclass
class PreferencesConfig(AggregateOptions, GenerationOptions, StageConfig):
    file_params = ("principles",)
    renamed = {"sft_adapter": "use_sft: true reads <run_dir>/sft, the folder the manifest hashes; "
                              "use_sft: false samples and judges with the base model"}

    method: Literal["salmon", "almost"] = "salmon"  # SALMON's principle judge, or ALMoST's rubric comparisons
    model: str = "default"  # base model spec; the SFT adapter goes on top of it
    chat_format: str = "chatml"  # chat format of the model (salmon_lib.chat)
    use_sft: bool = True  # answer and judge with stage 02's sft/ adapter on `model`; false: the base model alone
    principles: str = "principles/judge.yaml"  # principle set judged under and drawn from
    max_prompts: int = 0  # use the first N prompts of prompts.jsonl (0: all)
    temperature: float = 0.7  # sampling temperature of the two answers per prompt
    top_p: float = 1.0  # nucleus sampling of the two answers
    min_response_chars: int = 16  # a pair with a shorter answer is dropped
    judge_batch_pairs: int = 8  # pairs per scoring call (x 2 orders x principles prompts)
    # position-bias correction applied before aggregation
    debias: Literal["none", "mean_position", "content_free"] = "none"
    hhh_path: str = "../shared/data/hhh_eval.json"  # HHH pairs for judge accuracy (evaluation only), "" skips it
    hhh_max_pairs: int = 0  # evaluate on a seeded sample of N HHH pairs (0: all)
    # HHH type -> principle name, default: the set's hhh_type
    hhh_principles: dict[str, str] = dataclasses.field(default_factory=dict)
    # tiers of "MODEL:DEMOS:SHOTS", best first, MODEL "sft" is `model` with the SFT adapter
    almost_rubric: list[list[str]] = dataclasses.field(default_factory=lambda: [list(t) for t in DEFAULT_RUBRIC])
    almost_temperature: float = 1.0  # ALMoST answer sampling temperature
    almost_top_p: float = 0.9  # ALMoST answer nucleus sampling
    almost_max_new_tokens: int = 256  # ALMoST answer length limit
    almost_length_filter: bool = True  # ALMoST's heuristic filter against short winners

    def check(self) -> None:
        super().check()
        for name in PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("draws_per_pair", "max_principles", "judge_batch_pairs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.method == "almost":
            from .almost import parse_rubric

            try:
                parse_rubric(self.almost_rubric)
            except ValueError as err:
                raise ConfigError(str(err)) from None

    # -- paths ------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return Path(self.run_dir) / name

    def adapter(self) -> str | None:
        if not self.use_sft:
            return None
        path = self.path("sft")
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(f"use_sft: {path} holds no LoRA adapter; run stage 02 (engrave) first, "
                              "or set use_sft = False to sample and judge with the base model")
        return str(path)
