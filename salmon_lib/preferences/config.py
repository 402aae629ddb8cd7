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
PROBABILITIES = ("p_continue", "p_negate", "disclaimer_p", "label_noise", "rule_label_noise")


@dataclasses.dataclass
class PreferencesConfig(AggregateOptions, GenerationOptions, StageConfig):
    file_params = ("principles", "flip_probes")
    file_checks = {"principles": "salmon_lib.principles:load_principles"}
    renamed = {"sft_adapter": "use_sft: true reads <run_dir>/sft, the folder the manifest hashes; "
                              "use_sft: false samples and judges with the base model",
               "swap_p": "removed: it only set a flag that nothing read, and the reward model scores each answer of "
                         "a pair on its own, so the order of a pair never reaches it (the judge sees both orders)"}

    # SALMON's principle judge, ALMoST's rubric comparisons, RLCD's pairs by construction, or SALMON and
    # RLCD examples in one file
    method: Literal["salmon", "almost", "rlcd", "salmon+rlcd"] = "salmon"
    model: str = "default"  # base model spec; the SFT adapter goes on top of it
    # None: the format sft/ was trained with (sft/chat_format.json), chatml for the base model; another one is an error
    chat_format: str | None = None
    use_sft: bool = True  # answer and judge with stage 02's sft/ adapter on `model`; false: the base model alone
    principles: str = "principles/judge.yaml"  # principle set judged under and drawn from
    max_prompts: int = 0  # use the first N prompts of prompts.jsonl (0: all)
    top_p: float = 1.0  # nucleus sampling of the two answers
    min_response_chars: int = 16  # a pair with a shorter answer is dropped
    judge_batch_pairs: int = 8  # pairs per scoring call (x 2 orders x principles prompts)
    # how the judge reads a principle (scoring/judge_modes.py); pairwise is SALMON's verdict
    judge_mode: Literal["pairwise", "contrastive", "likelihood", "pmi", "pointwise", "ensemble"] = "pairwise"
    # contrastive mode: the principle as system prompt before the answer, or as a description after it
    judge_layout: Literal["system", "suffix"] = "system"
    judge_compare: bool = False  # also measure every judge mode's HHH accuracy and flip-probe sensitivity
    flip_probes: str = ""  # flip probes for the judge's principle sensitivity (empty: the reward stage's shipped set)
    rlcd_temperature: float = 0.7  # RLCD answer sampling temperature (0: greedy)
    # RLCD: answers sampled per side; the one the contrastive score favours most for its side is kept
    rlcd_candidates: int = 1
    rlcd_max_new_tokens: int = 256  # RLCD answer length limit
    rlcd_confirm: bool = False  # RLCD: keep only pairs whose contrastive margin is above rlcd_min_margin
    rlcd_min_margin: float = 0.0  # RLCD: the margin (nats per answer token) a confirmed pair needs
    # position-bias correction applied before aggregation
    debias: Literal["none", "mean_position", "content_free"] = "none"
    # HHH pairs for judge accuracy (evaluation only): a .json path, "auto" ($SALMON_HHH_EVAL or
    # ../shared/data, as stages 04 and 06 read it) or "" to skip
    hhh_path: str = "auto"
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
        if self.chat_format is not None:
            from ..chat_format import get_format

            try:
                get_format(self.chat_format)
            except ValueError as err:
                raise ConfigError(f"chat_format: {err}") from None
        for name in ("draws_per_pair", "max_principles", "judge_batch_pairs", "rlcd_candidates", "rlcd_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rlcd_candidates > 1 and self.rlcd_temperature == 0:
            raise ConfigError("rlcd_candidates: > 1 needs rlcd_temperature > 0 "
                              "(greedy decoding gives identical candidates)")
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
