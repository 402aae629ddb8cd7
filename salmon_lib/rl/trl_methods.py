"""grpo and rloo: TRL's trainers with this stage's reward function.

The dataset rows carry the rendered chat prompt and, as extra columns, the prompt id, the bare
instruction and the prompt type; TRL hands extra columns to reward functions as keyword arguments.
The principles are drawn inside the reward function, keyed by (prompt id, optimiser step), so all
`group_size` answers to one prompt share one draw and the group baseline compares like with like.
The policy is our PeftModel with the SFT adapter as "default"; with a KL term TRL adds a frozen
copy of it as "ref", so the reference is the SFT policy, as in PPO.

KL: GRPO puts β·KL (k3 estimator) in the loss, RLOO subtracts β·KL (k1, per answer) from the reward;
β is `kl_coef` for both. rl_metrics.jsonl reports TRL's KL as a per-answer sum like PPO's.
"""

from __future__ import annotations

import collections
import logging
import time

from ..io import RecordLog
from ..mixed_precision import release_autocast, train_in_bf16
from .checkpoint import Budget, Checkpoints
from .context import Context
from .logs import MetricsLog, rollout_record, start_logs
from .shaping import Sample

log = logging.getLogger(__name__)


class StepClock:
    """Seconds spent generating and scoring within the current optimiser step."""

    def __init__(self):
        self.phases: dict[str, float] = collections.defaultdict(float)
        self.start = time.perf_counter()

    def reset(self) -> None:
        self.phases.clear()
        self.start = time.perf_counter()


class GroupReward:
    """The reward function TRL calls with a batch of completions and the dataset's extra columns."""

    __name__ = "salmon"  # TRL names the reward's log entries after it

    def __init__(self, ctx: Context, eos_ids: set[int], rollouts: RecordLog | None, clock: StepClock):
        self.ctx, self.eos_ids, self.rollouts, self.clock = ctx, eos_ids, rollouts, clock

    def __call__(self, prompts, completions, completion_ids, prompt_id, instruction, question_type,
                 trainer_state, log_metric=None, **_) -> list[float]:
        start = time.perf_counter()
        step = trainer_state.global_step
        samples = [Sample(pid, instr, qtype, text, len(ids), bool(ids) and ids[-1] in self.eos_ids,
                          self.ctx.draw.draw(pid, step, qtype))
                   for pid, instr, qtype, text, ids in zip(prompt_id, instruction, question_type, completions,
                                                           completion_ids)]
        terms = self.ctx.reward_fn.terms(samples)
        if log_metric is not None:
            for key in ("rm", "rm_raw", "unfinished", "length"):
                log_metric(f"salmon/{key}", sum(t[key] for t in terms) / len(terms))
        if self.rollouts is not None:
            seen: dict[str, int] = collections.Counter()
            rows = []
            for s, t in zip(samples, terms):
                rows.append(rollout_record(step, seen[s.prompt_id], s, t))
                seen[s.prompt_id] += 1
            self.rollouts.append(rows)
        self.clock.phases["score"] += time.perf_counter() - start
        return [t["score"] for t in terms]


def _callbacks(ctx: Context, clock: StepClock, metrics: MetricsLog | None, budget: Budget, outcome: dict):
    from transformers import TrainerCallback

    kl_coef = ctx.cfg.kl_coef

    class Track(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.reset()

        def on_step_end(self, args, state, control, **kwargs):
            clock.phases["total"] = time.perf_counter() - clock.start
            if budget.exceeded():
                outcome["stopped"] = "max_minutes"
                control.should_training_stop = True
                control.should_save = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if metrics is None or "salmon/rm" not in logs:
                return
            length = logs.get("completions/mean_length")
            kl = logs.get("kl")
            kl_answer = kl * length if kl is not None and length is not None else None  # per-token mean x tokens
            score = logs.get("rewards/salmon/mean", logs.get("reward"))
            penalty = -kl_coef * kl_answer if kl_answer is not None else 0.0
            generate, scored = clock.phases.get("generate", 0.0), clock.phases.get("score", 0.0)
            metrics.append({
                "step": state.global_step - 1, "score": score, "reward": score + penalty if score is not None else None,
                "rm": logs.get("salmon/rm"), "rm_raw": logs.get("salmon/rm_raw"),
                "unfinished": logs.get("salmon/unfinished"), "length_term": logs.get("salmon/length"),
                "kl_penalty": penalty, "kl": kl_answer, "entropy": logs.get("entropy"), "length": length,
                "finished": 1.0 - logs["completions/clipped_ratio"] if "completions/clipped_ratio" in logs else None,
                "clip_fraction": logs.get("clip_ratio/region_mean"), "policy_loss": logs.get("loss"),
                "time_generate": generate, "time_score": scored,
                "time_train": max(clock.phases.get("total", 0.0) - generate - scored, 0.0),
                "lr": logs.get("learning_rate"), "reward_std": logs.get("reward_std"),
            })

    return [Track(), release_autocast()]


def _timed(trainer_cls, clock: StepClock):
    """The trainer with its generation timed (TRL's own profiling only reports to wandb/mlflow)."""

    class Timed(trainer_cls):
        def _generate(self, prompts):
            start = time.perf_counter()
            try:
                return super()._generate(prompts)
            finally:
                clock.phases["generate"] += time.perf_counter() - start

    Timed.__name__ = trainer_cls.__name__
    return Timed


def trl_args(ctx: Context, config_cls, world_size: int, progress: bool = True):
    """GRPOConfig/RLOOConfig for one optimiser step per rollout of `prompts_per_step` x `group_size`
    answers, split over the processes and then into `minibatches` accumulation steps."""
    import torch

    cfg, paths = ctx.cfg, ctx.paths
    answers = cfg.prompts_per_step * cfg.group_size
    per_device, rest = divmod(answers, world_size * cfg.minibatches)
    if rest or not per_device:
        raise ValueError(f"prompts_per_step x group_size = {answers} answers must split evenly over {world_size} "
                         f"process(es) x {cfg.minibatches} minibatches")
    cuda = torch.cuda.is_available()
    from .rollout import choose_backend

    return config_cls(
        output_dir=str(paths.checkpoints), seed=cfg.seed, data_seed=cfg.seed,
        # a warmup_steps below 1 is read as a fraction of the steps
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        max_grad_norm=cfg.max_grad_norm, max_steps=cfg.max_steps,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=cfg.minibatches,
        num_generations=cfg.group_size, max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, top_k=0, beta=cfg.kl_coef,
        disable_dropout=True, gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=train_in_bf16(cfg.mixed_precision, cuda, None if cfg.dtype == "auto" else getattr(torch, cfg.dtype)),
        use_cpu=not cuda,
        use_vllm=choose_backend(cfg.rollout_backend) == "vllm", vllm_mode="colocate",
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        logging_steps=1, save_steps=cfg.save_steps, save_total_limit=2,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],  # TensorBoard: output_dir/runs
        disable_tqdm=not progress,
    )


def train_group_method(ctx: Context, model, tokenizer, progress: bool = True) -> dict:
    import os

    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from ..engrave.lm_head import score_labelled_positions_only

    score_labelled_positions_only()
    cfg, paths = ctx.cfg, ctx.paths
    trainer_cls, config_cls = (GRPOTrainer, GRPOConfig) if cfg.method == "grpo" else (RLOOTrainer, RLOOConfig)
    Checkpoints(paths.checkpoints, ctx.signature, resume=cfg.resume)  # drops checkpoints of other settings
    main = int(os.environ.get("RANK", "0")) == 0
    last = get_last_checkpoint(str(paths.checkpoints)) if cfg.resume else None
    start = int(last.rsplit("-", 1)[1]) if last else 0
    if main:
        start_logs(paths, start)
    clock, outcome = StepClock(), {"stopped": "max_steps"}
    metrics = MetricsLog(paths.metrics) if main else None
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    reward = GroupReward(ctx, eos_ids, RecordLog(paths.rollouts) if main else None, clock)
    dataset = Dataset.from_list([{"prompt": ctx.spec.prompt(r["prompt"]), "prompt_id": r["id"],
                                  "instruction": r["prompt"], "question_type": r["question_type"]}
                                 for r in ctx.records])
    args = trl_args(ctx, config_cls, int(os.environ.get("WORLD_SIZE", "1")), progress)
    trainer = _timed(trainer_cls, clock)(
        model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tokenizer,
        callbacks=_callbacks(ctx, clock, metrics, Budget(cfg.max_minutes), outcome))
    if last:
        log.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    if metrics is not None:
        metrics.close()
    steps = trainer.state.global_step
    if outcome["stopped"] == "max_steps" and steps < cfg.max_steps:
        outcome["stopped"] = "stopped early"
    return {"steps": steps, "resumed_from": start or None, **outcome}
