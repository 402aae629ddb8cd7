"""Stage 04 as library calls: `run(cfg)` is the whole stage; the notebook runs the same steps one
by one, showing tables and figures between them.

`fit` trains under `accelerate launch` when several GPUs are visible and in this process otherwise
(with `kind: contrastive` it writes the training-free reward folder instead); `load_trained` reads
the reward back from `<run>/rm` with `load_reward`, as RL and the `score` command do; every figure
is saved under `<run>/figures/`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .config import RewardConfig


def run(cfg: RewardConfig) -> dict:
    """Train, evaluate, audit and draw the per-principle figures; returns {"training":
    reward_stats.json, "evaluation": rm_eval.json, "audit": reward_audit.json}."""
    import matplotlib.pyplot as plt

    stats = fit(cfg)
    rm = load_trained(cfg)
    if cfg.kind == "trained":
        training_figure(cfg, stats)
    result = evaluate(cfg, rm)
    audited = audit(cfg, rm)
    _, responses, principles = principle_figures(cfg, rm)
    prompt_figure(cfg, rm, responses, principles)
    plt.close("all")
    return {"training": stats, "evaluation": result, "audit": audited}


def fit(cfg: RewardConfig) -> dict:
    """Train and save `<run>/rm/` and `<run>/reward_stats.json` (`kind: contrastive`: write the
    reward folder, nothing trained); returns the statistics."""
    from ..launch import launch

    if cfg.kind == "contrastive":
        from .contrastive import build_from_config

        return build_from_config(cfg)
    return launch("salmon_lib.reward.train:train", cfg.to_dict(), distributed=cfg.distributed,
                  cpu_processes=cfg.cpu_processes)


def load_trained(cfg: RewardConfig):
    """The reward in `<run>/rm`, either kind (the contrastive one with the run's score cache)."""
    from ..generation.score_cache import run_score_cache
    from . import load_reward

    return load_reward(Path(cfg.run_dir) / "rm", score_cache=run_score_cache(cfg.run_dir),
                       processes=cfg.generation_processes)


def training_figure(cfg: RewardConfig, stats: dict):
    """Loss and accuracy per step of each phase -> figures/rm_training_curves.png."""
    from . import plots

    axes = plots.plot_training_curves(stats)
    plots.save_figure(axes, cfg.run_dir, "rm_training_curves")
    return axes


def evaluate(cfg: RewardConfig, rm) -> dict:
    """Held-out accuracy, HHH per type, principle-flip rates -> `<run>/rm_eval.json`."""
    from .evaluate import evaluate_reward_model

    return evaluate_reward_model(rm, cfg)


def audit(cfg: RewardConfig, rm, progress: bool = True) -> dict:
    """The reward audit on SFT's own answers (reward/audit.py) -> `<run>/reward_audit.json` and
    figures/reward_audit.png; {"skipped": why} when `audit_shorter` is empty or the run has no
    prompts.jsonl (a stage 04 run on its own preferences)."""
    import random

    from ..io import atomic_write_json
    from ..principles import load_principles
    from ..prompts.records import read_pool
    from . import audit as ra
    from .plots import save_figure

    run = Path(cfg.run_dir)
    skipped = ("audit_shorter is empty" if not cfg.audit_shorter else
               None if (run / "prompts.jsonl").is_file() else "the run has no prompts.jsonl to sample from")
    if skipped:
        result = {"skipped": skipped}
        atomic_write_json(run / "reward_audit.json", result)
        return result
    sets = []
    for name in ("audit_shorter", "audit_longer"):
        pset = load_principles(cfg.file(name))
        rm.learn_principles(pset)
        sets.append((pset.name, [iv.text for iv in pset.interventions] + [p.definition for p in pset.principles]))
    pool = read_pool(run)
    prompts = [r["prompt"] for r in random.Random(cfg.seed).sample(pool, min(cfg.audit_prompts, len(pool)))]
    with _sft_generator(cfg, rm) as (gen, render, stop):
        answers = ra.sample_answers(gen, render, prompts, cfg.audit_samples, cfg.audit_max_new_tokens,
                                    cfg.audit_temperature, cfg.seed, stop)
    result = ra.length_audit(rm, answers, sets[0], sets[1], cfg.score_batch_size, progress)
    result["sampling"] = {"max_new_tokens": cfg.audit_max_new_tokens, "temperature": cfg.audit_temperature}
    atomic_write_json(run / "reward_audit.json", result)
    save_figure(ra.plot_length_audit(result), run, "reward_audit")
    return result


@contextlib.contextmanager
def _sft_generator(cfg: RewardConfig, rm):
    """(generator, render, stop strings) of the SFT policy: the contrastive reward's own generator
    when it runs on stage 02's adapter, else a generator of its own (the base model, no adapter,
    when the run has no sft/)."""
    from ..chat_format import get_format
    from ..engrave.format import chat_spec_for
    from ..generation import make_generator
    from ..models import ModelConfig

    sft = Path(cfg.run_dir) / "sft"
    has_sft = (sft / "adapter_config.json").is_file()
    spec = chat_spec_for(sft) if has_sft else None
    render = spec.prompt if spec else (lambda p: get_format(cfg.chat_format).prompt(p.strip()))
    stop = (spec.format if spec else get_format(cfg.chat_format)).stop
    own = getattr(rm, "gen", None)
    if own is not None and (not has_sft or rm.spec.get("adapter")):
        yield own, render, stop
        return
    model = ModelConfig(spec=cfg.model, adapter=str(sft) if has_sft else None)
    with make_generator(model, "hf", processes=cfg.generation_processes, progress=False) as gen:
        yield gen, render, stop


def principle_figures(cfg: RewardConfig, rm):
    """Scores of stage 03's responses under each principle of `plot_principles`: a heatmap and the
    distributions per principle (figures/rm_heatmap.png, rm_score_distributions.png). Returns
    (scores DataFrame, the (prompt, response) rows, {principle name: text})."""
    from . import plots
    from .config import PREFERENCES

    principles = plots.principle_texts(cfg.file("plot_principles"))
    responses = plots.responses_from_run(cfg.run_dir, limit=cfg.plot_responses, preferences=PREFERENCES)
    df = plots.score_matrix(rm, responses, principles, batch_size=cfg.score_batch_size)
    plots.save_figure(plots.plot_heatmap(df), cfg.run_dir, "rm_heatmap")
    plots.save_figure(plots.plot_distributions(df), cfg.run_dir, "rm_score_distributions")
    return df, responses, principles


def prompt_figure(cfg: RewardConfig, rm, responses: list[tuple[str, str]], principles: dict[str, str]):
    """The first prompt's candidate responses under each principle, as grouped bars
    (figures/rm_prompt_bars.png). Returns (prompt, candidates, scores DataFrame)."""
    from . import plots

    prompt = responses[0][0]
    candidates = [r for p, r in responses if p == prompt]
    ax, bars = plots.plot_prompt_bars(rm, prompt, candidates, principles, batch_size=cfg.score_batch_size)
    plots.save_figure(ax, cfg.run_dir, "rm_prompt_bars")
    return prompt, candidates, bars
