"""Stage 04: the principle-following reward model (template, training, scoring, evaluation, plots).

Importing this package does not import torch; the heavy parts load inside the functions that need them.
"""

from .template import RMTemplate
from .score import RewardModel

__all__ = ["RMTemplate", "RewardModel"]
