"""Stage 00's parameters. Kept free of torch so the runner can validate them before any kernel starts."""

from __future__ import annotations

import dataclasses

from ..config import ConfigError, StageConfig
from ..options import DataSamplingOptions, GenerationOptions
from ..paths import candidates, find_file
from .readers import READERS, check_location

GENERATORS = ("seeds", "bootstrap", "self_instruct", "tgrt")
DEFAULT_GENERATORS = ["seeds", "bootstrap", "tgrt"]


@dataclasses.dataclass
class PromptsConfig(DataSamplingOptions, GenerationOptions, StageConfig):
    file_params = ("seed_file", "question_types_file", "decontaminate_against")
    file_checks = {"seed_file": "salmon_lib.prompts.generate:load_seed_queries",
                   "question_types_file": "salmon_lib.prompts.tgrt:load_question_types",
                   "decontaminate_against": "salmon_lib.prompts.cleaning:read_eval_prompts"}

    model: str = "default"  # its tokenizer measures prompt length; it also writes the generated prompts
    chat_format: str = "chatml"  # how generation requests are rendered (salmon_lib.chat_format)
    # {sharegpt|openorca|dolly|oasst1: [file or dataset id]}; {} means no pool: generate from seeds
    sources: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # any of seeds, bootstrap, self_instruct, tgrt; None: seeds+bootstrap+tgrt when `sources` is empty, else none
    generators: list[str] | None = None
    seed_file: str = ""  # YAML of seed queries; "" means the ~100 shipped with salmon_lib
    question_types_file: str = ""  # YAML of red-teaming question types; "" means the shipped 20
    num_bootstrap: int = 40  # prompts to bootstrap from the seeds (ALMoST)
    num_self_instruct: int = 40  # instructions to generate Self-Instruct style (Dromedary-1)
    n_shot: int = 10  # demonstrations per bootstrapping request
    rouge_threshold: float = 0.7  # a generated prompt this similar (ROUGE-L F) to one in the pool is dropped
    tgrt_rounds: int = 2  # topic brainstorming requests per question type, at most
    tgrt_topics_per_type: int = 3  # most topics per question type (the seed topic included)
    temperature: float = 1.0  # sampling temperature of generation
    max_new_tokens: int = 48  # tokens per generated prompt (list-style requests get a multiple)
    batch_size: int = 8  # generation requests per call
    max_calls: int = 40  # most generate calls per method, so a stuck model cannot loop forever
    min_tokens: int = 2  # shortest prompt kept, counted in tokens of the model tokenizer
    max_tokens: int = 256  # longest prompt kept
    near_dup: bool = True  # drop near-duplicates (MinHash LSH on word n-grams)
    near_dup_threshold: float = 0.8  # Jaccard similarity at which a later prompt counts as a near-duplicate
    near_dup_ngram: int = 3  # words per shingle for near-duplicate detection
    # keep only these ISO 639-1 codes (py3langid); [] keeps all
    languages: list[str] = dataclasses.field(default_factory=list)
    # files of evaluation prompts to keep out
    decontaminate_against: list[str] = dataclasses.field(default_factory=list)
    decontam_ngram: int = 8  # a shared word n-gram of this length with an evaluation prompt drops a prompt
    openorca_bucket_cap: int = 10000  # most prompts per OpenOrca bucket (niv/flan/t0/cot); 0 for no cap
    # relative share per source; {} keeps the proportions as read
    source_mix: dict[str, float] = dataclasses.field(default_factory=dict)
    max_prompts: int = 0  # size of the final pool; 0 keeps everything that survives
    # write the pool in a seeded random order, so a later stage taking its first N gets every source
    shuffle: bool = True

    def check(self) -> None:
        super().check()
        for kind, locations in self.sources.items():
            if kind not in READERS:
                raise ConfigError(f"sources: unknown format {kind!r}; known: {', '.join(READERS)}")
            for loc in locations:
                problem = check_location(self.source(loc))
                if problem:
                    tried = "" if find_file(loc) else f" (tried {', '.join(map(str, candidates(loc)))})"
                    raise ConfigError(f"sources.{kind}: {problem}{tried}")
        unknown = set(self.generators or ()) - set(GENERATORS)
        if unknown:
            raise ConfigError(f"generators: unknown {', '.join(sorted(unknown))}; known: {', '.join(GENERATORS)}")
        if not 0 < self.min_tokens <= self.max_tokens:
            raise ConfigError(f"need 0 < min_tokens <= max_tokens, got {self.min_tokens} and {self.max_tokens}")
        for name in ("rouge_threshold", "near_dup_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if any(w < 0 for w in self.source_mix.values()):
            raise ConfigError("source_mix: weights must be >= 0")
        for name in ("max_calls", "n_shot", "near_dup_ngram", "decontam_ngram"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def source(self, location: str) -> str:
        """A source location as read: a file found by the path resolver, else a dataset id."""
        found = find_file(location)
        return str(found) if found else location

    def active_generators(self) -> list[str]:
        if self.generators is None:
            return [] if self.sources else list(DEFAULT_GENERATORS)
        return list(self.generators)
