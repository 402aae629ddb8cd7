"""Stage 00: build the prompt pool and write `prompts.jsonl`, `prompts_stats.json` and a chart of
what each filter removed (`figures/prompts_filters.png`) into the run directory.

Order: seeds and generated prompts (when asked for), then every source in the order given; then
ShareGPT artefacts, token length, exact dedup, near dedup, language, decontamination, bucket cap,
mix and size. Earlier records win dedup, so list the sources you trust most first. The result is
written in a seeded random order (`shuffle`), since later stages may take the first N.

`run(cfg)` is the whole stage; the parameters are `config.PromptsConfig`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from ..io import DataError, RecordLog, atomic_path, atomic_write_json, write_jsonl
from .config import PromptsConfig
from .generate import Resume

log = logging.getLogger(__name__)

# Generated prompts are appended here as they are accepted, so an interrupted stage resumes
# instead of regenerating; a first line records the parameters they were made with.
GENERATED_CACHE = "prompts_generated.jsonl"
_CACHE_KEYS = ("model", "chat_format", "seed", "seed_file", "question_types_file", "n_shot", "rouge_threshold",
               "tgrt_rounds", "tgrt_topics_per_type", "temperature", "top_p", "max_new_tokens", "batch_size",
               "sampling_dtype")


def _open_cache(cfg: PromptsConfig, seed_text: str) -> RecordLog:
    """The resumable log of generated prompts; discarded when the parameters have changed."""
    path = Path(cfg.run_dir) / GENERATED_CACHE
    params = {k: getattr(cfg, k) for k in _CACHE_KEYS}
    params["seed_queries_sha1"] = hashlib.sha1(seed_text.encode("utf-8")).hexdigest()
    log = RecordLog(path)
    header = next(iter(log.records()), None)
    if header != {"id": "params", "params": params}:
        path.unlink(missing_ok=True)
        log = RecordLog(path)
        log.append([{"id": "params", "params": params}])
    return log


def _resume(log: RecordLog, source: str, question_type: str = "general") -> Resume:
    from .records import make_record

    done = [(r["prompt"], r["meta"]) for r in log.records() if r.get("source") == source]
    return Resume(done, lambda text, meta: log.append([make_record(text, source, question_type, **meta)]))


@dataclasses.dataclass
class _Inputs:
    """Every file the stage reads besides the pools, loaded (and so checked) before any work."""

    seeds: list[str]
    seed_text: str
    types: list
    evals: list[str]


def _load_inputs(cfg: PromptsConfig) -> _Inputs:
    from .cleaning import read_eval_prompts
    from .generate import SEED_QUERIES, load_seed_queries
    from .tgrt import QUESTION_TYPES, load_question_types

    which = cfg.active_generators()
    seed_path = cfg.file("seed_file") if cfg.seed_file else Path(SEED_QUERIES)
    seeds = load_seed_queries(seed_path) if which else []
    types_path = cfg.file("question_types_file") if cfg.question_types_file else QUESTION_TYPES
    types = load_question_types(types_path) if "tgrt" in which else []
    evals = [
        p for path in cfg.decontaminate_against for p in read_eval_prompts(cfg.file("decontaminate_against", path))
    ]
    return _Inputs(seeds, seed_path.read_text(encoding="utf-8") if which else "", types, evals)


def _generate_records(cfg: PromptsConfig, gen, inputs: _Inputs, stats: dict) -> list[dict]:
    from ..chat_format import get_format
    from .generate import Sampling, bootstrap, self_instruct
    from .records import make_record
    from .tgrt import brainstorm_topics, tgrt_questions

    which = cfg.active_generators()
    fmt = get_format(cfg.chat_format)
    seeds, types = inputs.seeds, inputs.types
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.batch_size, cfg.max_calls, cfg.seed)
    records = [make_record(q, "seed") for q in seeds] if "seeds" in which else []
    if gen is None:
        return records
    log = _open_cache(cfg, inputs.seed_text)
    if "bootstrap" in which:
        got, stats["generation"]["bootstrap"] = bootstrap(gen, fmt, seeds, cfg.num_bootstrap, sampling, cfg.n_shot,
                                                          cfg.rouge_threshold, _resume(log, "bootstrap"))
        records += [make_record(q, "bootstrap", **m) for q, m in got]
    if "self_instruct" in which:
        got, stats["generation"]["self_instruct"] = self_instruct(gen, fmt, seeds, cfg.num_self_instruct, sampling,
                                                                  rouge_threshold=cfg.rouge_threshold,
                                                                  resume=_resume(log, "self_instruct"))
        records += [make_record(q, "self_instruct", **m) for q, m in got]
    if "tgrt" in which:
        topics, stats["generation"]["tgrt_topics"] = brainstorm_topics(gen, fmt, types, sampling, cfg.tgrt_rounds,
                                                                       cfg.tgrt_topics_per_type)
        got, stats["generation"]["tgrt_questions"] = tgrt_questions(gen, fmt, types, topics, sampling,
                                                                    resume=_resume(log, "tgrt", "red_team"))
        records += [make_record(q, "tgrt", "red_team", **m) for q, m in got]
    stats["generation"] = {k: dict(v) for k, v in stats["generation"].items()}
    return records


def _apply(stats: dict, name: str, records: list[dict], fn: Callable[[list[dict]], list[dict]]) -> list[dict]:
    before = Counter(r["source"] for r in records)
    out = fn(records)
    after = Counter(r["source"] for r in out)
    stats["filters"].append({"name": name, "kept": len(out),
                             "removed": {s: before[s] - after[s] for s in before if before[s] > after[s]}})
    return out


def build_pool(cfg: PromptsConfig) -> tuple[list[dict], dict]:
    """The cleaned pool and its statistics (nothing is written)."""
    from ..models import ModelConfig, load_tokenizer
    from . import cleaning, dedup, sampling
    from .readers import read_source

    stats: dict = {"inputs": [], "generation": {}, "filters": []}
    records: list[dict] = []
    which = cfg.active_generators()
    inputs = _load_inputs(cfg)
    tokenizer = None
    if which and which != ["seeds"]:
        from ..generation import make_generator

        with make_generator(cfg.sampling_model(cfg.model), backend=cfg.backend,
                            processes=cfg.generation_processes) as gen:
            records += _generate_records(cfg, gen, inputs, stats)
            tokenizer = gen.tokenizer
    elif which:
        records += _generate_records(cfg, None, inputs, stats)
    for kind, locations in cfg.sources.items():
        for location in locations:
            got, report = read_source(kind, cfg.source(location))
            if not got:
                why = report.errors[0] if report.errors else (
                    f"{report.rows} row(s), none kept: {dict(report.skipped)}" if report.rows else "it holds no rows")
                raise DataError(f"sources.{kind}: {location}: no prompts read ({why})")
            if report.errors:
                log.warning("%s: skipped %d malformed record(s), e.g. %s", location, len(report.errors),
                            "; ".join(report.errors[:3]))
            stats["inputs"].append(report.to_dict())
            records += got
    stats["read"] = len(records)
    tokenizer = tokenizer or load_tokenizer(ModelConfig(spec=cfg.model))
    rng = random.Random(cfg.seed)

    def strip(recs):
        out, stats["artefacts stripped"] = cleaning.strip_artifacts(recs)
        return out

    records = _apply(stats, "ShareGPT artefacts / empty", records, strip)
    records = _apply(stats, f"length outside {cfg.min_tokens}..{cfg.max_tokens} tokens", records,
                     lambda r: cleaning.length_filter(r, tokenizer, cfg.min_tokens, cfg.max_tokens))
    records = _apply(stats, "exact duplicate", records, dedup.exact_dedup)
    if cfg.near_dup:
        records = _apply(stats, f"near duplicate (Jaccard >= {cfg.near_dup_threshold})", records,
                         lambda r: dedup.near_dedup(r, cfg.near_dup_threshold, cfg.near_dup_ngram, seed=cfg.seed))
    if cfg.languages:
        records = _apply(stats, f"language not in {','.join(cfg.languages)}", records,
                         lambda r: cleaning.language_filter(r, cfg.languages))
    if cfg.decontaminate_against:
        records = _apply(stats, "overlaps an evaluation prompt", records,
                         lambda r: cleaning.decontaminate(r, inputs.evals, cfg.decontam_ngram))
    records = _apply(stats, f"over bucket cap ({cfg.openorca_bucket_cap})", records,
                     lambda r: sampling.cap_buckets(r, cfg.openorca_bucket_cap, rng))
    records = _apply(stats, "mix / max_prompts", records,
                     lambda r: sampling.subsample(r, cfg.max_prompts, cfg.source_mix, rng))
    if not records:
        worst = max(stats["filters"], key=lambda f: sum(f["removed"].values()), default=None)
        raise DataError(f"the prompt pool is empty: {stats['read']} prompt(s) read"
                        + (f", the most removed by {worst['name']!r}" if worst else ""))
    if cfg.shuffle:
        rng.shuffle(records)
    stats["total"] = len(records)
    stats["by_source"] = dict(Counter(r["source"] for r in records))
    stats["by_question_type"] = dict(Counter(r["question_type"] for r in records))
    stats["malformed_skipped"] = sum(i["errors"] for i in stats["inputs"])
    return records, stats


def removals(stats: dict) -> dict[str, dict[str, int]]:
    """{step: {source: removed}}: generated candidates rejected (by method and reason), rows the
    readers skipped, then every filter in order (zeros included, so the chart always lists them)."""
    steps: dict[str, dict[str, int]] = {}
    for method, counts in stats["generation"].items():
        for key, n in counts.items():
            if key.startswith("rejected: ") and n:
                steps[f"{method}: {key[len('rejected: ') :]}"] = {
                    method.removesuffix("_topics").removesuffix("_questions"): n
                }
    for report in stats["inputs"]:
        for label, n in (
            ("malformed (skipped)", report["errors"]),
            ("not selected by reader", sum(report["skipped"].values())),
        ):
            if n:
                step = steps.setdefault(label, {})
                step[report["source"]] = step.get(report["source"], 0) + n
    for f in stats["filters"]:
        steps[f["name"]] = dict(f["removed"])
    return steps


def plot_removals(stats: dict):
    """Horizontal stacked bars: records removed per step, coloured by source."""
    # A bare Figure needs no GUI backend, and notebooks still display it inline.
    from matplotlib.figure import Figure

    steps = removals(stats)
    sources = sorted({s for v in steps.values() for s in v})
    fig = Figure(figsize=(8, 0.35 * len(steps) + 1.5))
    ax = fig.subplots()
    names = list(steps)
    left = [0] * len(names)
    for source in sources:
        vals = [steps[n].get(source, 0) for n in names]
        ax.barh(names, vals, left=left, label=source)
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set_xlabel("records (or generated candidates) removed")
    ax.set_title(f"Prompt pool: {stats['read']} read, {stats['total']} kept")
    if sources:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def run(cfg: PromptsConfig) -> dict:
    """Build the pool and write the stage's artifacts; returns the statistics."""
    start = time.perf_counter()
    records, stats = build_pool(cfg)
    stats["seconds"] = round(time.perf_counter() - start, 1)
    run_dir = Path(cfg.run_dir)
    write_jsonl(run_dir / "prompts.jsonl", records)
    atomic_write_json(run_dir / "prompts_stats.json", stats)
    with atomic_path(run_dir / "figures" / "prompts_filters.png") as tmp:
        plot_removals(stats).savefig(tmp, format="png", dpi=120)
    return stats
