"""vLLM for LoRA policies on a CPU: one plain engine whose weights become base + adapter in place.

vLLM's CPU LoRA path generates slower than the HF backend, which is why `auto` takes HF for
adapters on a CPU; on plain weights vLLM generated 2.6 times the HF backend's tokens per second on
stage 06's endpoint workload (RESULTS.md). This generator starts one plain engine on the base model
and, when a call names another adapter, merges that adapter into a float32 copy of the base
(`merge_and_unload`) and loads the result into the running engine (`VLLMGenerator.load_weights`,
as TRL syncs a trained policy into a colocated engine). A switch costs about 2 s on the default
model, so it pays where each adapter generates much per call (stage 06's endpoint: 64 answers of
up to 256 tokens per policy), not where calls alternate adapters (use HF there).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from ..models import ModelConfig, load_model
from .base import Completion, Generator

log = logging.getLogger(__name__)


def merged_weights(model_cfg: ModelConfig, adapter: str | Path | None) -> dict:
    """The base model's weights with `adapter` merged in (None: the base's own), under the
    checkpoint's tensor names, in float32 on the CPU."""
    cfg = dataclasses.replace(model_cfg, adapter=str(adapter) if adapter else None, device="cpu", dtype="float32")
    _, model = load_model(cfg)
    if adapter:
        model = model.merge_and_unload()
    return model.state_dict()


class MergedAdapterVLLM(Generator):
    backend = "vllm-merged"

    def __init__(self, model_cfg: ModelConfig | str, progress: bool = True, **engine_kwargs):
        """`engine_kwargs` go to the `VLLMGenerator` on the base model."""
        from .vllm_backend import VLLMGenerator

        if isinstance(model_cfg, str):
            model_cfg = ModelConfig(spec=model_cfg)
        self.cfg = model_cfg
        self._engine = VLLMGenerator(dataclasses.replace(model_cfg, adapter=None), progress=progress, **engine_kwargs)
        self.tokenizer = self._engine.tokenizer
        self._serving: str | None = None  # the adapter whose weights the engine holds (None: the base's)
        self.switches = 0  # weight loads so far

    def serve(self, adapter: str | None) -> None:
        """Make the engine hold base + `adapter` (None: the configured adapter, or the base)."""
        chosen = adapter or self.cfg.adapter
        key = str(Path(chosen).expanduser().resolve()) if chosen else None
        if key == self._serving:
            return
        log.info("vllm-merged: loading %s into the engine", key or "the base weights")
        self._engine.load_weights(merged_weights(self.cfg, key))
        self._serving = key
        self.switches += 1

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.7, top_p: float = 0.95,
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int | Sequence[int] = 0,
                 adapter: str | None = None) -> list[list[Completion]]:
        self.serve(adapter)
        return self._engine.generate(prompts, n=n, temperature=temperature, top_p=top_p,
                                     max_new_tokens=max_new_tokens, stop=stop, seed=seed)

    def score_options(self, prompts: list[str], options: list[str], adapter: str | None = None) -> list[list[float]]:
        self.serve(adapter)
        return self._engine.score_options(prompts, options)

    def sequence_logprobs(self, prompts: list[str], continuations: list[str],
                          adapter: str | None = None) -> list[float]:
        self.serve(adapter)
        return self._engine.sequence_logprobs(prompts, continuations)

    def close(self) -> None:
        self._engine.close()
