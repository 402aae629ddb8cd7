"""Stage 03 as library calls: the notebook runs these steps in order, with plots between them.

SALMON path: `sample` -> `judge` (in `judge_mode`) -> `aggregate` (+ `evaluate_judge` on the HHH
pairs and the flip probes). RLCD path: `rlcd` -> `aggregate`; `salmon+rlcd` runs both into one file.
ALMoST path: `almost_generate` -> `almost_compare`.
All write preferences.jsonl in one schema, so stage 04 consumes any. Each step adds its
section to preferences_stats.json; pairs, judgements and ALMoST answers are `RecordLog`s, so an
interrupted run resumes without redoing finished records.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Literal

from ..config import ConfigError, StageConfig
from ..io import RecordLog, atomic_write_json, iter_jsonl, read_json, write_jsonl
from .aggregate import AggregateOptions

# More shots and better demonstrations win (ALMoST's rules of thumb, on one model).
DEFAULT_RUBRIC = (("sft:detailed:3",), ("sft:detailed:1",), ("sft:plain:1",))
PROBABILITIES = ("p_continue", "p_negate", "disclaimer_p", "label_noise", "rule_label_noise", "swap_p")


@dataclasses.dataclass
class PreferencesConfig(AggregateOptions, StageConfig):
    method: Literal["salmon", "almost", "rlcd", "salmon+rlcd"] = "salmon"  # SALMON's principle judge, ALMoST's rubric comparisons, RLCD's pairs by construction, or SALMON and RLCD examples in one file
    model: str = "default"  # base model spec; the SFT adapter goes on top of it
    chat_format: str = "chatml"  # chat format of the model (salmon_lib.chat)
    backend: Literal["auto", "hf", "vllm"] = "auto"  # generation backend
    sft_adapter: str = "sft"  # SFT adapter folder, relative to run_dir (stage 02), "" uses the base model
    principles: str = "principles/judge.yaml"  # principle set judged under and drawn from
    max_prompts: int = 0  # use the first N prompts of prompts.jsonl (0: all)
    batch_size: int = 16  # prompts per generation call
    temperature: float = 0.7  # sampling temperature of the two answers per prompt
    top_p: float = 1.0  # nucleus sampling of the two answers
    max_new_tokens: int = 256  # answer length limit
    min_response_chars: int = 16  # a pair with a shorter answer is dropped
    judge_batch_pairs: int = 8  # pairs per scoring call (x 2 orders x principles prompts)
    judge_mode: Literal["pairwise", "contrastive", "likelihood", "pmi", "pointwise", "ensemble"] = "pairwise"  # how the judge reads a principle (preferences/judge_modes.py); pairwise is SALMON's
    judge_layout: Literal["system", "suffix"] = "system"  # contrastive mode: the principle as system prompt before the answer, or as a description after it
    judge_compare: bool = False  # also measure every judge mode's HHH accuracy and flip-probe sensitivity, side by side
    flip_probes: str = ""  # flip probes for the judge's principle sensitivity (empty: salmon_lib/reward/data/flip_probes.yaml)
    rlcd_temperature: float = 0.7  # RLCD answer sampling temperature (0: greedy)
    rlcd_candidates: int = 1  # RLCD: answers sampled per side; the one the contrastive score favours most for its side is kept
    rlcd_max_new_tokens: int = 256  # RLCD answer length limit
    rlcd_confirm: bool = False  # RLCD: keep only pairs whose contrastive margin is above rlcd_min_margin
    rlcd_min_margin: float = 0.0  # RLCD: the margin a confirmed pair needs
    debias: Literal["none", "mean_position", "content_free"] = "none"  # position-bias correction applied before aggregation
    hhh_path: str = "../shared/data/hhh_eval.json"  # HHH pairs for judge accuracy (evaluation only), "" skips it
    hhh_max_pairs: int = 0  # evaluate on a seeded sample of N HHH pairs (0: all)
    hhh_principles: dict[str, str] = dataclasses.field(default_factory=dict)  # HHH type -> principle name, default: the set's hhh_type
    almost_rubric: list[list[str]] = dataclasses.field(default_factory=lambda: [list(t) for t in DEFAULT_RUBRIC])  # tiers of "MODEL:DEMOS:SHOTS", best first, MODEL "sft" is `model` with the SFT adapter
    almost_temperature: float = 1.0  # ALMoST answer sampling temperature
    almost_top_p: float = 0.9  # ALMoST answer nucleus sampling
    almost_max_new_tokens: int = 256  # ALMoST answer length limit
    almost_length_filter: bool = True  # ALMoST's heuristic filter against short winners

    def check(self) -> None:
        for name in PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("draws_per_pair", "max_principles", "batch_size", "judge_batch_pairs", "max_new_tokens",
                     "rlcd_candidates", "rlcd_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rlcd_candidates > 1 and self.rlcd_temperature == 0:
            raise ConfigError("rlcd_candidates > 1 needs rlcd_temperature > 0: greedy decoding gives identical candidates")
        if self.method == "almost":
            from .almost import parse_rubric

            try:
                parse_rubric(self.almost_rubric)
            except ValueError as err:
                raise ConfigError(str(err)) from None

    # -- paths ------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return Path(self.run_dir) / name

    def adapter(self) -> str | None:
        if not self.sft_adapter:
            return None
        path = self.path(self.sft_adapter)
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(f"sft_adapter: {path} holds no LoRA adapter; run stage 02 (engrave) first, "
                              "or set sft_adapter = '' to sample and judge with the base model")
        return str(path)


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
        update_stats(cfg, "bad_prompt_records", errors[:20] + ([f"... {len(errors) - 20} more"] if len(errors) > 20 else []))
    return prompts[:cfg.max_prompts] if cfg.max_prompts else prompts


def load_principle_set(cfg: PreferencesConfig):
    from ..principles import load_principles

    return load_principles(_principles_path(cfg))


def _principles_path(cfg: PreferencesConfig) -> Path:
    path = Path(cfg.principles).expanduser()
    if not path.is_absolute() and not path.exists():  # a notebook's kernel starts in notebooks/
        path = Path(__file__).resolve().parents[2] / path
    return path


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
    pair and principle (no slots, so nothing to debias)."""
    from .judge import agreement_stats, content_free_bias, debias, judge_pairs, position_bias
    from .judge_modes import criteria_of, judge_pairs_likelihood

    ps = load_principle_set(cfg)
    log = RecordLog(cfg.path("judgements.jsonl"))
    if cfg.judge_mode != "pairwise":
        judge_pairs_likelihood(gen, _fmt(cfg), kept_pairs(cfg), criteria_of(ps), cfg.judge_mode, cfg.judge_layout,
                               adapter=cfg.adapter(), batch_pairs=cfg.judge_batch_pairs, log=log)
        return update_stats(cfg, "judge", {"mode": judge_key(cfg), **score_stats(judgements(cfg))})
    principles = judged_principles(ps)
    judge_pairs(gen, _fmt(cfg), kept_pairs(cfg), principles, adapter=cfg.adapter(),
                batch_pairs=cfg.judge_batch_pairs, log=log)
    raw = judgements(cfg)
    biases = {"mean_position": position_bias(raw),
              "content_free": content_free_bias(gen, _fmt(cfg), principles, adapter=cfg.adapter())}
    return update_stats(cfg, "judge", {
        "mode": "pairwise",
        "judgements": len(raw),
        "bias": biases,
        "agreement": {"none": agreement_stats(raw),
                      **{name: agreement_stats(debias(raw, b)) for name, b in biases.items()}},
    })


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
    """RLCD pairs: one answer under a drawn principle and one under its negation, per prompt."""
    from .rlcd import contrast_stats, generate_pairs

    log = RecordLog(cfg.path("rlcd.jsonl"))
    generate_pairs(gen, _fmt(cfg), load_prompts(cfg), load_principle_set(cfg), log, adapter=cfg.adapter(),
                   seed=cfg.seed, temperature=cfg.rlcd_temperature, top_p=cfg.top_p,
                   max_new_tokens=cfg.rlcd_max_new_tokens, candidates=cfg.rlcd_candidates,
                   min_chars=cfg.min_response_chars, batch_size=cfg.batch_size)
    return update_stats(cfg, "rlcd_contrast", contrast_stats(log.records()))


def aggregate(cfg: PreferencesConfig) -> dict:
    """preferences.jsonl from the method's sources: SALMON's aggregated judgements, RLCD's pairs, or both."""
    from .aggregate import aggregate as run, scale_scores
    from .judge import debias
    from .rlcd import examples as rlcd_examples

    out, examples = {"method": cfg.method}, []
    if "salmon" in cfg.method.split("+"):
        records = judgements(cfg)
        if cfg.debias != "none" and cfg.judge_mode == "pairwise":
            records = debias(records, read_json(cfg.path("preferences_stats.json"))["judge"]["bias"][cfg.debias])
        scores, variance = scale_scores(records, cfg.require_agreement)
        opts = AggregateOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(AggregateOptions)})
        salmon, stats = run(kept_pairs(cfg), scores, load_principle_set(cfg), opts, cfg.seed)
        examples += salmon
        out.update({"debias": cfg.debias if cfg.judge_mode == "pairwise" else "none", "variance": variance, **stats})
    if "rlcd" in cfg.method.split("+"):
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
    type (pairwise: with the debiasing tables, as before) and correct flips on the flip probes in
    their own wording and in the principle file's. Skipped parts say why."""
    from ..reward.evaluate import read_flip_probes, with_judge_wording
    from .hhh import evaluate, principles_for_types
    from .judge_modes import criteria_of
    from .signal import COMPARED, flip_sensitivity, hhh_accuracy

    keys = list(COMPARED) if cfg.judge_compare else [judge_key(cfg)]
    ps = load_principle_set(cfg)
    result: dict = {"modes": keys}
    items = hhh_items(cfg)
    if isinstance(items, str):
        update_stats(cfg, "hhh", {"skipped": items})
    else:
        names = principles_for_types([it["type"] for it in items], ps, cfg.hhh_principles)
        criteria = {t: criteria_of(ps, [n])[0] for t, (n, _) in names.items()}
        accuracy = hhh_accuracy(gen, _fmt(cfg), items, criteria, [k for k in keys if k != "pairwise"], adapter=cfg.adapter())
        hhh = {"path": str(cfg.hhh_path), "principles": {t: n for t, (n, _) in names.items()}, "mode": judge_key(cfg)}
        if "pairwise" in keys:  # SALMON's judge keeps its tables: raw, debiased, order agreement
            tables = evaluate(gen, _fmt(cfg), items, names, adapter=cfg.adapter())
            accuracy["pairwise"] = {"n": len(items), **{t: v["acc_both_orders"] for t, v in tables["none"].items()}}
            if cfg.judge_mode == "pairwise":
                hhh.update(tables)
        result["hhh"] = {k: accuracy[k] for k in keys}
        update_stats(cfg, "hhh", {**hhh, "accuracy": accuracy[judge_key(cfg)]})
    kinds = read_flip_probes(cfg.flip_probes or None)
    result["flips"] = {"probe_wording": flip_sensitivity(gen, _fmt(cfg), kinds, keys, adapter=cfg.adapter())}
    judge_wording = with_judge_wording(kinds, _principles_path(cfg))
    if judge_wording:
        result["flips"]["judge_wording"] = flip_sensitivity(gen, _fmt(cfg), judge_wording, keys, adapter=cfg.adapter())
    return update_stats(cfg, "signal", result)


def hhh_items(cfg: PreferencesConfig) -> list[dict] | str:
    """The (seeded sample of) HHH pairs, or why there are none."""
    from .hhh import load_hhh, resolve_path

    if not cfg.hhh_path:
        return "hhh_path is empty"
    path = resolve_path(cfg.hhh_path)
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
