"""One generation interface over Hugging Face and vLLM: `make_generator(model_cfg, backend)`.

Modules: `base` (the interface), `factory` (choosing a backend), `hf` and `vllm_backend` (the
backends), `merged_vllm` (one vLLM engine serving LoRA policies with their adapters merged
into its weights), `prefix_scoring` (log-prob scoring that computes shared token prefixes once, used by
the HF backend), `score_cache` (log-probs kept on disk and read back by later stages) and
`prefix_generation` (HF generation for prompts that share one long prefix).
"""

from .base import Completion, GenerationError, Generator
from .factory import make_generator, vllm_support

__all__ = ["Completion", "GenerationError", "Generator", "make_generator", "vllm_support"]
