"""Stage 03 as library calls: `run(cfg)` is the whole stage; the notebook runs the same steps one
by one, showing tables and figures between them.

SALMON path: `sample` -> `judge` (in `judge_mode`) -> `aggregate`. RLCD path: `rlcd` -> `aggregate`;
`salmon+rlcd` runs both into one file. Both end with `evaluate_judge`: the judge's signal on the HHH
pairs and the flip probes. ALMoST path: `almost_generate` -> `almost_compare`.
All write preferences.jsonl in one schema, so stage 04 consumes any. Each step adds its
section to preferences_stats.json and saves its figures under figures/; pairs, judgements and
ALMoST answers are `RecordLog`s, so an interrupted run resumes without redoing finished records.
"""

from __future__ import annotations

import dataclasses
import random

from ..io import RecordLog, atomic_write_json, iter_jsonl, read_json, write_jsonl
from .aggregate import AggregateOptions
from .config import PreferencesConfig


def run(cfg: PreferencesConfig) -> dict:
    """The whole stage, as the notebook runs it (figures saved, none shown); returns the content of
    preferences_stats.json."""
    import matplotlib.pyplot as plt

    if cfg.method != "almost":
        with open_generator(cfg) as gen:
            if "salmon" in sources(cfg):
                sample(cfg, gen)
                judge(cfg, gen)
            if "rlcd" in sources(cfg):
                rlcd(cfg, gen)
            aggregate(cfg)
            evaluate_judge(cfg, gen)
    else:
        almost_generate(cfg)
        almost_compare(cfg)
    plt.close("all")
    return read_json(cfg.path("preferences_stats.json"))


def sources(cfg: PreferencesConfig) -> list[str]:
    """Where the examples come from: ["salmon"], ["rlcd"] or both ("salmon+rlcd"); ALMoST is its own path."""
    return cfg.method.split("+")


def update_stats(cfg: PreferencesConfig, section: str, value) -> dict:
    path = cfg.path("preferences_stats.json")
    stats = read_json(path) if path.is_file() else {}
    stats[section] = value
    stats["config"] = cfg.to_dict()
    atomic_write_json(path, stats)
    return value


def open_generator(cfg: PreferencesConfig, model: str | None = None):
    from ..generation import make_generator
    from ..models import ModelConfig

    return make_generator(ModelConfig(spec=model or cfg.model, seed=cfg.seed), backend=cfg.backend)


def load_prompts(cfg: PreferencesConfig) -> list[dict]:
    errors: list[str] = []
    prompts = [{**rec, "id": str(rec["id"])} for _, rec in
               iter_jsonl(cfg.path("prompts.jsonl"), {"id": (str, int), "prompt": str}, errors)]
    if errors:
        update_stats(
            cfg, "bad_prompt_records", errors[:20] + ([f"... {len(errors) - 20} more"] if len(errors) > 20 else [])
        )
    return prompts[:cfg.max_prompts] if cfg.max_prompts else prompts


def load_principle_set(cfg: PreferencesConfig):
    from ..principles import load_principles

    return load_principles(cfg.file("principles"))


def judged_principles(ps) -> list[tuple[str, str]]:
    return [(p.name, p.text(False)) for p in ps.principles]


# -- SALMON ---------------------------------------------------------------------------------------
def sample(cfg: PreferencesConfig, gen) -> dict:
    from .sampling import pair_stats, sample_pairs

    log = RecordLog(cfg.path("pairs.jsonl"))
    sample_pairs(gen, _fmt(cfg), load_prompts(cfg), log, adapter=cfg.adapter(), seed=cfg.seed,
                 temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                 min_chars=cfg.min_response_chars, batch_size=cfg.batch_size)
    return update_stats(cfg, "pairs", pair_stats(log.records()))


def kept_pairs(cfg: PreferencesConfig) -> list[dict]:
    return [p for p in RecordLog(cfg.path("pairs.jsonl")).records() if not p["dropped"]]


def judge(cfg: PreferencesConfig, gen) -> dict:
    """Judge every kept pair under every principle. Pairwise: record order agreement raw and under
    each debiasing, so the stats show what the correction buys. Likelihood modes: one score per
    pair and principle (no slots, so nothing to debias). Saves the score distributions, the
    principles' correlation and (pairwise) the position bias under figures/."""
    from . import plots
    from .judge import agreement_stats, content_free_bias, debias, judge_pairs, position_bias
    from .judge_modes import criteria_of, judge_pairs_likelihood

    ps = load_principle_set(cfg)
    log = RecordLog(cfg.path("judgements.jsonl"))
    figures = cfg.path("figures")
    if cfg.judge_mode != "pairwise":
        judge_pairs_likelihood(gen, _fmt(cfg), kept_pairs(cfg), criteria_of(ps), cfg.judge_mode, cfg.judge_layout,
                               adapter=cfg.adapter(), batch_pairs=cfg.judge_batch_pairs, log=log)
        records = judgements(cfg)
        stats = update_stats(cfg, "judge", {"mode": judge_key(cfg), **score_stats(records)})
    else:
        principles = judged_principles(ps)
        judge_pairs(gen, _fmt(cfg), kept_pairs(cfg), principles, adapter=cfg.adapter(),
                    batch_pairs=cfg.judge_batch_pairs, log=log)
        records = judgements(cfg)
        biases = {"mean_position": position_bias(records),
                  "content_free": content_free_bias(gen, _fmt(cfg), principles, adapter=cfg.adapter())}
        stats = update_stats(cfg, "judge", {
            "mode": "pairwise",
            "judgements": len(records),
            "bias": biases,
            "agreement": {"none": agreement_stats(records),
                          **{name: agreement_stats(debias(records, b)) for name, b in biases.items()}},
        })
        plots.position_bias(stats["agreement"], figures / "judge_position_bias.png")
    plots.score_distributions(records, figures / "judge_scores.png")
    plots.principle_correlation(records, figures / "judge_principle_correlation.png")
    return stats


def judge_key(cfg: PreferencesConfig) -> str:
    from .judge_modes import judge_key as key

    return key(cfg.judge_mode, cfg.judge_layout)


def judgements(cfg: PreferencesConfig) -> list[dict]:
    """The judgements of the configured mode (a run that changed mode keeps the other mode's
    records in the file, under their own ids, and never mixes them in); ensemble records scaled."""
    from .judge_modes import combine

    key = judge_key(cfg)
    records = [j for j in RecordLog(cfg.path("judgements.jsonl")).records() if j.get("mode", "pairwise") == key]
    return combine(records) if key == "ensemble" and records else records


def score_stats(records: list[dict]) -> dict:
    """Per principle: how many pairs, the mean and RMS score, and how often response 1 wins."""
    by: dict[str, list[float]] = {}
    for j in records:
        by.setdefault(j["principle"], []).append(j["s12"])
    return {"judgements": len(records), "by_principle": {
        name: {"n": len(v), "mean": sum(v) / len(v), "rms": (sum(x * x for x in v) / len(v)) ** 0.5,
               "response_1_wins": sum(x > 0 for x in v) / len(v)} for name, v in sorted(by.items())}}


def rlcd(cfg: PreferencesConfig, gen) -> dict:
    """RLCD pairs: one answer under a drawn principle and one under its negation, per prompt; the
    contrast per principle (figures/rlcd_contrast.png)."""
    from . import plots
    from .rlcd import contrast_stats, generate_pairs

    log = RecordLog(cfg.path("rlcd.jsonl"))
    generate_pairs(gen, _fmt(cfg), load_prompts(cfg), load_principle_set(cfg), log, adapter=cfg.adapter(),
                   seed=cfg.seed, temperature=cfg.rlcd_temperature, top_p=cfg.top_p,
                   max_new_tokens=cfg.rlcd_max_new_tokens, candidates=cfg.rlcd_candidates,
                   min_chars=cfg.min_response_chars, batch_size=cfg.batch_size)
    stats = update_stats(cfg, "rlcd_contrast", contrast_stats(log.records()))
    if stats["by_principle"]:
        plots.rlcd_contrast(stats, cfg.path("figures") / "rlcd_contrast.png")
    return stats


def aggregate(cfg: PreferencesConfig) -> dict:
    """preferences.jsonl from the method's sources: SALMON's aggregated judgements, RLCD's pairs, or both."""
    from .aggregate import aggregate as run
    from .aggregate import scale_scores
    from .judge import debias
    from .rlcd import examples as rlcd_examples

    out, examples = {"method": cfg.method}, []
    if "salmon" in sources(cfg):
        records = judgements(cfg)
        if cfg.debias != "none" and cfg.judge_mode == "pairwise":
            records = debias(records, read_json(cfg.path("preferences_stats.json"))["judge"]["bias"][cfg.debias])
        scores, variance = scale_scores(records, cfg.require_agreement)
        opts = AggregateOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(AggregateOptions)})
        salmon, stats = run(kept_pairs(cfg), scores, load_principle_set(cfg), opts, cfg.seed)
        examples += salmon
        out.update({"debias": cfg.debias if cfg.judge_mode == "pairwise" else "none", "variance": variance, **stats})
    if "rlcd" in sources(cfg):
        rlcd, stats = rlcd_examples(RecordLog(cfg.path("rlcd.jsonl")).records(), load_principle_set(cfg),
                                    confirm=cfg.rlcd_confirm, min_margin=cfg.rlcd_min_margin, seed=cfg.seed,
                                    swap_p=cfg.swap_p)
        examples += rlcd
        out["rlcd"] = stats
    write_jsonl(cfg.path("preferences.jsonl"), examples)
    out["examples_written"] = len(examples)
    return update_stats(cfg, "aggregate", out)


def evaluate_judge(cfg: PreferencesConfig, gen) -> dict:
    """The judge's signal in the mode in use (every mode with `judge_compare`): HHH accuracy per
    type (pairwise: with its debiasing tables, as before) and correct flips on the flip probes in
    their own wording and in the principle file's. Writes the `hhh` and `signal` sections and their
    figures; skipped parts say why."""
    from ..reward.evaluate import read_flip_probes, with_judge_wording
    from . import plots
    from .hhh import evaluate, principles_for_types
    from .judge_modes import criteria_of
    from .signal import COMPARED, flip_sensitivity, hhh_accuracy, table

    keys = list(COMPARED) if cfg.judge_compare else [judge_key(cfg)]
    ps = load_principle_set(cfg)
    result: dict = {"modes": keys}
    items = hhh_items(cfg)
    if isinstance(items, str):
        update_stats(cfg, "hhh", {"skipped": items})
    else:
        names = principles_for_types([it["type"] for it in items], ps, cfg.hhh_principles)
        criteria = {t: criteria_of(ps, [n])[0] for t, (n, _) in names.items()}
        likelihood = [k for k in keys if k != "pairwise"]
        accuracy = hhh_accuracy(gen, _fmt(cfg), items, criteria, likelihood, adapter=cfg.adapter())
        hhh = {"principles": {t: n for t, (n, _) in names.items()}, "mode": judge_key(cfg)}
        if "pairwise" in keys:  # SALMON's judge keeps its tables: raw, debiased, order agreement
            tables = evaluate(gen, _fmt(cfg), items, names, adapter=cfg.adapter())
            accuracy["pairwise"] = {"n": len(items), **{t: v["acc_both_orders"] for t, v in tables["none"].items()}}
            if cfg.judge_mode == "pairwise":
                hhh.update(tables)
                plots.hhh_accuracy(hhh, cfg.path("figures") / "judge_hhh_accuracy.png")
        result["hhh"] = {k: accuracy[k] for k in keys}
        update_stats(cfg, "hhh", {**hhh, "accuracy": accuracy[judge_key(cfg)]})
    kinds = read_flip_probes(cfg.file("flip_probes") if cfg.flip_probes else None)
    result["flips"] = {"probe_wording": flip_sensitivity(gen, _fmt(cfg), kinds, keys, adapter=cfg.adapter())}
    judge_wording = with_judge_wording(kinds, cfg.file("principles"))
    if judge_wording:
        result["flips"]["judge_wording"] = flip_sensitivity(gen, _fmt(cfg), judge_wording, keys, adapter=cfg.adapter())
    stats = update_stats(cfg, "signal", result)
    plots.judge_signal(table(stats), cfg.path("figures") / "judge_signal.png")
    return stats


def hhh_items(cfg: PreferencesConfig) -> list[dict] | str:
    """The (seeded sample of) HHH pairs, or why there are none."""
    from ..paths import find_file
    from .hhh import load_hhh

    if not cfg.hhh_path:
        return "hhh_path is empty"
    path = find_file(cfg.hhh_path, beside_project=True)  # the data lives beside the checkout, not in it
    if path is None:
        return f"{cfg.hhh_path} not found (the project ships no copy; point hhh_path at your own hhh_eval.json)"
    items = load_hhh(path)
    if cfg.hhh_max_pairs and cfg.hhh_max_pairs < len(items):  # a seeded sample keeps every type represented
        items = sorted(random.Random(cfg.seed).sample(items, cfg.hhh_max_pairs), key=lambda it: int(it["id"][4:]))
    return items


# -- ALMoST ---------------------------------------------------------------------------------------
def almost_generate(cfg: PreferencesConfig) -> dict:
    """Answer every prompt under every rubric configuration (one model load per model spec)."""
    from .almost import generate_responses, load_demos, parse_rubric

    prompts, demos = load_prompts(cfg), load_demos()
    rubric = parse_rubric(cfg.almost_rubric)
    by_model: dict[str, list] = {}
    for conf, _ in rubric:
        by_model.setdefault(cfg.model if conf.model == "sft" else conf.model, []).append(conf)
    for model, confs in by_model.items():
        with open_generator(cfg, model) as gen:
            for conf in confs:
                generate_responses(gen, _fmt(cfg), prompts, conf, demos,
                                   adapter=cfg.adapter() if conf.model == "sft" else None,
                                   temperature=cfg.almost_temperature, top_p=cfg.almost_top_p,
                                   max_new_tokens=cfg.almost_max_new_tokens, seed=cfg.seed,
                                   log=RecordLog(cfg.path(f"almost/{conf.name}.jsonl")), batch_size=cfg.batch_size)
    return almost_responses(cfg)


def almost_responses(cfg: PreferencesConfig) -> dict[str, dict[str, dict]]:
    from .almost import parse_rubric

    return {conf.name: {r["id"]: r for r in RecordLog(cfg.path(f"almost/{conf.name}.jsonl")).records()}
            for conf, _ in parse_rubric(cfg.almost_rubric)}


def almost_compare(cfg: PreferencesConfig) -> dict:
    from .almost import comparisons, parse_rubric

    examples, stats = comparisons(load_prompts(cfg), almost_responses(cfg), parse_rubric(cfg.almost_rubric),
                                  cfg.almost_length_filter)
    write_jsonl(cfg.path("preferences.jsonl"), examples)
    return update_stats(cfg, "almost", stats)


def _fmt(cfg: PreferencesConfig):
    from ..chat import get_format

    return get_format(cfg.chat_format)
