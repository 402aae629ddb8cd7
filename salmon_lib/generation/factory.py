"""The choice of generation backend: `make_generator(model_cfg, backend)`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from .base import GenerationError, Generator

if TYPE_CHECKING:
    from ..models import ModelConfig

log = logging.getLogger(__name__)


def vllm_support(model_cfg: ModelConfig) -> tuple[bool, str]:
    """Whether vLLM can serve this model here, and why (not)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False, "vLLM is not installed (`make vllm` installs it)"
    if model_cfg.quantization != "none":
        return False, f"quantization={model_cfg.quantization!r} (bitsandbytes) is served by the HF backend"
    from .vllm_backend import model_architecture_supported

    return model_architecture_supported(model_cfg)


def make_generator(model_cfg: ModelConfig, backend: Literal["auto", "hf", "vllm"] = "auto", **kwargs) -> Generator:
    """A generator for `model_cfg`. `auto` picks vLLM when it is importable and supports the
    model, HF otherwise, and logs the choice and why. Extra keyword arguments go to the backend."""
    if backend not in ("auto", "hf", "vllm"):
        raise GenerationError(f"backend must be 'auto', 'hf' or 'vllm', got {backend!r}")
    if backend == "auto":
        ok, reason = vllm_support(model_cfg)
        backend = "vllm" if ok else "hf"
        log.info("generation backend: %s (%s)", backend, reason)
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(model_cfg, **kwargs)
    from .hf import HFGenerator

    return HFGenerator(model_cfg, **kwargs)
