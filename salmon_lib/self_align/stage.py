"""Stage 01: principle-driven self-alignment.

The base model answers every prompt of `prompts.jsonl` under the Self-Align prompt (rules +
exemplars with internal thoughts), one sample per prompt: first its thoughts, then, after the answer
label, its answer, stopping at the end of its turn. Each
completion is parsed and filtered (`parse.py`), identity examples are added (`identity.py`), and
everything, kept or dropped, is appended to `self_align.jsonl` as it is produced, so an interrupted
run resumes where it stopped. Each record carries the signature of what produced it (model, rendered
prompt, sampling settings, seed) and its seeds derive from its id: a rerun answers again exactly
the prompts whose signature changed, and a resumed run writes what an uninterrupted one would.
Stats and plots are rebuilt from the records of this run's prompts at the end.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from pathlib import Path

from ..generation.prefix_generation import PrefixGenerator
from ..io import DataError, RecordLog, atomic_write_json, iter_jsonl, write_jsonl
from ..provenance import derive_seed, signature
from .config import SelfAlignConfig
from .identity import identity_records
from .parse import DROP_REASONS, SelfAlignFilter, trim_to_sentence
from .prompt import build_prompt

log = logging.getLogger(__name__)

INPUT = "prompts.jsonl"
OUTPUT = "self_align.jsonl"
STATS = "self_align_stats.json"


def read_prompts(path: str | Path, limit: int | None = None) -> list[dict]:
    prompts, lines = [], {}
    for lineno, rec in iter_jsonl(path, {"id": (str, int), "prompt": str}):
        if rec["id"] in lines:
            raise DataError(f"{path}:{lineno}: duplicate id {rec['id']!r} (first on line {lines[rec['id']]})")
        lines[rec["id"]] = lineno
        prompts.append(rec)
        if limit is not None and len(prompts) >= limit:
            break
    if not prompts and limit != 0:
        raise DataError(f"{path}: no prompts to answer (the file is empty)")
    return prompts


def run(cfg: SelfAlignConfig, generator=None) -> dict:
    """Answer, parse and filter every prompt (resuming from what `self_align.jsonl` holds), add the
    identity examples, write stats and figures; return the stats. `generator` (a
    salmon_lib.generation Generator) is made from `cfg.model` when not given."""
    from tqdm.auto import tqdm

    from ..principles import load_self_align

    run_dir = Path(cfg.run_dir)
    prompts = read_prompts(run_dir / INPUT, cfg.max_prompts)
    sa = load_self_align(cfg.file("principles"))
    layout = prompt_layout(cfg, sa)
    check = SelfAlignFilter(cfg, layout.fmt, layout.name, layout.exemplar_answers, sa.cited_rules)
    records = RecordLog(run_dir / OUTPUT)
    wanted = {p["id"]: record_signature(cfg, layout, p["prompt"]) for p in prompts}
    todo = [p for p in prompts if not records.current(p["id"], wanted[p["id"]])]
    generated_tokens, seconds = 0, 0.0
    if todo:
        if generator is None:
            from ..generation import make_generator

            owner = make_generator(cfg.sampling_model(cfg.model), backend=cfg.backend,
                                   processes=cfg.generation_processes)
        else:
            owner = contextlib.nullcontext(generator)
        with owner as gen, tqdm(total=len(todo), desc="self-align", unit="prompt") as bar:
            shared = PrefixGenerator(gen, layout.prefix)
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start:start + cfg.batch_size]
                t0 = time.perf_counter()
                outs = _thoughts_then_answers(shared, layout, batch, cfg)
                seconds += time.perf_counter() - t0
                generated_tokens += sum(n for _, _, n in outs)
                records.append(_record(p, *out, check, wanted[p["id"]]) for p, out in zip(batch, outs))
                bar.update(len(batch))
    # Verdicts are recomputed from the raw text on every run, so the file always reflects the
    # current filter settings, and the identity examples the current name. Only this run's prompts
    # count: records of prompts that max_prompts no longer reaches are left out.
    answered = [_record(r, r["raw"], r["finish_reason"], r["num_tokens"], check, r["signature"])
                for r in records.records(wanted)]
    everything = answered + identity_records(cfg.identity_examples, layout.name, cfg.assistant_creator, cfg.seed)
    write_jsonl(run_dir / OUTPUT, everything)
    stats = summarize(everything, [r.number for r in sa.rules])
    stats.update(assistant_name=layout.name, assistant_creator=cfg.assistant_creator, chat_format=cfg.chat_format,
                 prompt_prefix_chars=len(layout.prefix), generated_this_run=len(todo),
                 generation_seconds=round(seconds, 2), generated_tokens=generated_tokens,
                 tokens_per_second=round(generated_tokens / seconds, 1) if seconds else None)
    atomic_write_json(run_dir / STATS, stats)
    import matplotlib.pyplot as plt

    for fig in plot_stats(stats, everything, run_dir / "figures").values():
        plt.close(fig)
    return stats


def prompt_layout(cfg: SelfAlignConfig, rules=None):
    """The Self-Align prompt of this config (`rules`: the loaded principle file, read if not given)."""
    from ..principles import load_self_align

    return build_prompt(rules or load_self_align(cfg.file("principles")), cfg.chat_format, cfg.assistant_name,
                        cfg.knowledge_cutoff, cfg.max_exemplars)


def record_signature(cfg: SelfAlignConfig, layout, query: str) -> str:
    """What a record of `query` is made from: a change of any of it answers the prompt again."""
    return signature({"model": cfg.model, "prompt": layout.render(query), "temperature": cfg.temperature,
                      "top_p": cfg.top_p, "thoughts_max_tokens": cfg.thoughts_max_tokens,
                      "max_new_tokens": cfg.max_new_tokens, "stop": list(layout.stop),
                      "trim_truncated": cfg.trim_truncated, "sampling_dtype": cfg.sampling_dtype,
                      "seed": cfg.seed})


def _thoughts_then_answers(shared: PrefixGenerator, layout, prompts: list[dict],
                           cfg: SelfAlignConfig) -> list[tuple[str, str, int]]:
    """(raw completion, finish reason, tokens) per prompt record: the thoughts, then the answer after
    the answer label. Thoughts that hit their token limit are cut back to their last complete sentence
    (with `trim_truncated`; they are never trained on) or get no answer (the parser drops them).
    Thoughts and answer each have their own seed, derived from the record's id."""
    rendered = [layout.render(p["prompt"]) for p in prompts]
    sampling = dict(temperature=cfg.temperature, top_p=cfg.top_p)
    thoughts = shared.generate(rendered, max_new_tokens=cfg.thoughts_max_tokens, stop=layout.thoughts_stop,
                               seed=[derive_seed(cfg.seed, p["id"], "thoughts") for p in prompts], **sampling)
    texts = [t.text if t.finish_reason == "stop" else trim_to_sentence(t.text) if cfg.trim_truncated else ""
             for t in thoughts]
    ended = [i for i, text in enumerate(texts) if text.strip()]
    openings = [layout.with_answer_label(rendered[i], texts[i]) for i in ended]
    answers = shared.generate(openings, max_new_tokens=cfg.max_new_tokens, stop=layout.stop,
                              seed=[derive_seed(cfg.seed, prompts[i]["id"], "answer") for i in ended],
                              **sampling) if openings else []
    out = [(t.text, t.finish_reason, t.num_tokens) for t in thoughts]
    for i, opening, a in zip(ended, openings, answers):
        out[i] = (opening[len(rendered[i]):] + a.text, a.finish_reason, thoughts[i].num_tokens + a.num_tokens)
    return out


def _record(p: dict, raw: str, finish_reason: str, num_tokens: int, check: SelfAlignFilter, sig: str) -> dict:
    v = check(p["prompt"], raw, finish_reason)
    return {"id": p["id"], "source": "self_align", "prompt": p["prompt"], "thoughts": v.thoughts,
            "cited_rules": v.cited_rules, "response": v.response, "raw": raw, "finish_reason": finish_reason,
            "num_tokens": num_tokens, "kept": v.kept, "drop_reason": v.drop_reason, "edits": v.edits,
            "leak_overlap": v.leak_overlap, "signature": sig}


def summarize(records: list[dict], rule_numbers: list[int]) -> dict:
    answered = [r for r in records if r.get("source") != "identity"]
    kept = [r for r in records if r["kept"]]
    drops = Counter(r["drop_reason"] for r in records if not r["kept"])
    cited = Counter(n for r in answered for n in r.get("cited_rules", []))
    edits = Counter(e for r in records for e in r.get("edits", []))
    lengths = sorted(len(r["response"]) for r in kept)

    def quantile(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))] if lengths else 0

    return {
        "records": len(records),
        "answered": len(answered),
        "identity": len(records) - len(answered),
        "kept": len(kept),
        "kept_answered": sum(r["kept"] for r in answered),
        "dropped": {reason: drops.get(reason, 0) for reason in DROP_REASONS},
        "edits": dict(edits),
        "finish_reasons": dict(Counter(r["finish_reason"] for r in answered)),
        "rules_cited": {str(n): cited.get(n, 0) for n in rule_numbers},
        "records_citing_rules": sum(bool(r.get("cited_rules")) for r in answered),
        "kept_response_chars": {"p10": quantile(0.1), "median": quantile(0.5), "p90": quantile(0.9),
                                "max": lengths[-1] if lengths else 0},
    }


def plot_stats(stats: dict, records: list[dict], figures_dir: str | Path | None = None) -> dict:
    """Three figures: kept/dropped by reason, rule-citation frequency, answer lengths of the
    records. Saved under `figures_dir` when given; returned by name for a notebook to show."""
    import matplotlib.pyplot as plt

    figs = {}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = ["kept"] + list(stats["dropped"])
    values = [stats["kept"]] + list(stats["dropped"].values())
    ax.barh(labels[::-1], values[::-1], color=["tab:red"] * (len(labels) - 1) + ["tab:green"])
    ax.set_xlabel("records")
    ax.set_title(f"Self-align: kept vs dropped by reason ({stats['records']} records)")
    figs["self_align_filter"] = fig

    fig, ax = plt.subplots(figsize=(7, 3.5))
    rules = list(stats["rules_cited"])
    ax.bar(rules, [stats["rules_cited"][r] for r in rules], color="tab:blue")
    ax.set_xlabel("rule number")
    ax.set_ylabel("answers citing it")
    ax.set_title(
        f"Rules cited in the internal thoughts ({stats['records_citing_rules']} of {stats['answered']} cite any)"
    )
    figs["self_align_rules"] = fig

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, color in (("kept", "tab:green"), ("dropped", "tab:red")):
        values = [len(r["response"]) for r in records if r["kept"] == (name == "kept")]
        if values:
            ax.hist(values, bins=30, alpha=0.6, label=f"{name} ({len(values)})", color=color)
    ax.set_xlabel("answer length (characters)")
    ax.set_ylabel("records")
    ax.set_title("Answer lengths")
    ax.legend()
    figs["self_align_lengths"] = fig

    for fig in figs.values():
        fig.tight_layout()
    if figures_dir is not None:
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
        for name, fig in figs.items():
            fig.savefig(Path(figures_dir) / f"{name}.png", dpi=120)
    return figs
