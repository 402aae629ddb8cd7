"""Stage 00, the prompt pool: read and clean existing pools, or generate prompts from seeds.

`config.PromptsConfig` holds the parameters, `stage.run(cfg)` runs the stage. Importing this
package pulls in neither torch nor transformers; the heavy parts load when used.
"""

from .config import PromptsConfig
from .records import QUESTION_TYPES, make_record, normalise, prompt_id
from .stage import build_pool, plot_removals, run

__all__ = ["QUESTION_TYPES", "PromptsConfig", "build_pool", "make_record", "normalise", "plot_removals",
           "prompt_id", "run"]
