"""The generation interface every stage codes against.

A `Generator` turns fully rendered prompt strings (see `salmon_lib.chat_format`) into completions, and
scores given continuations by their log-probability. Two backends implement it: Hugging Face
(`hf.HFGenerator`, always available) and vLLM (`vllm_backend.VLLMGenerator`, when installed).

Tokenization is the same in both: a prompt is tokenized on its own (with the tokenizer's default
special tokens), an option or continuation on its own without special tokens, and the two id lists
are concatenated. Scoring therefore never depends on how a tokenizer would merge across the seam
(the judge's "Output (" + "a" would otherwise become one "(a" token in some vocabularies).

Adapters: `adapter=None` means the model as configured (`ModelConfig.adapter` when set, else the
bare base); a path means the base with that LoRA adapter instead.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

FinishReason = Literal["stop", "length"]


@dataclasses.dataclass(frozen=True)
class Completion:
    text: str  # generated text, cut before the first stop string (which is not included)
    token_ids: list[int]  # generated ids, up to and including the token that completed a stop string or EOS
    finish_reason: FinishReason  # "stop": a stop string or EOS ended it; "length": max_new_tokens did
    num_tokens: int  # len(token_ids)


class GenerationError(ValueError):
    """Bad arguments to a generator; the message names the argument and the offending value."""


def check_generate_args(prompts, n, temperature, top_p, max_new_tokens, stop) -> tuple[str, ...]:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise GenerationError("prompts must be a list of strings (fully rendered prompts)")
    _check_nonempty(prompts, "prompts")
    if n < 1:
        raise GenerationError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise GenerationError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise GenerationError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if isinstance(stop, str):
        stop = (stop,)
    stop = tuple(stop)
    if any(not isinstance(s, str) or not s for s in stop):
        raise GenerationError(f"stop strings must be non-empty strings, got {stop!r}")
    return stop


def check_pairs(prompts, others, what: str, same_length: bool = False) -> None:
    if isinstance(prompts, str) or isinstance(others, str):
        raise GenerationError(f"prompts and {what} must be lists of strings, not a single string")
    if not all(isinstance(p, str) for p in prompts) or not all(isinstance(o, str) for o in others):
        raise GenerationError(f"prompts and {what} must be lists of strings")
    if same_length and len(prompts) != len(others):
        raise GenerationError(f"{len(prompts)} prompts but {len(others)} {what}: one each")
    _check_nonempty(prompts, "prompts")
    _check_nonempty(others, what)


def _check_nonempty(texts, what: str) -> None:
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise GenerationError(f"{what} {empty[:5]} are empty strings: each needs at least one token")


class Generator:
    """Base class: the interface, plus the context manager and tokenization shared by backends."""

    backend: str = ""
    tokenizer = None

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.7, top_p: float = 0.95,
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int | Sequence[int] = 0,
                 adapter: str | None = None) -> list[list[Completion]]:
        """`n` completions per prompt. `seed`: one seed per prompt (a prompt's samples then depend
        on its seed alone, whatever else is in the call), or one int for the whole call."""
        raise NotImplementedError

    def score_options(self, prompts: list[str], options: list[str], adapter: str | None = None) -> list[list[float]]:
        """For each prompt, the log-probability of each option's tokens as its continuation
        (summed over the option's tokens)."""
        raise NotImplementedError

    def sequence_logprobs(
        self, prompts: list[str], continuations: list[str], adapter: str | None = None
    ) -> list[float]:
        """Summed log-probability of `continuations[i]` after `prompts[i]`."""
        raise NotImplementedError

    def token_kl(self, prompts: list[str], answer_ids: list[list[int]], reference: str | None,
                 temperature: float = 1.0, adapter: str | None = None) -> list[float]:
        """Summed per-position KL(`adapter` || `reference`) along each answer's token ids, in nats:
        it needs full next-token distributions, which only the HF backend exposes."""
        raise NotImplementedError(f"the {self.backend} backend returns no full next-token distributions; "
                                  "token_kl needs the hf backend")

    def close(self) -> None:
        """Release the model (and for vLLM, the engine and its workers)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Shared tokenization, so both backends score exactly the same token sequences.
    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        if not prompts:
            return []
        return [list(ids) for ids in self.tokenizer(list(prompts))["input_ids"]]

    def encode_pieces(self, pieces: Sequence[str]) -> list[list[int]]:
        if not pieces:
            return []
        return [list(ids) for ids in self.tokenizer(list(pieces), add_special_tokens=False)["input_ids"]]
