"""Attention for batched decoding on a CPU with grouped KV heads as they are.

transformers' SDPA path, given a padding mask, copies each layer's KV cache `num_key_value_groups`
times (SmolLM2: 9 query heads on 3 KV heads) at every decoding step before calling torch. torch's
SDPA takes grouped heads itself (`enable_gqa`). With a 3k-token shared prefix the copy was most of
the decoding time (~7x per attention call); on the demo's SFT adapter, plain sampling took 45 s
without the copies against 60 s with them, guided sampling 42 s against 48 (RESULTS.md).
"""

from __future__ import annotations

import contextlib

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
def masked_gqa_attention(model):
    """Use `_sdpa_masked_gqa` within the block, if the model runs SDPA attention."""
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
