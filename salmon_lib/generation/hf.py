"""Hugging Face backend: generation in length-sorted, per-batch padded batches through
`decode.decode` (finished rows leave the batch; exact top-p without sorting the vocabulary; each
row samples with its own seeded generator), and log-prob scoring through `prefix_scoring.score_rows`
(shared prefixes computed once)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..models import ModelConfig, ModelLoadError, check_adapter, load_model
from . import usage
from .base import Completion, GenerationError, Generator, check_generate_args, check_pairs
from .decode import StopCheck, decode, to_completion
from .gqa_attention import masked_gqa_attention
from .lora_merge import merged_lora
from .prefix_scoring import ScoreRow, score_rows
from .seeding import prompt_seeds, sample_seed
from .token_kl import token_kl

log = logging.getLogger(__name__)


class HFGenerator(Generator):
    backend = "hf"

    def __init__(self, model_cfg: ModelConfig | str, batch_size: int = 16, score_batch_size: int = 16,
                 score_max_tokens: int = 8192, min_shared_prefix: int = 16, share_prefix: bool = True,
                 progress: bool = True, loaded: tuple | None = None, score_cache: str | Path | None = None):
        """batch_size: sequences per generation batch (prompts x n); score_batch_size and
        score_max_tokens: rows and padded tokens per scoring batch; min_shared_prefix: shortest
        token prefix worth computing once for several rows; loaded: a (tokenizer, model) already in
        memory to use as it is, with its active adapter (RL's live policy: no weight copy per step);
        score_cache: a folder where log-probs are kept and read back (`score_cache.py`)."""
        if loaded is not None and score_cache is not None:
            raise ValueError("score_cache needs weights that stay as loaded; a live model (loaded=) changes")
        if isinstance(model_cfg, str):
            model_cfg = ModelConfig(spec=model_cfg)
        self.cfg = model_cfg
        self.batch_size, self.score_batch_size, self.score_max_tokens = batch_size, score_batch_size, score_max_tokens
        self.min_shared_prefix, self.share_prefix, self.progress = min_shared_prefix, share_prefix, progress
        # The configured adapter is loaded as a named adapter like any other, so that
        # `adapter=<another path>` swaps it rather than stacking on it.
        self.tokenizer, self.model = loaded or load_model(dataclasses.replace(model_cfg, adapter=None))
        self._adapters: dict[str, str] = {}
        self.device = next(self.model.parameters()).device
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tokenizer.eos_token_id)
        self.pad_id = self.tokenizer.pad_token_id
        self.score_cache = None
        if score_cache is not None:
            from .score_cache import ScoreCache

            dtype = str(next(self.model.parameters()).dtype)
            self.score_cache = ScoreCache(score_cache, self.cfg, dtype, str(self.device))

    # -- adapters ---------------------------------------------------------------------------------
    def _adapter_name(self, path: str) -> str:
        key = str(Path(path).expanduser().resolve())
        if key not in self._adapters:
            from peft import PeftModel

            check_adapter(key)  # not an adapter, or a damaged one: fails here, naming the file
            name = f"adapter{len(self._adapters)}"
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(key, adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, key, adapter_name=name)
            except (RuntimeError, ValueError, KeyError) as err:
                first = str(err).strip().splitlines()[0][:300]
                raise ModelLoadError(f"adapter {path} does not fit the model {self.cfg.spec!r}: {first}") from None
            self.model.eval()
            self._adapters[key] = name
            log.info("LoRA adapter %s loaded as %r", key, name)
        return self._adapters[key]

    @contextlib.contextmanager
    def _active(self, adapter: str | None):
        adapter = adapter or self.cfg.adapter
        if adapter is not None:
            name = self._adapter_name(adapter)  # may wrap self.model in a PeftModel: look it up after
            self.model.set_adapter(name)
            with merged_lora(self.model):
                yield
        elif self._adapters:
            with self.model.disable_adapter():
                yield
        else:
            with merged_lora(self.model):  # a live policy (loaded=) with its own active adapter
                yield

    # -- generation -------------------------------------------------------------------------------
    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.7, top_p: float = 0.95,
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int | Sequence[int] = 0,
                 adapter: str | None = None, contrast_prompts: Sequence[str] | None = None,
                 guidance_scale: float = 1.0, guidance_plausibility: float = 0.0) -> list[list[Completion]]:
        """As `Generator.generate`; with `contrast_prompts` (one per prompt) and `guidance_scale`
        != 1, each prompt's tokens are drawn with classifier-free guidance away from its contrast
        prompt, among the tokens within `guidance_plausibility` of its most likely one (`decode`'s
        docstring), at twice the compute."""
        stop = check_generate_args(prompts, n, temperature, top_p, max_new_tokens, stop)
        if not prompts:
            return []
        guided = guidance_scale != 1.0
        if not 0 <= guidance_plausibility < 1:
            raise GenerationError(f"guidance_plausibility must be in [0, 1), got {guidance_plausibility}")
        if guided and (contrast_prompts is None or len(contrast_prompts) != len(prompts)):
            got = None if contrast_prompts is None else len(contrast_prompts)
            raise GenerationError(f"guidance_scale {guidance_scale} needs one contrast prompt per prompt "
                                  f"({len(prompts)}), got {got}")
        start = time.perf_counter()
        seeds = prompt_seeds(seed, len(prompts))
        encoded = self.encode_prompts(prompts)
        contrasts = self.encode_prompts(contrast_prompts) if guided else None
        # Longest first: a batch holds prompts of similar length, so little padding, and a batch
        # that does not fit in memory fails at the start rather than at the end.
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
        per_batch = max(1, self.batch_size // (n * (2 if guided else 1)))
        results: list[list[Completion] | None] = [None] * len(prompts)
        greedy = temperature == 0
        with self._active(adapter), \
                tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not self.progress) as bar:
            for b in range(0, len(order), per_batch):
                batch = order[b:b + per_batch]
                # Each row samples from its own generator, so a prompt's samples do not depend on
                # its batch and the caller's RNG is untouched. Greedy decoding gives n identical
                # completions: decode once, copy.
                k = 1 if greedy else n
                row_seeds = [sample_seed(seeds[i], j) for i in batch for j in range(k)]
                comps = self._generate_batch([encoded[i] for i in batch], k, max_new_tokens, stop, temperature,
                                             top_p, row_seeds, guidance_scale,
                                             [contrasts[i] for i in batch] if guided else None,
                                             guidance_plausibility)
                for i, c in zip(batch, comps):
                    results[i] = c * n if greedy else c
                bar.update(len(batch))
        usage.record(self.backend, len(prompts) * n, sum(c.num_tokens for r in results for c in r),
                     time.perf_counter() - start)
        return results

    def _generate_batch(self, encoded: list[list[int]], n: int, max_new_tokens: int, stop: tuple[str, ...],
                        temperature: float, top_p: float, row_seeds: list[int], guidance_scale: float = 1.0,
                        contrasts: list[list[int]] | None = None,
                        plausibility: float = 0.0) -> list[list[Completion]]:
        rows = encoded + (contrasts or [])
        width = max(len(e) for e in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(rows):  # left padding: every row's next token goes at the same column
            ids[r, width - len(e):] = torch.tensor(e)
            mask[r, width - len(e):] = 1
        # guided: [each prompt n times; each contrast n times], the layout `decode` pairs rows by
        with masked_gqa_attention(self.model):
            rows = decode(self.model, ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0), max_new_tokens,
                          temperature, top_p, StopCheck(self.tokenizer, stop, self.eos_ids), seeds=row_seeds,
                          guidance_scale=guidance_scale, plausibility=plausibility)
        completions = [to_completion(self.tokenizer, r, stop) for r in rows]
        return [completions[i * n:(i + 1) * n] for i in range(len(encoded))]

    # -- scoring ----------------------------------------------------------------------------------
    def _score(self, rows: list[ScoreRow], adapter: str | None, desc: str) -> list[list[float]]:
        if not rows:
            return []
        if self.score_cache is None:
            return self._compute_scores(rows, adapter, desc)
        keys = self.score_cache.keys(rows, adapter or self.cfg.adapter)
        known = self.score_cache.values()
        todo = [i for i, k in enumerate(keys) if k not in known]
        if todo:
            self.score_cache.add([keys[i] for i in todo], self._compute_scores([rows[i] for i in todo], adapter, desc))
        log.info("%s: %d of %d rows read from the score cache", desc, len(rows) - len(todo), len(rows))
        return [list(known[k]) for k in keys]

    def _compute_scores(self, rows: list[ScoreRow], adapter: str | None, desc: str) -> list[list[float]]:
        with self._active(adapter), tqdm(total=len(rows), desc=desc, unit="row", disable=not self.progress) as bar:
            return score_rows(self.model, rows, self.pad_id, share_prefix=self.share_prefix,
                              min_shared=self.min_shared_prefix, max_rows=self.score_batch_size,
                              max_tokens=self.score_max_tokens, progress=bar)

    def score_options(self, prompts: list[str], options: list[str], adapter: str | None = None) -> list[list[float]]:
        check_pairs(prompts, options, "options")
        prompt_ids, option_ids = self.encode_prompts(prompts), self.encode_pieces(options)
        rows, owner = [], []  # owner[r] = (prompt index, option index or None for all single-token ones)
        single = [k for k, o in enumerate(option_ids) if len(o) == 1]
        multi = [k for k, o in enumerate(option_ids) if len(o) > 1]
        for i, p in enumerate(prompt_ids):
            if single:  # all one-token options read the same next-token distribution: one row
                rows.append(ScoreRow(p, [(len(p), option_ids[k][0]) for k in single]))
                owner.append((i, None))
            for k in multi:
                seq = p + option_ids[k]
                rows.append(ScoreRow(seq, [(t, seq[t]) for t in range(len(p), len(seq))]))
                owner.append((i, k))
        scores = self._score(rows, adapter, "score options")
        result = [[0.0] * len(options) for _ in prompts]
        for (i, k), s in zip(owner, scores):
            if k is None:
                for kk, v in zip(single, s):
                    result[i][kk] = v
            else:
                result[i][k] = sum(s)
        return result

    def sequence_logprobs(
        self, prompts: list[str], continuations: list[str], adapter: str | None = None
    ) -> list[float]:
        check_pairs(prompts, continuations, "continuations", same_length=True)
        rows = []
        for p, c in zip(self.encode_prompts(prompts), self.encode_pieces(continuations)):
            seq = p + c
            rows.append(ScoreRow(seq, [(t, seq[t]) for t in range(len(p), len(seq))]))
        return [sum(s) for s in self._score(rows, adapter, "sequence log-probs")]

    def token_kl(self, prompts: list[str], answer_ids: list[list[int]], reference: str | None,
                 temperature: float = 1.0, adapter: str | None = None) -> list[float]:
        """Per rendered prompt and answer (token ids, as sampled): the summed per-position
        KL(model with `adapter` || model with `reference`) along the answer, in nats, both at
        `temperature` (`token_kl.py`). Either adapter None: the model as configured."""
        if len(prompts) != len(answer_ids):
            raise GenerationError(f"{len(prompts)} prompts but {len(answer_ids)} answers: one each")
        if temperature <= 0:
            raise GenerationError(f"temperature must be > 0 for a KL between distributions, got {temperature}")
        if not prompts:
            return []
        for path in (adapter, reference):  # loading one may wrap self.model: before it is handed on
            if path or self.cfg.adapter:
                self._adapter_name(path or self.cfg.adapter)
        with tqdm(total=len(prompts), desc="KL", unit="answer", disable=not self.progress) as bar:
            return token_kl(self.model, self.pad_id, self.encode_prompts(prompts), answer_ids,
                            lambda: self._active(adapter), lambda: self._active(reference), temperature, bar)

    def close(self) -> None:
        self.model = None
        self._adapters.clear()
