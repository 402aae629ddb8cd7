"""Answers from the live policy, through the generation interface.

`hf` wraps the policy being trained in the HF generator (`HFGenerator(loaded=...)`): it samples
with the current weights and needs no copy per step. `vllm` serves the base model in vLLM and hands
it the policy's LoRA, saved to disk under a new name each step. On this project's 2-core CPU the
in-process path is the faster one (vLLM's ~30 s start-up and a per-step adapter save outweigh its
2.6-3.3x decoding speed at these batch sizes; `benchmarks/rl.py` measures both when vLLM is installed).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..generation import Completion

log = logging.getLogger(__name__)


def choose_backend(requested: str) -> str:
    """`auto`: vLLM on CUDA when it is installed, the in-process policy otherwise."""
    if requested != "auto":
        return requested
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"


class PolicySampler:
    def __init__(self, model, tokenizer, base_spec: str, stop: tuple[str, ...], backend: str = "auto",
                 work_dir: str | Path | None = None, batch_size: int = 64, gpu_memory_utilization: float = 0.3,
                 max_lora_rank: int = 16):
        from ..models import ModelConfig

        self.model, self.tokenizer, self.stop = model, tokenizer, stop
        self.backend = choose_backend(backend)
        if self.backend == "vllm":
            from ..generation.vllm_backend import VLLMGenerator

            if work_dir is None:
                raise ValueError("the vllm rollout backend saves the policy adapter each step: give a work_dir")
            self.work_dir = Path(work_dir)
            rank = 1 << (max(max_lora_rank, 1) - 1).bit_length()
            self.gen = VLLMGenerator(ModelConfig(spec=base_spec), enable_lora=True, max_lora_rank=rank,
                                     gpu_memory_utilization=gpu_memory_utilization, progress=False)
        else:
            from ..generation.hf import HFGenerator

            self.gen = HFGenerator(ModelConfig(spec=base_spec), batch_size=batch_size, progress=False,
                                   loaded=(tokenizer, model))
        log.info("rollouts: %s backend", self.backend)

    def _current_adapter(self, tag: str) -> str | None:
        if self.backend != "vllm":
            return None
        folder = self.work_dir / "rollout_adapters"
        path = folder / tag
        self.model.save_pretrained(str(path), selected_adapters=["default"])
        for old in folder.iterdir():  # vLLM has loaded the earlier ones; keep the disk tidy
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
        return str(path)

    def sample(self, prompts: list[str], n: int, max_new_tokens: int, temperature: float, top_p: float,
               seed: int, tag: str = "policy", contrast_prompts: list[str] | None = None,
               guidance_scale: float = 1.0, guidance_plausibility: float = 0.0) -> list[list[Completion]]:
        """`n` answers per rendered prompt; `seed` makes them reproducible (a resumed run samples
        what the uninterrupted one did). With `guidance_scale` != 1, guided away from
        `contrast_prompts` (`HFGenerator.generate`; the hf backend only)."""
        import torch

        guided = {"contrast_prompts": contrast_prompts, "guidance_scale": guidance_scale,
                  "guidance_plausibility": guidance_plausibility} if guidance_scale != 1 else {}
        if guided and self.backend != "hf":
            raise ValueError(f"guided sampling needs the hf rollout backend, not {self.backend}")
        adapter = self._current_adapter(tag)
        was_training = self.model.training
        self.model.eval()  # generation with gradient checkpointing in train mode would disable the cache
        try:
            with torch.no_grad():
                return self.gen.generate(prompts, n=n, temperature=temperature, top_p=top_p,
                                         max_new_tokens=max_new_tokens, stop=self.stop, seed=seed, adapter=adapter,
                                         **guided)
        finally:
            self.model.train(was_training)

    def close(self) -> None:
        if self.backend == "vllm":
            self.gen.close()
