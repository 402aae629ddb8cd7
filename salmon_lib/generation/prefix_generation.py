"""Generation whose prompts all start with one long prefix, computed once.

Every Self-Align prompt starts with the same ~3k tokens (rules + exemplars) and differs only in the
last few dozen. Recomputing that prefix per prompt is where nearly all the time of a CPU run would
go. With the Hugging Face backend, the prefix's KV cache is computed once and copied into each
batch; the differing tails are padded *between* prefix and tail (masked out), so every row keeps
the prefix at the positions its cache was computed for. Decoding then attends over the long cache
at every step, with grouped KV heads as they are (`gqa_attention`) instead of copies of them.
vLLM caches prefixes by itself, so other backends simply get the full prompts.
"""

from __future__ import annotations

import copy
import time
from typing import Sequence

from . import usage
from .gqa_attention import masked_gqa_attention


class PrefixGenerator:
    """Generate for prompts that all start with `prefix`; the prefix's cache is computed on first use
    and kept for every later call."""

    def __init__(self, gen, prefix: str):
        self.gen, self.prefix = gen, prefix
        self._head: list[int] | None = None
        self._cache = None

    def _fallback(self, prompts, **kw):
        return [c[0] for c in self.gen.generate(list(prompts), n=1, **kw)]

    def generate(self, prompts: Sequence[str], *, temperature: float, top_p: float, max_new_tokens: int,
                 stop: Sequence[str], seed: int | Sequence[int]):
        """One `Completion` per prompt, sampled like `gen.generate(prompts, n=1, ...)` (`seed`: one
        int, or one seed per prompt)."""
        kw = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop, seed=seed)
        gen = self.gen
        # the shared cache needs the HF model in this process (a generator pool's workers hold theirs)
        if (getattr(gen, "backend", None) != "hf" or getattr(gen, "model", None) is None
                or not all(p.startswith(self.prefix) for p in prompts)):
            return self._fallback(prompts, **kw)
        import torch

        from .base import check_generate_args
        from .seeding import prompt_seeds

        stop = check_generate_args(list(prompts), 1, temperature, top_p, max_new_tokens, stop)
        seeds = prompt_seeds(seed, len(prompts))
        if self._head is None:
            self._head = gen.encode_prompts([self.prefix])[0]
        head = self._head
        full = gen.encode_prompts(list(prompts))
        if any(ids[:len(head)] != head for ids in full):
            # The tokenizer merges across the seam: the prefix is not a token prefix, so no sharing.
            return self._fallback(prompts, **kw)
        start = time.perf_counter()
        with torch.no_grad(), masked_gqa_attention(gen.model):
            if self._cache is None:
                self._cache = gen.model(input_ids=torch.tensor([head], device=gen.device),
                                        use_cache=True).past_key_values
            tails = [ids[len(head):] for ids in full]
            out = _generate_batch(gen, head, tails, self._cache, max_new_tokens, stop, temperature, top_p, seeds)
        usage.record(gen.backend, len(out), sum(c.num_tokens for c in out), time.perf_counter() - start)
        return out


def _generate_batch(gen, head: list[int], tails: list[list[int]], cache, max_new_tokens: int,
                    stop: tuple[str, ...], temperature: float, top_p: float, seeds: list[int]):
    import torch

    from .decode import StopCheck, decode, to_completion

    p, w = len(head), max(len(t) for t in tails)
    ids = torch.full((len(tails), p + w), gen.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    ids[:, :p], mask[:, :p] = torch.tensor(head), 1
    for r, tail in enumerate(tails):
        ids[r, p + w - len(tail):] = torch.tensor(tail)
        mask[r, p + w - len(tail):] = 1
    batch_cache = copy.deepcopy(cache)  # decoding extends the cache in place
    batch_cache.batch_repeat_interleave(len(tails))
    rows = decode(gen.model, ids, mask, max_new_tokens, temperature, top_p,
                  StopCheck(gen.tokenizer, stop, gen.eos_ids), seeds, past_key_values=batch_cache)
    return [to_completion(gen.tokenizer, r, stop) for r in rows]
