"""LoRA weights folded into the base weights while a model only runs forward passes.

Unmerged, every adapted linear layer costs three matrix products, a scaling and an add. Merging
for the duration of a `generate` or scoring call removes them: on the demo's SFT adapter, plain
sampling took 45 s merged against 53 s unmerged, scoring 19.4 against 20.2 (RESULTS.md,
`benchmarks/hf_decoding.py`). The base weights are copied before and put
back after, bit for bit: merging and unmerging in float arithmetic would leave the base weights a
rounding error off, and a resumed run (fresh weights) would then sample differently from an
uninterrupted one. Only float32 weights are merged: in bf16 or a quantised layout the merged
product itself is rounded coarsely enough to change answers."""

from __future__ import annotations

import contextlib

import torch


def _adapted_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer) and not m.disable_adapters and not m.merged
            and any(a in m.lora_A or a in m.lora_embedding_A for a in m.active_adapters)]


@contextlib.contextmanager
def merged_lora(model):
    """Within the block, `model`'s active LoRA adapters are part of its base weights (a model in
    training mode, without adapters, or not in float32 is left as it is)."""
    from peft import PeftModel

    layers = _adapted_layers(model) if isinstance(model, PeftModel) and not model.training else []
    params = [p for m in layers for p in m.get_base_layer().parameters()]
    if not layers or any(p.dtype != torch.float32 for p in params):
        yield
        return
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for m in layers:
            m.merge(adapter_names=[a for a in m.active_adapters if a in m.lora_A or a in m.lora_embedding_A])
    try:
        yield
    finally:
        with torch.no_grad():
            for m in layers:
                m.unmerge()  # the layers' bookkeeping; the weights come from the copies
            for p, s in zip(params, saved):
                p.copy_(s)
