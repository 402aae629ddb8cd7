"""Stage 00, the prompt pool: read and clean existing pools, or generate prompts from seeds.

Importing this package pulls in neither torch nor transformers; the heavy parts load when used.
"""

from .records import QUESTION_TYPES, make_record, normalise, prompt_id
from .stage import PromptsConfig, build_pool, plot_removals, run

__all__ = ["PromptsConfig", "QUESTION_TYPES", "build_pool", "make_record", "normalise", "plot_removals",
           "prompt_id", "run"]
