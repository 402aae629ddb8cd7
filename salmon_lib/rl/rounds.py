"""The loop dpo and best_of_n share: per round, sample `group_size` answers to each of
`prompts_per_step` prompts from the current policy, score them under one principle draw per prompt,
then let the method train on them. A round is the unit of `max_steps`, checkpoints and resume
(the policy adapter after each round; each round builds its own TRL trainer and optimiser)."""

from __future__ import annotations

import time
from typing import Callable

from ..io import RecordLog
from .checkpoint import Budget, Checkpoints, step_seed
from .context import Context
from .logs import MetricsLog, rollout_record, start_logs
from .shaping import Sample

# train_round(round, rendered prompts, samples grouped per prompt, their terms grouped alike)
#   -> (one role per sample, e.g. "chosen" / "rejected" / None, and the round's training stats)
TrainRound = Callable[[int, list[str], list[list[Sample]], list[list[dict]]], tuple[list, dict]]


def sequence_budget(ctx: Context, tokenizer) -> int:
    """Tokens a training example of a round may need: the longest rendered prompt plus an answer."""
    prompts = [ctx.spec.prompt(r["prompt"]) for r in ctx.records]
    return max(len(ids) for ids in tokenizer(prompts)["input_ids"]) + ctx.cfg.max_new_tokens + 8


def run_rounds(ctx: Context, model, sampler, train_round: TrainRound, progress: bool = True,
               guided: bool = False) -> dict:
    """`guided`: sample each prompt with its drawn principles in the system message (the answers
    are still scored, and trained on, under the plain prompt), with `guidance_scale` != 1 guided
    away from the same message listing the reward's contrast of each principle, or the
    `guidance_contrast` principles drawn for the prompt."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm

    cfg, paths = ctx.cfg, ctx.paths
    ckpts = Checkpoints(paths.checkpoints, ctx.signature, resume=cfg.resume)
    state, start = ckpts.latest(), 0
    if state is not None:
        set_peft_model_state_dict(model, state["policy"], adapter_name="default")
        start = state["step"]
    start_logs(paths, start)
    metrics = MetricsLog(paths.metrics, paths.checkpoints / "runs" if cfg.report_to == "tensorboard" else None)
    rollouts = RecordLog(paths.rollouts)
    budget, stopped, done = Budget(cfg.max_minutes), "max_steps", start
    with tqdm(total=cfg.max_steps, initial=start, desc=cfg.method, unit="round", disable=not progress) as bar:
        for r in range(start, cfg.max_steps):
            t0 = time.perf_counter()
            records = ctx.step_prompts(r, cfg.prompts_per_step)
            rendered = [ctx.spec.prompt(rec["prompt"]) for rec in records]
            drawn = [ctx.draw.draw(rec["id"], r, rec["question_type"]).texts for rec in records]
            sampled = [ctx.spec.guided_prompt(rec["prompt"], texts) for rec, texts in zip(records, drawn)] \
                if guided else rendered
            contrasts = [ctx.spec.guided_prompt(rec["prompt"], ctx.contrast_texts(rec, r, texts))
                         for rec, texts in zip(records, drawn)] if guided and cfg.guidance_scale != 1 else None
            completions = sampler.sample(sampled, cfg.group_size, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                         seed=step_seed(cfg.seed, r, "rollout"), tag=f"round-{r}",
                                         contrast_prompts=contrasts, guidance_scale=cfg.guidance_scale,
                                         guidance_plausibility=cfg.guidance_plausibility)
            t1 = time.perf_counter()
            samples = ctx.samples(records, completions, r)
            terms = ctx.reward_fn.terms(samples)
            t2 = time.perf_counter()
            g = cfg.group_size
            groups = [samples[i:i + g] for i in range(0, len(samples), g)]
            term_groups = [terms[i:i + g] for i in range(0, len(terms), g)]
            roles, train_stats = train_round(r, rendered, groups, term_groups)
            t3 = time.perf_counter()
            n = len(samples)
            row = {"step": r, "score": sum(t["score"] for t in terms) / n,
                   **{k: sum(t[k] for t in terms) / n for k in ("rm", "rm_raw", "unfinished")},
                   "length_term": sum(t["length"] for t in terms) / n,
                   "length": sum(s.tokens for s in samples) / n, "finished": sum(s.finished for s in samples) / n,
                   "time_generate": t1 - t0, "time_score": t2 - t1, "time_train": t3 - t2, **train_stats}
            row["reward"] = row["score"]  # no KL term: each round's trainer regularises on its own
            metrics.append(row)
            rollouts.append([rollout_record(r, i % g, s, t, {"role": role})
                             for i, (s, t, role) in enumerate(zip(samples, terms, roles))])
            done = r + 1
            ckpts.save(done, {"policy": get_peft_model_state_dict(model, adapter_name="default")})
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward']:.3f}", len=f"{row['length']:.0f}")
            if budget.exceeded() and done < cfg.max_steps:
                stopped = "max_minutes"
                break
    metrics.close()
    return {"steps": done, "resumed_from": start or None, "stopped": stopped}
