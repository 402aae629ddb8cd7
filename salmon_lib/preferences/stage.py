"""Stage 03 as library calls: `run(cfg)` is the whole stage; the notebook runs the same steps one
by one, showing tables and figures between them.

SALMON path: `sample` -> `judge` -> `aggregate` (+ `evaluate_judge` on the HHH pairs).
ALMoST path: `almost_generate` -> `almost_compare`.
Both write preferences.jsonl in one schema, so stage 04 consumes either. Each step adds its
section to preferences_stats.json and saves its figures under figures/. The model is prompted as
stage 02 trained it (`prompting`: sft/chat_format.json). Pairs, judgements and ALMoST answers are
`RecordLog`s whose records carry the signature of what produced them (the rendered prompt, the
model and the content of sft/, the sampling settings, the seed): a rerun makes again exactly the
records whose signature changed, an interrupted run resumes without redoing finished ones, and only
the current records of this run's prompts (`max_prompts`) are judged and aggregated.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..chat import ChatFormat
from ..io import DataError, RecordLog, atomic_write_json, iter_jsonl, read_json, write_jsonl
from .aggregate import AggregateOptions
from .config import PreferencesConfig


@dataclasses.dataclass(frozen=True)
class Prompting:
    """How the stage prompts its model: `render(user)` is the generation prompt, `fmt` the chat
    format the judge and ALMoST's few-shot prompts are rendered in, `model` what the records'
    signatures name (the base spec and the content hash of the adapter)."""

    fmt: ChatFormat
    render: Callable[[str], str]
    model: dict


def prompting(cfg: PreferencesConfig) -> Prompting:
    """The SFT model exactly as stage 02 trained it (sft/chat_format.json: chat format, system
    prompt); with use_sft: false, the base model in `chat_format` (chatml when unset)."""
    from ..chat import get_format
    from ..engrave.format import chat_spec_for
    from ..provenance import content_hash

    if cfg.use_sft:
        adapter = cfg.adapter()
        spec = chat_spec_for(adapter, cfg.chat_format)
        return Prompting(spec.format, spec.prompt, {"model": cfg.model, "adapter": content_hash(adapter)})
    fmt = get_format(cfg.chat_format or "chatml")
    return Prompting(fmt, fmt.prompt, {"model": cfg.model, "adapter": None})


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
    if not prompts:
        raise DataError(f"{cfg.path('prompts.jsonl')}: no prompts to answer"
                        + (f" ({len(errors)} bad line(s), e.g. {errors[0]})" if errors else " (the file is empty)"))
    return prompts[:cfg.max_prompts] if cfg.max_prompts else prompts


def load_principle_set(cfg: PreferencesConfig):
    from ..principles import load_principles

    return load_principles(cfg.file("principles"))


def judged_principles(ps) -> list[tuple[str, str]]:
    return [(p.name, p.text(False)) for p in ps.principles]


# -- SALMON ---------------------------------------------------------------------------------------
def pair_signatures(cfg: PreferencesConfig, pr: Prompting) -> dict[str, str]:
    """{pair id: signature} of this run's prompts."""
    from .sampling import pair_signatures as signatures

    settings = {**pr.model, "temperature": cfg.temperature, "top_p": cfg.top_p,
                "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    return signatures(load_prompts(cfg), pr.render, settings)


def sample(cfg: PreferencesConfig, gen) -> dict:
    from .sampling import pair_stats, sample_pairs

    pr = prompting(cfg)
    log, wanted = RecordLog(cfg.path("pairs.jsonl")), pair_signatures(cfg, pr)
    sample_pairs(gen, pr.render, pr.fmt.stop, load_prompts(cfg), log, wanted, adapter=cfg.adapter(), seed=cfg.seed,
                 temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                 batch_size=cfg.batch_size)
    return update_stats(cfg, "pairs", pair_stats(log.records(wanted), cfg.min_response_chars))


def kept_pairs(cfg: PreferencesConfig, pr: Prompting | None = None) -> list[dict]:
    """The current pairs of this run's prompts that go to the judge (not too short, not identical)."""
    from .sampling import drop_reason

    pairs = RecordLog(cfg.path("pairs.jsonl")).records(pair_signatures(cfg, pr or prompting(cfg)))
    return [p for p in pairs if drop_reason(p, cfg.min_response_chars) is None]


def _judgement_plan(cfg: PreferencesConfig, pr: Prompting):
    """(kept pairs, judged principles, {judgement id: signature})."""
    from .judge import judgement_signatures

    pairs, principles = kept_pairs(cfg, pr), judged_principles(load_principle_set(cfg))
    return pairs, principles, judgement_signatures(pr.fmt, pairs, principles, pr.model)


def judgements(cfg: PreferencesConfig) -> tuple[list[dict], list[dict]]:
    """(kept pairs, their current judgements under every principle)."""
    pairs, _, wanted = _judgement_plan(cfg, prompting(cfg))
    return pairs, RecordLog(cfg.path("judgements.jsonl")).records(wanted)


def judge(cfg: PreferencesConfig, gen) -> dict:
    """Judge every kept pair under every principle; record order agreement raw and under each
    debiasing, so the stats show what the correction buys. Saves the score distributions, the
    position bias and the principles' correlation under figures/."""
    from . import plots
    from .judge import agreement_stats, content_free_bias, debias, judge_pairs, position_bias

    pr = prompting(cfg)
    pairs, principles, wanted = _judgement_plan(cfg, pr)
    log = RecordLog(cfg.path("judgements.jsonl"))
    judge_pairs(gen, pr.fmt, pairs, principles, adapter=cfg.adapter(), batch_pairs=cfg.judge_batch_pairs, log=log,
                signatures=wanted)
    raw = log.records(wanted)
    biases = {"mean_position": position_bias(raw),
              "content_free": content_free_bias(gen, pr.fmt, principles, adapter=cfg.adapter())}
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

    pairs, judged = judgements(cfg)
    if cfg.debias != "none":
        judged = debias(judged, read_json(cfg.path("preferences_stats.json"))["judge"]["bias"][cfg.debias])
    scores, variance = scale_scores(judged, cfg.require_agreement)
    opts = AggregateOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(AggregateOptions)})
    examples, stats = run(pairs, scores, load_principle_set(cfg), opts, cfg.seed)
    write_jsonl(cfg.path("preferences.jsonl"), examples)
    return update_stats(cfg, "aggregate", {"debias": cfg.debias, "variance": variance, **stats})


def evaluate_judge(cfg: PreferencesConfig, gen) -> dict:
    """Judge accuracy on the HHH pairs (and its figure under figures/), or the reason it was skipped."""
    from ..hhh import hhh_source, load_hhh, sample_hhh
    from . import plots
    from .hhh import evaluate, principles_for_types

    source, skipped = hhh_source(cfg.hhh_path)
    if source is None:
        return update_stats(cfg, "hhh", {"skipped": skipped})
    items = sample_hhh(load_hhh(source), cfg.hhh_max_pairs, cfg.seed)
    principles = principles_for_types([it["type"] for it in items], load_principle_set(cfg), cfg.hhh_principles)
    result = evaluate(gen, prompting(cfg).fmt, items, principles, adapter=cfg.adapter())
    stats = update_stats(cfg, "hhh", {"path": source, "principles": {t: n for t, (n, _) in principles.items()},
                                      **result})
    plots.hhh_accuracy(stats, cfg.path("figures") / "judge_hhh_accuracy.png")
    return stats


# -- ALMoST ---------------------------------------------------------------------------------------
def _almost_settings(cfg: PreferencesConfig, pr: Prompting, conf) -> dict:
    """What an answer of configuration `conf` is made with ("sft": `model` with the run's adapter)."""
    sft = conf.model == "sft"
    return {"model": cfg.model if sft else conf.model, "adapter": pr.model["adapter"] if sft else None,
            "temperature": cfg.almost_temperature, "top_p": cfg.almost_top_p,
            "max_new_tokens": cfg.almost_max_new_tokens, "seed": cfg.seed}


def almost_generate(cfg: PreferencesConfig) -> dict:
    """Answer every prompt under every rubric configuration (one model load per model spec)."""
    from .almost import generate_responses, load_demos, parse_rubric, response_signatures

    prompts, demos, pr = load_prompts(cfg), load_demos(), prompting(cfg)
    rubric = parse_rubric(cfg.almost_rubric)
    by_model: dict[str, list] = {}
    for conf, _ in rubric:
        by_model.setdefault(cfg.model if conf.model == "sft" else conf.model, []).append(conf)
    for model, confs in by_model.items():
        with open_generator(cfg, model) as gen:
            for conf in confs:
                wanted = response_signatures(pr.fmt, prompts, conf, demos, _almost_settings(cfg, pr, conf))
                generate_responses(gen, pr.fmt, prompts, conf, demos, wanted,
                                   adapter=cfg.adapter() if conf.model == "sft" else None,
                                   temperature=cfg.almost_temperature, top_p=cfg.almost_top_p,
                                   max_new_tokens=cfg.almost_max_new_tokens, seed=cfg.seed,
                                   log=RecordLog(cfg.path(f"almost/{conf.name}.jsonl")), batch_size=cfg.batch_size)
    return almost_responses(cfg)


def almost_responses(cfg: PreferencesConfig) -> dict[str, dict[str, dict]]:
    """{configuration: {prompt id: answer}}: the current answers to this run's prompts."""
    from .almost import load_demos, parse_rubric, response_signatures

    prompts, demos, pr = load_prompts(cfg), load_demos(), prompting(cfg)
    out = {}
    for conf, _ in parse_rubric(cfg.almost_rubric):
        wanted = response_signatures(pr.fmt, prompts, conf, demos, _almost_settings(cfg, pr, conf))
        out[conf.name] = {r["id"]: r for r in RecordLog(cfg.path(f"almost/{conf.name}.jsonl")).records(wanted)}
    return out


def almost_compare(cfg: PreferencesConfig) -> dict:
    from .almost import comparisons, parse_rubric

    examples, stats = comparisons(load_prompts(cfg), almost_responses(cfg), parse_rubric(cfg.almost_rubric),
                                  cfg.almost_length_filter)
    write_jsonl(cfg.path("preferences.jsonl"), examples)
    return update_stats(cfg, "almost", stats)
