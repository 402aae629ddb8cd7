"""The pipeline's stages, in run order: each is one notebook plus the config class that validates
its parameters. A stage joins the pipeline with one `Stage(...)` line in `STAGES`.

This module must stay importable without torch: the runner validates every stage's parameters
against these config classes before it starts any kernel.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from .paths import PROJECT_ROOT


@dataclasses.dataclass
class Stage:
    name: str  # the key of this stage's section in a preset and its name on the command line
    notebook: str  # the stage notebook, relative to the project root (or absolute)
    config: str  # "module:ConfigClass", a StageConfig subclass importable without torch
    inputs: list[str] = dataclasses.field(default_factory=list)  # artifacts read from the run dir; "name?" = optional
    outputs: list[str] = dataclasses.field(default_factory=list)  # artifacts written to the run dir; "name?" = optional
    # headless runs: seconds one cell may run before the stage fails (the runner's `cell_timeout_s`,
    # which presets and -p can change); about ten times the demo preset's whole stage on a 2-core CPU
    cell_timeout_s: float = 3600.0

    def notebook_path(self) -> Path:
        path = Path(self.notebook)
        return path if path.is_absolute() else PROJECT_ROOT / path

    def config_class(self) -> type:
        from .config import ConfigError, StageConfig

        module_name, _, attr = self.config.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"stage {self.name!r}: cannot import config class {self.config!r} ({err})") from None
        if not (isinstance(cls, type) and issubclass(cls, StageConfig)):
            raise ConfigError(f"stage {self.name!r}: {self.config!r} is not a StageConfig subclass")
        return cls


# Stage authors: one line per stage, in pipeline order; the steps are in docs/adding_a_stage.md.
STAGES: list[Stage] = [
    Stage("prompts", "notebooks/00_prompts.ipynb", config="salmon_lib.prompts.config:PromptsConfig",
          outputs=["prompts.jsonl", "prompts_stats.json"]),
    Stage("self_align", "notebooks/01_self_align.ipynb", config="salmon_lib.self_align.config:SelfAlignConfig",
          inputs=["prompts.jsonl"], outputs=["self_align.jsonl", "self_align_stats.json"]),
    Stage("engrave", "notebooks/02_engrave.ipynb", config="salmon_lib.engrave.config:EngraveConfig",
          inputs=["self_align.jsonl", "self_align_stats.json"], outputs=["sft/", "engrave_stats.json"]),
    Stage("preferences", "notebooks/03_preferences.ipynb", config="salmon_lib.preferences.config:PreferencesConfig",
          inputs=["prompts.jsonl", "sft/?"],
          outputs=["preferences.jsonl", "preferences_stats.json", "pairs.jsonl?", "judgements.jsonl?"]),
    Stage("reward_model", "notebooks/04_reward_model.ipynb", config="salmon_lib.reward.config:RewardConfig",
          inputs=["preferences.jsonl", "prompts.jsonl?", "sft/?"],
          outputs=["rm/", "rm_eval.json", "reward_stats.json", "reward_audit.json"]),
    Stage("rl", "notebooks/05_rl.ipynb", config="salmon_lib.rl.config:RLConfig",
          inputs=["prompts.jsonl", "sft/", "rm/", "self_align.jsonl?", "preferences.jsonl?", "pairs.jsonl?"],
          outputs=["rl_prompts.json", "rl_baseline.json", "policy/", "rollouts.jsonl", "rl_metrics.jsonl",
                   "rl_stats.json"]),
    Stage("evaluate", "notebooks/06_evaluate.ipynb", config="salmon_lib.evaluate.config:EvaluateConfig",
          inputs=["prompts.jsonl", "sft/", "rm/?", "rl_prompts.json?", "policy/?"],
          outputs=["report.json", "report.html", "samples.jsonl"], cell_timeout_s=3 * 3600.0),
]
