"""Stage 06 as library calls: `run(cfg)` does every step; the notebook shows the results.

Steps: `prepare` (prompts, principle sets) -> `train_controllability_arms` (stage 05's code, one arm
per set and seed) -> `controllability_experiment` (the registered endpoint, every seed's arms) ->
`collect_answers` (every policy answers through the generation interface; SFT's best-of-N
candidates for the preview; HHH likelihoods; KL to SFT; the optional judge) -> `measure` (behaviour)
-> `score` (reward per principle, RL-time draw, each set) -> `report.write` (report.json,
samples.jsonl, figures, report.html).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path

from ..config import ConfigError
from ..generation.score_cache import run_score_cache
from ..io import RecordLog
from .config import EvaluateConfig
from .controllability import SET_PREFIX, arm_config, train_arms
from .experiment import arm_name, run_endpoint, seed_list
from .policies import ANSWERS, Policy, Sampling, answer, discover, open_generator
from .prompts import EvalPrompt, eval_prompts
from .rewards import RL_DRAW, PrincipleSource, draw_settings, fixed, principle_columns, score_table

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Evaluation:
    """Everything stage 06 measured, per policy and prompt, in prompt order."""

    prompts: list[EvalPrompt]
    prompt_source: str  # "heldout" (stage 05's slice) or "unused" (no rl_prompts.json)
    rl_draw: PrincipleSource  # stage 05's RL-time draw
    sources: list[PrincipleSource]  # the controllability sets
    notes: list[str] = dataclasses.field(default_factory=list)  # caveats the report must state
    seed_arms: dict[int, dict[str, str]] = dataclasses.field(default_factory=dict)  # seed -> set -> arm folder name
    arm_stats: dict[int, dict[str, dict]] = dataclasses.field(default_factory=dict)  # seed -> set -> train_arm's stats
    experiment: dict = dataclasses.field(default_factory=dict)  # experiment.run_endpoint's result ({}: not run)
    policies: list[Policy] = dataclasses.field(default_factory=list)
    answers: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # policy -> one sample per prompt
    candidates: list[list[dict]] = dataclasses.field(default_factory=list)  # SFT's preview candidates per prompt
    # {"items": [...], policy: [correct per pair]} or {"skipped": why}
    hhh: dict = dataclasses.field(default_factory=dict)
    # policy -> [{s12, s21, agree}] per prompt, or {"skipped": why}
    judge: dict = dataclasses.field(default_factory=dict)
    measures: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # policy -> per-answer measures
    kl: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # policy -> KL to SFT per answer (nats)
    columns: dict[str, str] = dataclasses.field(default_factory=dict)  # principle label -> text
    # policy -> column -> score per prompt
    scores: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    # set -> per prompt -> score per candidate
    preview_scores: dict[str, list[list[float]]] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def policy(self, name: str) -> Policy:
        return next(p for p in self.policies if p.name == name)

    @property
    def arms(self) -> dict[str, dict]:
        """train_arm's stats per set for the first seed, whose arms the stage's other comparisons use."""
        return next(iter(self.arm_stats.values()), {})


@contextlib.contextmanager
def _timed(timings: dict, name: str):
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 2)


def prepare(cfg: EvaluateConfig) -> Evaluation:
    prompts, source = eval_prompts(cfg.run_dir, cfg.max_prompts, cfg.probes, cfg.max_probes)
    rl = draw_settings(cfg.run_dir, cfg.seed)
    sources = [PrincipleSource.from_spec(name, spec, rl) for name, spec in cfg.controllability.items()]
    ev = Evaluation(prompts, source, PrincipleSource.from_spec(RL_DRAW, cfg.rl_principles or rl["principles"], rl),
                    sources)
    if source == "unused":
        ev.notes.append("No rl_prompts.json (stage 05 has not run): the prompts are those of prompts.jsonl that no "
                        "earlier stage used, not stage 05's held-out slice.")
    if cfg.include_base:
        ev.notes.append("The base model is prompted exactly like SFT (same system prompt and chat format).")
    return ev


def train_controllability_arms(cfg: EvaluateConfig, ev: Evaluation, progress: bool = True) -> None:
    """One arm per set and seed (`experiment.arm_name`), all seeds' arms in one queue so that no
    worker waits for another seed's slower arm; `ev.arms` keeps the first seed's, which the other
    comparisons of the stage use."""
    if not ev.sources or not cfg.controllability_arms:
        return
    rl_cfg = arm_config(cfg.run_dir, cfg.arm_overrides, {"model": cfg.model, "seed": cfg.seed})
    if cfg.arm_contrast == "other_set" and rl_cfg.guidance_scale == 1:
        raise ConfigError("arm_contrast: other_set is what the arms' guided sampling pushes away from; set "
                          "arm_overrides' guidance_scale above 1 (and method: context_distill)")
    seeds = seed_list(cfg)
    names = {seed: {src.name: arm_name(src.name, seed, seeds) for src in ev.sources} for seed in seeds}
    contrast = {src.name: {"guidance_contrast": next(o.train_arg() for o in ev.sources if o is not src)}
                if cfg.arm_contrast == "other_set" else {} for src in ev.sources}
    settings = {names[seed][src.name]: {"seed": seed, **contrast[src.name]} for seed in seeds for src in ev.sources}
    # the sets go first in turn, seed by seed: arms of one set cost alike (the longer answers' set
    # samples and trains longer), and in a fixed order two workers would each get every arm of one
    # set, the slower one finishing alone (236 s of one idle core in a three-seed run, RESULTS.md)
    jobs = {names[seed][src.name]: src.train_arg()
            for k, seed in enumerate(seeds) for src in (ev.sources if k % 2 == 0 else ev.sources[::-1])}
    stats = train_arms(rl_cfg, jobs, progress, cfg.arm_workers, settings)
    for seed in seeds:
        ev.seed_arms[seed] = names[seed]
        ev.arm_stats[seed] = {src.name: stats[names[seed][src.name]] for src in ev.sources}


def controllability_experiment(cfg: EvaluateConfig, ev: Evaluation, progress: bool = True) -> None:
    """The registered experiment: every seed's arms of the first two sets answer the endpoint prompts."""
    if len(ev.sources) < 2 or not ev.seed_arms:
        return
    a, b = ev.sources[0].name, ev.sources[1].name
    ev.experiment = {**run_endpoint(cfg, ev.seed_arms, a, b, progress), "arm_contrast": cfg.arm_contrast}


def collect_answers(cfg: EvaluateConfig, ev: Evaluation, progress: bool = True) -> None:
    """Answers of every policy, SFT's preview candidates, HHH likelihoods, KL to SFT and the judge's
    verdicts, from one generator (KL from a HF one on the side when that one is not HF)."""
    from .likelihood import hhh_correct, policy_kls

    ev.policies = discover(cfg.run_dir, cfg.include_base, cfg.extra_policies)
    missing = [s.name for s in ev.sources if cfg.controllability_arms
               and not any(p.name == f"arm:{s.name}" for p in ev.policies)]
    if missing:
        raise RuntimeError(f"stage 05's train_arm wrote no policy for arm(s) {', '.join(missing)} under rl_arms/")
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed)
    cache = RecordLog(Path(cfg.run_dir) / ANSWERS)
    sft = ev.policy("sft")
    hhh_items = _hhh_items(cfg, ev)
    with open_generator(cfg.model, cfg.backend, ev.policies, cfg.batch_size, progress,
                        run_score_cache(cfg.run_dir), cfg.generation_processes) as gen:
        for pol in ev.policies:
            got = answer(gen, pol, ev.prompts, sampling, cfg.model, cache, batch_size=cfg.batch_size)
            ev.answers[pol.name] = [s[0] for s in got]
        if ev.sources and cfg.preview_n:
            ev.candidates = answer(gen, sft, ev.prompts[:cfg.preview_prompts], sampling, cfg.model, cache,
                                   n=cfg.preview_n, batch_size=cfg.batch_size, tag="preview")
        if hhh_items:
            ev.hhh = {"items": hhh_items}
            for pol in ev.policies:
                ev.hhh[pol.name] = hhh_correct(gen, hhh_items, pol.prompt, pol.adapter)
        if cfg.kl:
            with _timed(ev.timings, "kl"):
                ev.kl = policy_kls(gen, cfg.model, ev.policies, ev.answers, [q.prompt for q in ev.prompts],
                                   sft.adapter, cfg.temperature, cfg.generation_processes, progress)
        if cfg.judge == "sft":
            _judge(ev, gen, sft.spec.format, sft.adapter, cfg)
    if cfg.judge and cfg.judge != "sft":
        from ..generation import make_generator
        from ..models import ModelConfig

        with make_generator(ModelConfig(spec=cfg.judge), cfg.backend) as judge_gen:
            _judge(ev, judge_gen, sft.spec.format, None, cfg)
    if not cfg.judge:
        ev.judge = {"skipped": "judge is off (set judge: sft, or a model spec, for a judge's head-to-head)"}


def reward_folder(cfg: EvaluateConfig) -> Path:
    """The run's rm/, or the folder `reward` names (tried as given, then from the project root)."""
    from ..paths import candidates

    if not cfg.reward:
        return Path(cfg.run_dir) / "rm"
    return next((p for p in candidates(cfg.reward) if p.is_dir()), Path(cfg.reward).expanduser())


def _hhh_items(cfg: EvaluateConfig, ev: Evaluation) -> list[dict]:
    from ..hhh_data import hhh_source, load_hhh, sample_hhh

    source, skipped = hhh_source(cfg.hhh_eval)
    if source is None:
        ev.hhh = {"skipped": skipped}
        return []
    return sample_hhh(load_hhh(source), cfg.hhh_max_pairs, cfg.seed)


def _judge(ev: Evaluation, gen, fmt, adapter: str | None, cfg: EvaluateConfig) -> None:
    from ..paths import resolve_file
    from ..preferences.judge import judge_pairs
    from ..principles import load_principles

    p = load_principles(resolve_file("judge_principles", cfg.judge_principles)).by_name(cfg.judge_principle)
    sft = ev.answers["sft"]
    for pol in ev.policies:
        if pol.name == "sft":
            continue
        pairs = [{"id": f"{pol.name}|{q.id}", "prompt": q.prompt, "response_1": a["text"], "response_2": b["text"]}
                 for q, a, b in zip(ev.prompts, ev.answers[pol.name], sft)]
        ev.judge[pol.name] = judge_pairs(gen, fmt, pairs, [(p.name, p.text())], adapter=adapter, progress=False)
    ev.judge["principle"] = f"{p.name}: {p.text()}"
    ev.judge["model"] = "the run's SFT model" if cfg.judge == "sft" else cfg.judge


def measure(cfg: EvaluateConfig, ev: Evaluation) -> None:
    from .behaviour import answer_measures

    for name, samples in ev.answers.items():
        ev.measures[name] = [dict(answer_measures(q.prompt, s["text"], s["num_tokens"], s["finished"]), text=s["text"])
                             for q, s in zip(ev.prompts, samples)]


def score(cfg: EvaluateConfig, ev: Evaluation, reward, progress: bool = True) -> None:
    """Every answer under every principle, the RL-time draw and each set; the preview's candidates
    under each set."""
    ev.columns = principle_columns(cfg.reward_principles)
    columns = {label: fixed([text]) for label, text in ev.columns.items()}
    columns[RL_DRAW] = ev.rl_draw.for_prompt
    for src in ev.sources:
        columns[SET_PREFIX + src.name] = src.for_prompt
    texts = {name: [(s["text"], s["finished"]) for s in samples] for name, samples in ev.answers.items()}
    ev.scores = score_table(reward, texts, ev.prompts, columns, cfg.score_batch_size, progress)
    if ev.candidates:
        prompts = ev.prompts[:len(ev.candidates)]
        items, where = [], []
        for src in ev.sources:
            for i, (q, cands) in enumerate(zip(prompts, ev.candidates)):
                principles = src.for_prompt(q)
                items += [(q.prompt, c["text"], principles, c["finished"]) for c in cands]
                where += [(src.name, i)] * len(cands)
        flat = reward.score(items, batch_size=cfg.score_batch_size, progress=progress)
        ev.preview_scores = {s.name: [[] for _ in prompts] for s in ev.sources}
        for (name, i), v in zip(where, flat):
            ev.preview_scores[name][i].append(float(v))


def run(cfg: EvaluateConfig, progress: bool = True) -> dict:
    """Every step; writes report.json, report.html, samples.jsonl and figures/eval_*.png; returns
    the report."""
    from ..reward import load_reward
    from .report import write

    start = time.perf_counter()
    ev = prepare(cfg)
    with _timed(ev.timings, "train_arms"):
        train_controllability_arms(cfg, ev, progress)
    with _timed(ev.timings, "experiment"):
        controllability_experiment(cfg, ev, progress)
    with _timed(ev.timings, "answer"):
        collect_answers(cfg, ev, progress)
    with _timed(ev.timings, "measure"):
        measure(cfg, ev)
    with _timed(ev.timings, "score"):
        reward = load_reward(reward_folder(cfg), score_cache=run_score_cache(cfg.run_dir),
                             processes=cfg.generation_processes)
        for draw in [ev.rl_draw.draw, *(src.draw for src in ev.sources)]:
            if draw.set is not None:
                reward.learn_principles(draw.set)
        score(cfg, ev, reward, progress)
    ev.timings["total_before_report"] = round(time.perf_counter() - start, 2)
    return write(cfg, ev)
