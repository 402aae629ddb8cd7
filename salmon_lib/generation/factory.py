"""The choice of generation backend: `make_generator(model_cfg, backend)`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, Sequence

from .base import GenerationError, Generator

if TYPE_CHECKING:
    from ..models import ModelConfig

log = logging.getLogger(__name__)


def vllm_support(model_cfg: ModelConfig, adapters: Sequence[str] = ()) -> tuple[bool, str]:
    """Whether vLLM can serve this model (and these LoRA adapters) here, and why (not): installed,
    no bitsandbytes quantization, and everything vLLM's own limits say (architecture, the CPU
    attention kernels' head sizes, dtype, adapter rank and features)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False, "vLLM is not installed (`make vllm` installs it)"
    if model_cfg.quantization != "none":
        return False, f"quantization={model_cfg.quantization!r} (bitsandbytes) is served by the HF backend"
    from .vllm_backend import support

    return support(model_cfg, adapters)


def auto_picks_vllm(model_cfg: ModelConfig, adapters: Sequence[str] = ()) -> tuple[bool, str]:
    """`auto`'s choice before trying to start an engine, and why: vLLM where it serves the model and
    adapters, except LoRA on a CPU, where vLLM's LoRA path generates slower than the HF backend
    (25 against 37 tokens/s on the default model, one thread each: RESULTS.md)."""
    ok, reason = vllm_support(model_cfg, adapters)
    if ok and any(a for a in (model_cfg.adapter, *adapters)):
        from .vllm_backend import uses_cuda

        if not uses_cuda(model_cfg):
            return False, "LoRA adapters on a CPU: vLLM's CPU LoRA path generates slower than HF"
    return ok, reason


def make_generator(model_cfg: ModelConfig, backend: Literal["auto", "hf", "vllm"] = "auto",
                   adapters: Sequence[str] = (), batch_size: int | None = None, processes: int = 1,
                   merge_adapters: bool = False, **kwargs) -> Generator:
    """A generator for `model_cfg`. `adapters`: the LoRA folders the caller will pass as `adapter=`.
    `batch_size`: the HF backend's sequences per generation batch (vLLM schedules its own).
    `processes`: more than 1 makes that many generators in worker processes, each call's rows
    shared between them (`pool.GeneratorPool`: a CPU's cores with one thread per process).
    `merge_adapters`: for callers whose every call generates much with one adapter, vLLM on a CPU
    serves each adapter merged into the weights (`merged_vllm.py`) where `auto` would take HF for
    LoRA; with `backend="hf"`, on CUDA or without vLLM support it changes nothing.

    `auto` picks vLLM when it supports the model and adapters here and starts (it is tried on one
    token with each adapter), HF otherwise and for LoRA on a CPU (`auto_picks_vllm`), and logs the
    choice and why: it never returns an engine that fails on its first real request. Extra keyword
    arguments go to the backend."""
    if backend not in ("auto", "hf", "vllm"):
        raise GenerationError(f"backend must be 'auto', 'hf' or 'vllm', got {backend!r}")
    if processes < 1:
        raise GenerationError(f"processes must be >= 1, got {processes}")
    if processes > 1:
        from .pool import GeneratorPool

        return GeneratorPool(processes, (model_cfg, backend), dict(adapters=adapters, batch_size=batch_size,
                                                                   merge_adapters=merge_adapters, **kwargs))
    if merge_adapters and backend != "hf" and any(adapters):
        merged = _merged_vllm(model_cfg, backend, adapters, kwargs)
        if merged is not None:
            return merged
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(model_cfg, adapters=adapters, **kwargs)
    if backend == "auto":
        ok, reason = auto_picks_vllm(model_cfg, adapters)
        if ok:
            from .vllm_backend import VLLMGenerator

            try:
                gen = VLLMGenerator(model_cfg, adapters=adapters, **kwargs)
            except Exception as err:  # whatever the engine raised, HF can still do the work
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                reason = f"vLLM failed to start: {type(err).__name__}: {first}"
                log.warning("generation backend: falling back to hf (%s)", reason)
            else:
                log.info("generation backend: vllm (%s)", reason)
                return gen
        log.info("generation backend: hf (%s)", reason)
    from .hf import HFGenerator

    return HFGenerator(model_cfg, **kwargs, **({"batch_size": batch_size} if batch_size else {}))


def _merged_vllm(model_cfg: ModelConfig, backend: str, adapters: Sequence[str], kwargs: dict) -> Generator | None:
    """A `MergedAdapterVLLM` already serving the first adapter, or None where it does not apply
    (CUDA, where vLLM's LoRA path is fast; a model vLLM cannot serve) or, under `auto`, its engine
    or its first weight swap fails to start."""
    ok, reason = vllm_support(model_cfg)
    if not ok:
        return None
    from .vllm_backend import uses_cuda

    if uses_cuda(model_cfg):
        return None
    from .merged_vllm import MergedAdapterVLLM

    gen = None
    try:
        gen = MergedAdapterVLLM(model_cfg, **kwargs)
        gen.serve(next(a for a in adapters if a))  # the weight swap works here, or auto falls back now
    except Exception as err:
        if gen is not None:
            gen.close()
        if backend == "vllm":
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        log.warning("generation backend: merged adapters on vLLM failed to start (%s: %s)", type(err).__name__, first)
        return None
    log.info("generation backend: vllm-merged (%s; each adapter merged into the weights)", reason)
    return gen
