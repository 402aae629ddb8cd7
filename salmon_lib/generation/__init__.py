"""One generation interface over Hugging Face and vLLM: `make_generator(model_cfg, backend)`."""

from .base import Completion, GenerationError, Generator, make_generator, vllm_support

__all__ = ["Completion", "GenerationError", "Generator", "make_generator", "vllm_support"]
