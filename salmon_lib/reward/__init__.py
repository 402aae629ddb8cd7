"""Stage 04: the principle-following reward model (template, training, scoring, evaluation, plots).

Importing this package does not import torch; the heavy parts load inside the functions that need them.
"""

from .template import RMTemplate
from .score import RewardModel


def load_reward(path_or_spec, device: str = "auto"):
    """The reward stages 05 and 06 score with: `score(items, batch_size, progress) -> list[float]`
    over (bare instruction, response, principle texts). Today: stage 04's folder (`rm_info.json`)."""
    return RewardModel.load(path_or_spec, device=device)


__all__ = ["RMTemplate", "RewardModel", "load_reward"]
