"""Stage 04: the principle-following reward model (template, training, scoring, evaluation, plots).

`config.RewardConfig` holds the parameters, `stage.run(cfg)` runs the stage. Importing this
package does not import torch; the heavy parts load inside the functions that need them.
"""

from .score import RewardModel
from .template import RMTemplate

__all__ = ["RMTemplate", "RewardModel"]
