"""Stage 05, reinforcement learning against the principle-following reward model, with the
principles chosen at RL time. `RLConfig` imports no torch; the training code loads it inside functions."""

from .config import RLConfig

__all__ = ["RLConfig"]
