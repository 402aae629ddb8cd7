"""One seed per prompt: a prompt's samples depend on its own seed only, never on which prompts share
its batch, how a backend sorts and batches them, or what was generated before.

That is what lets a stage derive a seed from each record's id (`salmon_lib.provenance.derive_seed`)
and resume an interrupted run with the same records as an uninterrupted one. vLLM takes a seed per
request; the Hugging Face backend samples each row with its own `torch.Generator` (`decode.decode`).
"""

from __future__ import annotations

from typing import Sequence

from ..provenance import derive_seed
from .base import GenerationError


def prompt_seeds(seed: int | Sequence[int], n_prompts: int) -> list[int]:
    """`seed` as one seed per prompt: a sequence is taken as it is (one per prompt); an int gives
    each prompt a seed derived from it and the prompt's index in the call."""
    if isinstance(seed, int):
        return [derive_seed(seed, "prompt", i) for i in range(n_prompts)]
    seeds = list(seed)
    if len(seeds) != n_prompts:
        raise GenerationError(f"seed: {len(seeds)} seeds for {n_prompts} prompts; give one per prompt or one int")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise GenerationError("seed: per-prompt seeds must be non-negative ints")
    return seeds


def sample_seed(seed: int, index: int) -> int:
    """The seed of a prompt's `index`-th sample (of n): the prompt's own seed for the first."""
    return seed if index == 0 else derive_seed(seed, "sample", index)
