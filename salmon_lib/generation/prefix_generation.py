"""Generation whose prompts all start with one long prefix, computed once.

Every Self-Align prompt starts with the same ~3k tokens (rules + exemplars) and differs only in the
last few dozen. Recomputing that prefix per prompt is where nearly all the time of a CPU run would
go. With the Hugging Face backend, the prefix's KV cache is computed once and copied into each
batch; the differing tails are padded *between* prefix and tail (masked out), so every row keeps
the prefix at the positions its cache was computed for. Decoding then attends over the long cache
at every step, so attention runs with grouped KV heads (`_sdpa_masked_gqa`) instead of copies of
them. vLLM caches prefixes by itself, so other backends simply get the full prompts.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Sequence

MASKED_GQA = "sdpa_masked_gqa"


def _sdpa_masked_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                     **kwargs):
    """transformers' SDPA attention, except that with a padding mask on a CPU the grouped KV heads go
    to torch as they are (`enable_gqa`) instead of being copied `num_key_value_groups` times. With a
    3k-token shared prefix, that copy of the whole cache in every layer at every step is most of
    the decoding time (measured ~7x slower per attention call on SmolLM2's 9:3 heads)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (attention_mask is None or query.device.type != "cpu" or getattr(module, "num_key_value_groups", 1) == 1
            or kwargs.get("position_bias") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def _masked_gqa_attention(model):
    """Use `_sdpa_masked_gqa` while generating, if the model runs SDPA attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    before = getattr(model.config, "_attn_implementation", None)
    if before != "sdpa":
        yield
        return
    AttentionInterface.register(MASKED_GQA, _sdpa_masked_gqa)
    # An attention name without a registered mask function gets no padding mask at all.
    ALL_MASK_ATTENTION_FUNCTIONS.register(MASKED_GQA, sdpa_mask)
    model.set_attn_implementation(MASKED_GQA)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


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
                 stop: Sequence[str], seed: int):
        """One `Completion` per prompt, sampled like `gen.generate(prompts, n=1, ...)`."""
        kw = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop, seed=seed)
        gen = self.gen
        if getattr(gen, "backend", None) != "hf" or not all(p.startswith(self.prefix) for p in prompts):
            return self._fallback(prompts, **kw)
        import torch

        from .base import check_generate_args

        stop = check_generate_args(list(prompts), 1, temperature, top_p, max_new_tokens, stop)
        if self._head is None:
            self._head = gen.encode_prompts([self.prefix])[0]
        head = self._head
        full = gen.encode_prompts(list(prompts))
        if any(ids[:len(head)] != head for ids in full):
            # The tokenizer merges across the seam: the prefix is not a token prefix, so no sharing.
            return self._fallback(prompts, **kw)
        sampling = dict(do_sample=False, temperature=None, top_p=None, top_k=None) if temperature == 0 \
            else dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        devices = [gen.device] if gen.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices), _masked_gqa_attention(gen.model):
            if self._cache is None:
                self._cache = gen.model(input_ids=torch.tensor([head], device=gen.device),
                                        use_cache=True).past_key_values
            torch.manual_seed(seed)
            tails = [ids[len(head):] for ids in full]
            return _generate_batch(gen, head, tails, self._cache, max_new_tokens, stop, sampling)


def _generate_batch(gen, head: list[int], tails: list[list[int]], cache, max_new_tokens: int,
                    stop: tuple[str, ...], sampling: dict):
    import torch
    from transformers import StoppingCriteriaList

    from .base import Completion
    from .hf import _cut_at_stop, _StopWatch

    p, w = len(head), max(len(t) for t in tails)
    ids = torch.full((len(tails), p + w), gen.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    ids[:, :p], mask[:, :p] = torch.tensor(head), 1
    for r, tail in enumerate(tails):
        ids[r, p + w - len(tail):] = torch.tensor(tail)
        mask[r, p + w - len(tail):] = 1
    batch_cache = copy.deepcopy(cache)  # generate extends the cache in place
    batch_cache.batch_repeat_interleave(len(tails))
    watch = _StopWatch(gen.tokenizer, p + w, stop, gen.eos_ids, len(tails))
    out = gen.model.generate(input_ids=ids.to(gen.device), attention_mask=mask.to(gen.device),
                             past_key_values=batch_cache, max_new_tokens=max_new_tokens, pad_token_id=gen.pad_id,
                             stopping_criteria=StoppingCriteriaList([watch]), **sampling)
    completions = []
    for row, toks in enumerate(out[:, p + w:].tolist()):
        length = watch.lengths[row]
        if length is None:
            toks = toks[:max_new_tokens]
            completions.append(Completion(gen.tokenizer.decode(toks), toks, "length", len(toks)))
            continue
        toks = toks[:length]
        text_ids = toks if watch.by_string[row] else toks[:-1]  # an EOS is no part of the text
        completions.append(Completion(_cut_at_stop(gen.tokenizer.decode(text_ids), stop), toks, "stop", len(toks)))
    return completions
