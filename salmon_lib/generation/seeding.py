"""One seed per prompt: a prompt's samples depend on its own seed only, never on which prompts share
its batch, how a backend sorts and batches them, or what was generated before.

That is what lets a stage derive a seed from each record's id (`salmon_lib.provenance.derive_seed`)
and resume an interrupted run with the same records as an uninterrupted one. vLLM takes a seed per
request; the Hugging Face backend samples each row with its own `torch.Generator` (`RowSampler`).
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


def hf_sampling(temperature: float, top_p: float, seeds: Sequence[int], device) -> dict:
    """`model.generate` arguments that sample row r with `seeds[r]` (greedy when temperature is 0)."""
    if temperature == 0:
        return dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    from transformers import LogitsProcessorList

    # Greedy decoding over scores where only the row's sampled token is left open.
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                logits_processor=LogitsProcessorList([RowSampler(seeds, temperature, top_p, device)]))


class RowSampler:
    """A logits processor that samples each row's next token with that row's own generator,
    after the temperature and nucleus (top-p) warpers transformers itself applies when sampling,
    and masks every other token, so that greedy decoding takes the sampled one."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device):
        import torch
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else [])

    def __call__(self, input_ids, scores):
        import torch

        if scores.shape[0] != len(self.generators):
            raise GenerationError(f"{scores.shape[0]} rows to sample but {len(self.generators)} seeds")
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.cat([torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(out.shape[0], device=out.device), chosen] = 0.0
        return out
