"""Stage 05 as library calls: `run(cfg)` is the whole stage, for the runner, the tests and the notebook
(which then shows `tables` and the saved figures); its steps:

    prepare_prompts(cfg)            -> rl_prompts.json (train / held-out split, disjoint from stages 01, 03)
    train_or_launch(cfg)            -> rl_baseline.json, policy/, rollouts.jsonl, rl_metrics.jsonl, rl_stats.json
    plots.save_all(cfg.run_dir)     -> figures/rl_*.png
    train_arm(cfg, arm, principles) -> rl_arms/<arm>/...: not a step of run; stage 06 trains each arm with it

With several GPUs visible, `run` starts grpo/rloo/dpo/best_of_n under `accelerate launch` (one process
per GPU); ppo runs in one process on one device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
from pathlib import Path

from ..config import ConfigError
from ..io import atomic_write_json, read_json
from .baseline import baseline_digest
from .checkpoint import signature_digest
from .config import RLConfig
from .context import Context, RLPaths
from .draw import PrincipleDraw
from .prompts import read_split, split_digest, train_records, write_split

log = logging.getLogger(__name__)

INPUTS = ("prompts.jsonl", "sft/", "rm/")
# Settings that do not change what is learned: checkpoints made under other values still hold.
RESUME_NEUTRAL = {"run_dir", "resume", "max_minutes", "save_steps", "report_to", "score_batch_size", "distributed",
                  "vllm_gpu_memory_utilization", "gradient_checkpointing", "cpu_threads"}
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def prepare_prompts(cfg: RLConfig) -> dict:
    """Split prompts.jsonl into training and held-out RL prompts (rl_prompts.json)."""
    return write_split(cfg.run_dir, cfg.heldout_prompts, cfg.seed, cfg.exclude_used, cfg.max_prompts)


def input_digests(run_dir: Path) -> dict:
    from ..provenance import hash_artifacts

    return {name: (h or {}).get("sha256") for name, h in hash_artifacts(run_dir, list(INPUTS)).items()}


def _describe_reward(reward, inputs: dict) -> dict:
    if reward is None:
        return {"kind": "reward model", "folder": "rm", "sha256": inputs.get("rm/")}
    describe = getattr(reward, "describe", None)
    return describe() if callable(describe) else {"kind": type(reward).__name__}


def open_context(cfg: RLConfig, arm: str | None = None, reward=None,
                 principles: str | list[str] | None = None) -> Context:
    """Everything a method needs except the models: prompts, principle draw, chat spec, signature.
    `principles` (an arm's) replaces `cfg.principles` for training; the baseline keeps the stage's."""
    from ..engrave.format import load_chat_spec

    run = Path(cfg.run_dir)
    split = read_split(run)
    draw = PrincipleDraw(principles or cfg.principles, cfg.num_principles, cfg.interventions, cfg.seed)
    inputs = input_digests(run)
    contrast = PrincipleDraw(cfg.guidance_contrast, cfg.num_principles, cfg.interventions, cfg.seed) \
        if cfg.guidance_contrast else None
    settings = {k: v for k, v in cfg.to_dict().items()
                if k not in RESUME_NEUTRAL and k not in ("principles", "guidance_contrast")}
    records = train_records(run, split)
    described = _describe_reward(reward, inputs)
    # the baseline is always the stage's own principles on the SFT policy (open_session)
    stage_draw = PrincipleDraw(cfg.principles, cfg.num_principles, cfg.interventions, cfg.seed)
    signature = {"settings": settings, "principles": draw.signature(), "inputs": inputs, "reward": described,
                 "split": split_digest(split), "arm": arm,
                 "baseline": baseline_digest(cfg, inputs | {"reward": described}, stage_draw, records)}
    if contrast is not None:  # only when set, so the runs made before the option keep their signature
        signature["guidance_contrast"] = contrast.signature()
    return Context(cfg, RLPaths(run, arm), records, draw, load_chat_spec(run / "sft"), signature,
                   contrast_draw=contrast)


def _finished_stats(ctx: Context) -> dict | None:
    """The arm's stats when it already finished under the same signature."""
    if not ctx.paths.stats.is_file() or not ctx.paths.policy.is_dir():
        return None
    stats = read_json(ctx.paths.stats)
    return stats if stats.get("signature") == signature_digest(ctx.signature) else None


@dataclasses.dataclass
class Session:
    """A context with its models loaded: the policy (SFT adapter as "default"), a sampler over it,
    the reward and the SFT baseline the reward function normalises against."""

    ctx: Context
    tokenizer: object
    model: object
    sampler: object
    baseline: dict


def open_session(cfg: RLConfig, arm: str | None = None, reward=None,
                 principles: str | list[str] | None = None) -> Session:
    """Load the policy and the reward, measure (or reuse) the SFT baseline, build the reward function.

    `reward` replaces the run's reward model (anything with `score(items, batch_size)`; the positive
    control uses a programmatic one); the baseline is then measured with it too."""
    from ..reward import load_reward
    from .baseline import load_or_measure
    from .policy import load_policy
    from .rollout import PolicySampler
    from .shaping import RewardFunction, Shaping

    ctx = open_context(cfg, arm, reward, principles)
    run = Path(cfg.run_dir)
    if reward is None:
        reward = load_reward(run / "rm")
    if cfg.guidance_scale != 1 and not cfg.guidance_contrast and not hasattr(reward, "contrast_texts"):
        raise ConfigError(f"guidance_scale: guided sampling pushes away from each principle's contrast, which "
                          f"only a contrastive reward (stage 04's kind: contrastive) knows; this one is "
                          f"{type(reward).__name__} (or name the contrast's principles in guidance_contrast)")
    tok, model, _ = load_policy(cfg, run / "sft")
    backend = "hf" if cfg.guidance_scale != 1 else cfg.rollout_backend  # the check allows no vllm with guidance
    sampler = PolicySampler(model, tok, cfg.model, ctx.spec.format.stop, backend,
                            work_dir=ctx.paths.checkpoints, gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                            max_lora_rank=model.peft_config["default"].r)
    # The baseline is always the stage's own principles on the SFT policy: every arm shares its scale.
    baseline_ctx = ctx if principles is None else dataclasses.replace(
        ctx, draw=PrincipleDraw(cfg.principles, cfg.num_principles, cfg.interventions, cfg.seed))
    # A reward that reads principles as they come (a programmatic one) has nothing to learn.
    learn = getattr(reward, "learn_principles", None)
    for draw in (ctx.draw, baseline_ctx.draw):
        if draw.set is not None and learn is not None:
            learn(draw.set)
    baseline = load_or_measure(cfg, baseline_ctx, sampler, reward,
                               ctx.signature["inputs"] | {"reward": ctx.signature["reward"]}, arm)
    ctx.reward_fn = RewardFunction(reward, Shaping.from_config(cfg), baseline, cfg.score_batch_size)
    return Session(ctx, tok, model, sampler, baseline)


def train(cfg: RLConfig, arm: str | None = None, reward=None, progress: bool = True,
          principles: str | list[str] | None = None) -> dict:
    """Train with `cfg.method` from the SFT policy, save the policy, return (and write) the stats."""
    with _cpu_threads(cfg.cpu_threads):
        return _train(cfg, arm, reward, progress, principles)


@contextlib.contextmanager
def _cpu_threads(threads: int):
    """torch's intra-op threads for the block, where there is no GPU (0: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if threads and not torch.cuda.is_available():
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(cfg: RLConfig, arm: str | None, reward, progress: bool, principles: str | list[str] | None) -> dict:
    from .policy import policy_info, save_policy

    s = open_session(cfg, arm, reward, principles)
    ctx = s.ctx
    start = time.perf_counter()
    result = _train_method(ctx, s.model, s.tokenizer, s.sampler, progress)
    seconds = time.perf_counter() - start
    s.sampler.close()
    stats = {"method": cfg.method, "arm": arm, **result, "train_seconds": round(seconds, 2),
             "principles": ctx.draw.describe(), "train_prompts": len(ctx.records), **_guidance(cfg, ctx),
             "baseline": {k: s.baseline[k] for k in ("overall", "by_type", "n", "mean_tokens", "finished")},
             "rollout_backend": s.sampler.backend, "policy": str(ctx.paths.policy),
             "signature": signature_digest(ctx.signature), **_metric_summary(ctx)}
    if int(os.environ.get("RANK", "0")) == 0:
        save_policy(s.model, s.tokenizer, ctx.spec, ctx.paths.policy,
                    policy_info(cfg, cfg.method, ctx.draw.describe(), result["steps"], arm))
        atomic_write_json(ctx.paths.stats, stats)
    return stats


def _guidance(cfg: RLConfig, ctx: Context) -> dict:
    """What guided sampling pushed away from, for the stats (nothing when unguided)."""
    if cfg.guidance_scale == 1:
        return {}
    away = ctx.contrast_draw.describe() if ctx.contrast_draw is not None else "reward"
    return {"guidance": {"scale": cfg.guidance_scale, "contrast": away}}


def _train_method(ctx: Context, model, tok, sampler, progress: bool) -> dict:
    method = ctx.cfg.method
    if method == "ppo":
        from .ppo import PPOTrainer

        return PPOTrainer(ctx, model, tok, sampler).train(progress)
    if method in ("grpo", "rloo"):
        from .trl_methods import train_group_method

        return train_group_method(ctx, model, tok, progress)
    if method == "dpo":
        from .dpo import train_dpo

        return train_dpo(ctx, model, tok, sampler, progress)
    from .best_of_n import train_best_of_n

    return train_best_of_n(ctx, model, tok, sampler, progress, guided=method == "context_distill")


def _metric_summary(ctx: Context) -> dict:
    """First and last step's reward, KL, length and finished share; mean seconds per phase; the
    share of the shaped score's spread that each term carries (`shaping.term_shares`)."""
    from ..io import read_jsonl
    from .shaping import term_shares

    rows = read_jsonl(ctx.paths.metrics) if ctx.paths.metrics.is_file() else []
    if not rows:
        return {}
    keep = ("reward", "rm", "kl", "length", "finished")
    phases = {k: [r[k] for r in rows if isinstance(r.get(k), (int, float))]
              for k in ("time_generate", "time_score", "time_train")}
    rollouts = read_jsonl(ctx.paths.rollouts) if ctx.paths.rollouts.is_file() else []
    return {"first_step": {k: rows[0].get(k) for k in keep}, "last_step": {k: rows[-1].get(k) for k in keep},
            "term_shares": term_shares(rollouts),
            "seconds_per_step": {k.removeprefix("time_"): (sum(v) / len(v) if v else None) for k, v in phases.items()}}


def train_entry(config: dict) -> dict:
    """Entry point for `salmon_lib.launch` (one call per process on several GPUs)."""
    arm, principles = config.pop("_arm", None), config.pop("_principles", None)
    return train(RLConfig.from_dict(config), arm=arm, principles=principles)


def train_or_launch(cfg: RLConfig, arm: str | None = None, principles: str | list[str] | None = None) -> dict:
    """`train` in this process, or for grpo/rloo/dpo/best_of_n on several GPUs one process per GPU."""
    from ..launch import launch, visible_gpus

    if cfg.method == "ppo" or visible_gpus() <= 1:
        return train(cfg, arm=arm, principles=principles)
    return launch("salmon_lib.rl.stage:train_entry", {**cfg.to_dict(), "_arm": arm, "_principles": principles},
                  distributed=cfg.distributed)


def run(cfg: RLConfig) -> dict:
    """The whole stage: prompt split, baseline, training, policy, figures; returns rl_stats."""
    from . import plots

    prepare_prompts(cfg)
    stats = train_or_launch(cfg, None)
    plots.save_all(cfg.run_dir)
    return stats


def train_arm(cfg: RLConfig, arm: str, principles: str | list[str]) -> dict:
    """Train one of stage 06's arms: `cfg`'s seed, budget, prompts and baseline, only the principle
    text differs. Writes rl_arms/<arm>/; resumable; returns the stored stats when the arm already
    finished under the same signature."""
    from . import plots

    if not _ARM_NAME.match(arm):
        raise ConfigError(f"arm: {arm!r} is not a usable folder name (letters, digits, _ . -)")
    dataclasses.replace(cfg, principles=principles).check()
    if not (Path(cfg.run_dir) / "rl_prompts.json").is_file():
        prepare_prompts(cfg)
    done = _finished_stats(open_context(cfg, arm, principles=principles))
    if done is not None:
        log.info("arm %s already trained with these settings; skipped", arm)
        return done
    stats = train_or_launch(cfg, arm, principles)
    plots.save_all(cfg.run_dir, arm=arm)
    return stats
