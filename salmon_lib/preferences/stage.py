"""Stage 03 as library calls: `run(cfg)` is the whole stage, for the runner, the tests and the
notebook alike (which then shows `tables` of preferences_stats.json and the saved figures).

SALMON path: `sample` -> `judge` (in `judge_mode`) -> `aggregate`. RLCD path: `rlcd` -> `aggregate`;
`salmon+rlcd` runs both into one file. Both end with `evaluate_judge`: the judge's signal on the HHH
pairs and the flip probes. ALMoST path: `almost_generate` -> `almost_compare`.
All write preferences.jsonl in one schema, so stage 04 consumes any. Each step adds its section to
preferences_stats.json and saves its figures under figures/. The model is prompted as stage 02
trained it (`prompting`: sft/chat_format.json). Pairs, judgements, RLCD pairs and ALMoST answers
are `RecordLog`s whose records carry the signature of what produced them (the rendered prompt, the
model and the content of sft/, the sampling settings, the seed): a rerun makes again exactly the
records whose signature changed, an interrupted run resumes without redoing finished ones, and only
the current records of this run's prompts (`max_prompts`) are judged and aggregated.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..chat_format import ChatFormat
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
    from ..chat_format import get_format
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
    from ..generation.score_cache import run_score_cache
    from ..models import ModelConfig

    # The SFT adapter the stage will pass, so that vLLM is checked and tried with it at start. A
    # missing one is reported when the stage asks for it (`cfg.adapter()`), not on opening.
    sft = cfg.path("sft") if cfg.use_sft and model in (None, cfg.model) else None
    adapters = [str(sft)] if sft is not None and (sft / "adapter_config.json").is_file() else []
    return make_generator(ModelConfig(spec=model or cfg.model, seed=cfg.seed), backend=cfg.backend, adapters=adapters,
                          score_cache=run_score_cache(cfg.run_dir), processes=cfg.generation_processes)


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


def _likelihood_plan(cfg: PreferencesConfig, pr: Prompting):
    """(kept pairs, criteria, {judgement id: signature}) for the likelihood judge modes."""
    from ..scoring.judge_modes import criteria_of, likelihood_signatures

    pairs, criteria = kept_pairs(cfg, pr), criteria_of(load_principle_set(cfg))
    return pairs, criteria, likelihood_signatures(pr.fmt, pairs, criteria, judge_key(cfg), cfg.judge_layout, pr.model)


def judge(cfg: PreferencesConfig, gen) -> dict:
    """Judge every kept pair under every principle. Pairwise: record order agreement raw and under
    each debiasing, so the stats show what the correction buys. Likelihood modes: one score per
    pair and principle (no slots, so nothing to debias). Saves the score distributions, the
    principles' correlation and (pairwise) the position bias under figures/."""
    from ..scoring.judge_modes import judge_pairs_likelihood
    from . import plots
    from .judge import agreement_stats, content_free_bias, debias, judge_pairs, position_bias

    pr = prompting(cfg)
    log = RecordLog(cfg.path("judgements.jsonl"))
    figures = cfg.path("figures")
    if cfg.judge_mode != "pairwise":
        pairs, criteria, wanted = _likelihood_plan(cfg, pr)
        judge_pairs_likelihood(gen, pr.fmt, pairs, criteria, cfg.judge_mode, cfg.judge_layout, adapter=cfg.adapter(),
                               batch_pairs=cfg.judge_batch_pairs, log=log, signatures=wanted)
        records = judgements(cfg)
        stats = update_stats(cfg, "judge", {"mode": judge_key(cfg), **score_stats(records)})
    else:
        pairs, principles, wanted = _judgement_plan(cfg, pr)
        judge_pairs(gen, pr.fmt, pairs, principles, adapter=cfg.adapter(), batch_pairs=cfg.judge_batch_pairs,
                    log=log, signatures=wanted)
        records = log.records(wanted)
        biases = {"mean_position": position_bias(records),
                  "content_free": content_free_bias(gen, pr.fmt, principles, adapter=cfg.adapter())}
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
    from ..scoring.judge_modes import judge_key as key

    return key(cfg.judge_mode, cfg.judge_layout)


def judgements(cfg: PreferencesConfig) -> list[dict]:
    """The current judgements of this run's kept pairs in the configured mode (records of another
    mode stay in the file under their own ids and are never mixed in); ensemble records scaled."""
    from ..scoring.judge_modes import combine

    pr = prompting(cfg)
    plan = _judgement_plan if cfg.judge_mode == "pairwise" else _likelihood_plan
    records = RecordLog(cfg.path("judgements.jsonl")).records(plan(cfg, pr)[2])
    return combine(records) if judge_key(cfg) == "ensemble" and records else records


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

    pr = prompting(cfg)
    log = RecordLog(cfg.path("rlcd.jsonl"))
    generate_pairs(gen, pr.fmt, load_prompts(cfg), load_principle_set(cfg), log, rlcd_signatures(cfg, pr),
                   adapter=cfg.adapter(), seed=cfg.seed, temperature=cfg.rlcd_temperature, top_p=cfg.top_p,
                   max_new_tokens=cfg.rlcd_max_new_tokens, candidates=cfg.rlcd_candidates,
                   min_chars=cfg.min_response_chars, batch_size=cfg.batch_size)
    stats = update_stats(cfg, "rlcd_contrast", contrast_stats(rlcd_records(cfg, pr)))
    if stats["by_principle"]:
        plots.rlcd_contrast(stats, cfg.path("figures") / "rlcd_contrast.png")
    return stats


def rlcd_signatures(cfg: PreferencesConfig, pr: Prompting) -> dict[str, str]:
    """{RLCD record id: signature} of this run's prompts."""
    from .rlcd import pair_signatures as signatures

    settings = {**pr.model, "temperature": cfg.rlcd_temperature, "top_p": cfg.top_p,
                "max_new_tokens": cfg.rlcd_max_new_tokens, "candidates": cfg.rlcd_candidates,
                "min_chars": cfg.min_response_chars}
    return signatures(pr.fmt, load_prompts(cfg), load_principle_set(cfg), cfg.seed, settings)


def rlcd_records(cfg: PreferencesConfig, pr: Prompting | None = None) -> list[dict]:
    """The current RLCD pairs of this run's prompts."""
    return RecordLog(cfg.path("rlcd.jsonl")).records(rlcd_signatures(cfg, pr or prompting(cfg)))


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
        rlcd, stats = rlcd_examples(rlcd_records(cfg), load_principle_set(cfg), confirm=cfg.rlcd_confirm,
                                    min_margin=cfg.rlcd_min_margin)
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
    from ..scoring.flip_probes import read_flip_probes, with_judge_wording
    from ..scoring.judge_modes import criteria_of
    from . import plots
    from .judge_accuracy import evaluate, principles_for_types
    from .signal import COMPARED, flip_sensitivity, hhh_accuracy, table

    keys = list(COMPARED) if cfg.judge_compare else [judge_key(cfg)]
    ps, fmt = load_principle_set(cfg), prompting(cfg).fmt
    result: dict = {"modes": keys}
    items = hhh_items(cfg)
    if isinstance(items, str):
        update_stats(cfg, "hhh", {"skipped": items})
    else:
        names = principles_for_types([it["type"] for it in items], ps, cfg.hhh_principles)
        criteria = {t: criteria_of(ps, [n])[0] for t, (n, _) in names.items()}
        likelihood = [k for k in keys if k != "pairwise"]
        accuracy = hhh_accuracy(gen, fmt, items, criteria, likelihood, adapter=cfg.adapter())
        hhh = {"principles": {t: n for t, (n, _) in names.items()}, "mode": judge_key(cfg)}
        if "pairwise" in keys:  # SALMON's judge keeps its tables: raw, debiased, order agreement
            tables = evaluate(gen, fmt, items, names, adapter=cfg.adapter())
            accuracy["pairwise"] = {"n": len(items), **{t: v["acc_both_orders"] for t, v in tables["none"].items()}}
            if cfg.judge_mode == "pairwise":
                hhh.update(tables)
                plots.hhh_accuracy(hhh, cfg.path("figures") / "judge_hhh_accuracy.png")
        result["hhh"] = {k: accuracy[k] for k in keys}
        update_stats(cfg, "hhh", {**hhh, "accuracy": accuracy[judge_key(cfg)]})
    kinds = read_flip_probes(cfg.file("flip_probes") if cfg.flip_probes else None)
    result["flips"] = {"probe_wording": flip_sensitivity(gen, fmt, kinds, keys, adapter=cfg.adapter())}
    judge_wording = with_judge_wording(kinds, cfg.file("principles"))
    if judge_wording:
        result["flips"]["judge_wording"] = flip_sensitivity(gen, fmt, judge_wording, keys, adapter=cfg.adapter())
    stats = update_stats(cfg, "signal", result)
    plots.judge_signal(table(stats), cfg.path("figures") / "judge_signal.png")
    return stats


def hhh_items(cfg: PreferencesConfig) -> list[dict] | str:
    """The (seeded sample of) HHH pairs, or why there are none."""
    from ..hhh_data import hhh_source, load_hhh, sample_hhh

    source, skipped = hhh_source(cfg.hhh_path)
    return skipped if source is None else sample_hhh(load_hhh(source), cfg.hhh_max_pairs, cfg.seed)


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
