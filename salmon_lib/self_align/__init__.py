"""Stage 01, principle-driven self-alignment: the base model answers prompts under the Self-Align
rules and exemplars; answers are parsed, filtered and saved with identity examples.
`SelfAlignConfig` imports no torch; generation is loaded inside `run_self_align`."""

from .config import SelfAlignConfig
from .stage import plot_stats, run_self_align

__all__ = ["SelfAlignConfig", "run_self_align", "plot_stats"]
