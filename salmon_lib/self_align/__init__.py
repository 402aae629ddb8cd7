"""Stage 01, principle-driven self-alignment: the base model answers prompts under the Self-Align
rules and exemplars; answers are parsed, filtered and saved with identity examples.
`config.SelfAlignConfig` holds the parameters (no torch), `stage.run(cfg)` runs the stage."""

from .config import SelfAlignConfig

__all__ = ["SelfAlignConfig"]
