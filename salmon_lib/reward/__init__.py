"""Stage 04: the principle-following reward model (template, training, scoring, evaluation, plots).

`config.RewardConfig` holds the parameters, `stage.run(cfg)` runs the stage. Importing this
package does not import torch; the heavy parts load inside the functions that need them.
"""

from .score import RewardModel
from .template import RMTemplate


def load_reward(path_or_spec, device: str = "auto") -> RewardModel:
    """The reward a later stage scores with: `score(items) -> list[float]`, items (prompt, response, principles)."""
    return RewardModel.load(path_or_spec, device=device)


__all__ = ["RMTemplate", "RewardModel", "load_reward"]
