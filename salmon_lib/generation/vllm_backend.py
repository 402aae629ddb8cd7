"""vLLM backend: one engine per generator, prefix caching on, LoRA through `LoRARequest`.

Scoring reads `SamplingParams(max_tokens=1, logprob_token_ids=...)`: the log-probs of chosen
tokens after a context. A multi-token option becomes one request per token (the context grows by
the option's earlier tokens); prefix caching makes those repeats cheap. `prompt_logprobs` is used
only for `sequence_logprobs`, and one request at a time on a LoRA-enabled CPU engine, where a
multi-request batch crashes the engine.

vLLM starts worker processes with `spawn`: a script that makes a generator needs an
`if __name__ == "__main__":` guard (notebooks and pytest need nothing).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
from pathlib import Path
from typing import Sequence

from ..models import ModelConfig, ModelLoadError, resolve_model_dir
from .base import Completion, GenerationError, Generator, check_generate_args, check_pairs

log = logging.getLogger(__name__)

# KV cache size in GiB on CPU when the user has not set it; vLLM's own default (4) is too much
# for a 2-core, shared machine.
CPU_KVCACHE_GIB = "2"


def model_architecture_supported(model_cfg: ModelConfig) -> tuple[bool, str]:
    try:
        location = resolve_model_dir(model_cfg)
    except ModelLoadError as err:
        return False, str(err)
    if isinstance(location, str):
        return True, f"vLLM is installed; {location} is a hub id (vLLM checks its architecture when loading)"
    archs = json.loads((Path(location) / "config.json").read_text()).get("architectures") or []
    from vllm import ModelRegistry

    supported = set(ModelRegistry.get_supported_archs())
    if any(a in supported for a in archs):
        return True, f"vLLM is installed and supports {'/'.join(archs)}"
    return False, f"vLLM does not support the architecture {archs or 'unknown'} of {location}"


def _tensor_parallel(n_gpus: int, heads: int | None) -> int:
    """The most visible GPUs that evenly split the attention heads."""
    return max((k for k in range(1, max(n_gpus, 1) + 1) if not heads or heads % k == 0), default=1)


def _lora_rank(path: str) -> int:
    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    return int(cfg.get("r", 8))


class VLLMGenerator(Generator):
    backend = "vllm"

    def __init__(self, model_cfg: ModelConfig | str, enable_lora: bool | None = None, max_lora_rank: int | None = None,
                 max_model_len: int | None = None, enforce_eager: bool | None = None,
                 gpu_memory_utilization: float = 0.85, progress: bool = True, **engine_kwargs):
        """enable_lora: serve LoRA adapters (default: when `model_cfg.adapter` is set);
        max_lora_rank: the largest adapter rank to serve (default: the configured adapter's, at least 16);
        enforce_eager: skip compilation / CUDA graphs (default: on CPU). Other keywords go to `vllm.LLM`."""
        import torch

        if isinstance(model_cfg, str):
            model_cfg = ModelConfig(spec=model_cfg)
        if model_cfg.quantization != "none":
            raise GenerationError(f"quantization={model_cfg.quantization!r} (bitsandbytes) is not served by the vLLM "
                                  "backend here: use backend='hf', or a pre-quantized model folder")
        self.cfg, self.progress = model_cfg, progress
        location = resolve_model_dir(model_cfg)
        cuda = torch.cuda.is_available() and model_cfg.device != "cpu"
        if not cuda:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
        # Same dtype rule as the HF backend, so the two agree: fp32 on CPU, bf16 on CUDA.
        dtype = model_cfg.dtype if model_cfg.dtype != "auto" else ("bfloat16" if cuda else "float32")
        heads = None
        if not isinstance(location, str):
            heads = json.loads((Path(location) / "config.json").read_text()).get("num_attention_heads")
        tp = _tensor_parallel(torch.cuda.device_count() if cuda else 1, heads)
        self.enable_lora = bool(model_cfg.adapter) if enable_lora is None else enable_lora
        if self.enable_lora and max_lora_rank is None:
            max_lora_rank = max(16, _lora_rank(model_cfg.adapter) if model_cfg.adapter else 16)
            max_lora_rank = 1 << (max_lora_rank - 1).bit_length()  # vLLM takes powers of two
        kwargs = dict(model=str(location), dtype=dtype, tensor_parallel_size=tp, seed=model_cfg.seed,
                      enable_prefix_caching=True, enforce_eager=(not cuda) if enforce_eager is None else enforce_eager,
                      enable_lora=self.enable_lora, max_model_len=max_model_len)
        if self.enable_lora:
            kwargs.update(max_lora_rank=max_lora_rank, max_loras=4)
        if cuda:
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization)
        kwargs.update(engine_kwargs)
        from vllm import LLM

        log.info("starting vLLM on %s (%s, tensor_parallel_size=%d, lora=%s)", location, dtype, tp, self.enable_lora)
        self.llm = LLM(**{k: v for k, v in kwargs.items() if v is not None})
        self.tokenizer = self.llm.get_tokenizer()
        self.on_cpu = not cuda
        self._lora_ids: dict[str, int] = {}
        eos = self.tokenizer.eos_token_id
        self.eos_token = self.tokenizer.convert_ids_to_tokens(eos) if eos is not None else None

    def _lora(self, adapter: str | None):
        adapter = adapter or self.cfg.adapter
        if adapter is None:
            return None
        if not self.enable_lora:
            raise GenerationError("this vLLM generator was started without LoRA support: make it with "
                                  "enable_lora=True (and max_lora_rank >= the adapter's rank) to pass adapters")
        key = str(Path(adapter).expanduser().resolve())
        if not (Path(key) / "adapter_config.json").is_file():
            raise ModelLoadError(f"{adapter} is not a LoRA adapter folder: expected adapter_config.json")
        from vllm.lora.request import LoRARequest

        self._lora_ids.setdefault(key, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter{self._lora_ids[key]}", self._lora_ids[key], key)

    def _run(self, token_prompts: list[list[int]], params, adapter: str | None):
        from vllm import TokensPrompt

        if not token_prompts:
            return []

        return self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in token_prompts], params,
                                 lora_request=self._lora(adapter), use_tqdm=self.progress)

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.7, top_p: float = 0.95,
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int = 0,
                 adapter: str | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        stop = check_generate_args(prompts, n, temperature, top_p, max_new_tokens, stop)
        # One seed per prompt (vLLM gives the n samples of a request seed, seed+1, ...), drawn from
        # `seed` so that equal prompts still get different samples.
        rng = random.Random(seed)
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                 max_tokens=max_new_tokens, stop=list(stop) or None, seed=rng.randrange(2**31),
                                 skip_special_tokens=False) for _ in prompts]
        outputs = self._run(self.encode_prompts(prompts), params, adapter)
        return [[self._completion(o, stop) for o in out.outputs] for out in outputs]

    def _completion(self, out, stop: tuple[str, ...]) -> Completion:
        text, ids = out.text, list(out.token_ids)
        finish = "length" if out.finish_reason == "length" else "stop"
        if out.finish_reason not in ("stop", "length"):
            raise GenerationError(f"vLLM ended a sequence with finish_reason={out.finish_reason!r}")
        if finish == "stop" and out.stop_reason is None and self.eos_token and text.endswith(self.eos_token):
            text = text[:-len(self.eos_token)]  # ended by EOS, which is no part of the text
        return Completion(text, ids, finish, len(ids))

    def _next_token_logprobs(self, queries: dict[tuple[int, ...], set[int]], adapter: str | None) -> dict:
        """{(context, token): log p(token | context)} with one max_tokens=1 request per context."""
        from vllm import SamplingParams

        contexts = list(queries)
        params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=sorted(queries[c])) for c in contexts]
        outputs = self._run([list(c) for c in contexts], params, adapter)
        result = {}
        for c, out in zip(contexts, outputs):
            logprobs = out.outputs[0].logprobs[0]
            for tok in queries[c]:
                result[c, tok] = logprobs[tok].logprob
        return result

    def score_options(self, prompts: list[str], options: list[str], adapter: str | None = None) -> list[list[float]]:
        check_pairs(prompts, options, "options")
        prompt_ids, option_ids = self.encode_prompts(prompts), self.encode_pieces(options)
        queries: dict[tuple[int, ...], set[int]] = {}
        for p in prompt_ids:
            for o in option_ids:
                for j, tok in enumerate(o):
                    queries.setdefault(tuple(p + o[:j]), set()).add(tok)
        lp = self._next_token_logprobs(queries, adapter)
        return [[sum(lp[tuple(p + o[:j]), tok] for j, tok in enumerate(o)) for o in option_ids] for p in prompt_ids]

    def sequence_logprobs(
        self, prompts: list[str], continuations: list[str], adapter: str | None = None
    ) -> list[float]:
        from vllm import SamplingParams

        check_pairs(prompts, continuations, "continuations", same_length=True)
        seqs = [(p, p + c) for p, c in zip(self.encode_prompts(prompts), self.encode_pieces(continuations))]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        # prompt_logprobs in a multi-request batch crashes a LoRA-enabled CPU engine (even for requests
        # without an adapter: the LoRA logits layer mis-broadcasts): one request at a time there.
        one_by_one = self.on_cpu and self.enable_lora
        chunks = [[s] for s in seqs] if one_by_one else [seqs]
        result = []
        for chunk in chunks:
            for (p, full), out in zip(chunk, self._run([full for _, full in chunk], params, adapter)):
                result.append(sum(out.prompt_logprobs[t][full[t]].logprob for t in range(len(p), len(full))))
        return result

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
