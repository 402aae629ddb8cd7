"""Stage 03 as library calls: `run(cfg)` is the whole stage; the notebook runs the same steps one
by one, showing tables and figures between them.

SALMON path: `sample` -> `judge` -> `aggregate` (+ `evaluate_judge` on the HHH pairs).
ALMoST path: `almost_generate` -> `almost_compare`.
Both write preferences.jsonl in one schema, so stage 04 consumes either. Each step adds its
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

    if cfg.method == "salmon":
        with open_generator(cfg) as gen:
            sample(cfg, gen)
            judge(cfg, gen)
            aggregate(cfg)
            evaluate_judge(cfg, gen)
    else:
        almost_generate(cfg)
        almost_compare(cfg)
    plt.close("all")
    return read_json(cfg.path("preferences_stats.json"))


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
    """Judge every kept pair under every principle; record order agreement raw and under each
    debiasing, so the stats show what the correction buys. Saves the score distributions, the
    position bias and the principles' correlation under figures/."""
    from . import plots
    from .judge import agreement_stats, content_free_bias, debias, judge_pairs, position_bias

    ps = load_principle_set(cfg)
    principles = judged_principles(ps)
    log = RecordLog(cfg.path("judgements.jsonl"))
    judge_pairs(gen, _fmt(cfg), kept_pairs(cfg), principles, adapter=cfg.adapter(),
                batch_pairs=cfg.judge_batch_pairs, log=log)
    raw = log.records()
    biases = {"mean_position": position_bias(raw),
              "content_free": content_free_bias(gen, _fmt(cfg), principles, adapter=cfg.adapter())}
    stats = update_stats(cfg, "judge", {
        "judgements": len(raw),
        "bias": biases,
        "agreement": {"none": agreement_stats(raw),
                      **{name: agreement_stats(debias(raw, b)) for name, b in biases.items()}},
    })
    figures = cfg.path("figures")
    plots.score_distributions(raw, figures / "judge_scores.png")
    plots.position_bias(stats["agreement"], figures / "judge_position_bias.png")
    plots.principle_correlation(raw, figures / "judge_principle_correlation.png")
    return stats


def aggregate(cfg: PreferencesConfig) -> dict:
    from .aggregate import aggregate as run
    from .aggregate import scale_scores
    from .judge import debias

    judgements = RecordLog(cfg.path("judgements.jsonl")).records()
    if cfg.debias != "none":
        judgements = debias(judgements, read_json(cfg.path("preferences_stats.json"))["judge"]["bias"][cfg.debias])
    scores, variance = scale_scores(judgements, cfg.require_agreement)
    opts = AggregateOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(AggregateOptions)})
    examples, stats = run(kept_pairs(cfg), scores, load_principle_set(cfg), opts, cfg.seed)
    write_jsonl(cfg.path("preferences.jsonl"), examples)
    return update_stats(cfg, "aggregate", {"debias": cfg.debias, "variance": variance, **stats})


def evaluate_judge(cfg: PreferencesConfig, gen) -> dict:
    """Judge accuracy on the HHH pairs (and its figure under figures/), or the reason it was skipped."""
    from ..paths import find_file
    from . import plots
    from .hhh import evaluate, load_hhh, principles_for_types

    if not cfg.hhh_path:
        return update_stats(cfg, "hhh", {"skipped": "hhh_path is empty"})
    path = find_file(cfg.hhh_path, beside_project=True)  # the data lives beside the checkout, not in it
    if path is None:
        return update_stats(cfg, "hhh", {"skipped": f"{cfg.hhh_path} not found (the project ships no copy; "
                                                    "point hhh_path at your own hhh_eval.json)"})
    items = load_hhh(path)
    if cfg.hhh_max_pairs and cfg.hhh_max_pairs < len(items):  # a seeded sample keeps every type represented
        items = sorted(random.Random(cfg.seed).sample(items, cfg.hhh_max_pairs), key=lambda it: int(it["id"][4:]))
    principles = principles_for_types([it["type"] for it in items], load_principle_set(cfg), cfg.hhh_principles)
    result = evaluate(gen, _fmt(cfg), items, principles, adapter=cfg.adapter())
    stats = update_stats(cfg, "hhh", {"path": str(path), "principles": {t: n for t, (n, _) in principles.items()},
                                      **result})
    plots.hhh_accuracy(stats, cfg.path("figures") / "judge_hhh_accuracy.png")
    return stats


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
