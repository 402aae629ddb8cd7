"""A compact PPO, faithful to SALMON's: one base model carrying three LoRA adapters,

- "default": the policy, initialised from the SFT adapter, trained;
- "ref": the SFT adapter again, frozen (the KL reference: the KL is exactly 0 at step 0);
- "value": the reward model's adapter with a fresh zero-initialised value head (SALMON does not copy
  the reward head), trained; a fresh LoRA when the reward is not a reward model on the same base;

and the reward itself (`RewardFunction`) as a separate, frozen model. Each step samples one answer
per prompt (T=0.7), scores it, puts the score on the last real token and -kl_coef·KL on every token,
runs GAE, whitens the advantages and takes `ppo_epochs` x `minibatches` optimiser steps with the
clipped policy loss and the clipped value loss (backpropagated separately, as SALMON does).
Every forward pass of scoring and update runs under bf16 autocast where `mixed_precision` resolves
to bf16 (sampling does not). The tensor arithmetic is in `ppo_math`; this module moves data between
the models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from ..mixed_precision import train_in_bf16
from .checkpoint import Budget, Checkpoints, step_seed
from .context import Context
from .logs import MetricsLog, rollout_record, start_logs
from .ppo_math import (
    answer_mask,
    entropy,
    gae,
    kl_per_token,
    masked_mean,
    masked_whiten,
    policy_loss,
    shaped_rewards,
    token_logprobs,
    value_loss,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Batch:
    input_ids: torch.Tensor  # [B, Q + T]: left-padded prompts, then right-padded answers
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    answers: torch.Tensor  # [B, T]
    lengths: torch.Tensor  # [B]: answer tokens, the end-of-turn token included
    mask: torch.Tensor  # [B, T] float: 1 on real answer tokens
    query_width: int

    def rows(self, idx: torch.Tensor) -> "Batch":
        return Batch(self.input_ids[idx], self.attention_mask[idx], self.position_ids[idx], self.answers[idx],
                     self.lengths[idx], self.mask[idx], self.query_width)


def build_batch(prompts: list[list[int]], answers: list[list[int]], pad_id: int, device) -> Batch:
    q, t = max(map(len, prompts)), max(max(map(len, answers)), 1)
    ids = torch.full((len(prompts), q + t), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for row, (p, a) in enumerate(zip(prompts, answers)):
        ids[row, q - len(p):q], attn[row, q - len(p):q] = torch.tensor(p), 1
        ids[row, q:q + len(a)], attn[row, q:q + len(a)] = torch.tensor(a, dtype=torch.long), 1
    lengths = torch.tensor([len(a) for a in answers])
    # Positions count real tokens only, as generate() counted them for the left-padded prompt.
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    ids, attn, pos, lengths = ids.to(device), attn.to(device), pos.to(device), lengths.to(device)
    return Batch(ids, attn, pos, ids[:, q:], lengths, answer_mask(lengths, t), q)


def value_source(run_dir: Path, base_spec: str) -> Path | None:
    """The reward model folder whose adapter can start the value model: a stage-04 `rm/` on the same base."""
    rm = run_dir / "rm"
    info = rm / "rm_info.json"
    if not (info.is_file() and (rm / "adapter_config.json").is_file()):
        return None
    return rm if json.loads(info.read_text()).get("base_model", {}).get("spec") == base_spec else None


class PPOTrainer:
    def __init__(self, ctx: Context, model, tokenizer, sampler):
        from transformers import get_scheduler

        self.ctx, self.cfg, self.model, self.tok, self.sampler = ctx, ctx.cfg, model, tokenizer, sampler
        cfg = self.cfg
        source = value_source(ctx.paths.run_dir, cfg.model)
        if source is not None:
            model.load_adapter(str(source), adapter_name="value", is_trainable=True)
        else:
            model.add_adapter("value", model.peft_config["default"])
        self.value_init = "reward model adapter" if source is not None else "fresh LoRA (no reward model on this base)"
        sft = ctx.paths.run_dir / "sft"
        model.load_adapter(str(sft), adapter_name="ref")
        model.set_adapter("default")
        inner = model.get_base_model()
        self.backbone = getattr(inner, inner.base_model_prefix)
        self.device = next(model.parameters()).device
        # every forward pass (the rollout's old log-probs as the update's) in one precision, so the
        # ratio of new to old policy compares like with like
        self.bf16 = train_in_bf16(cfg.mixed_precision, self.device.type == "cuda", next(model.parameters()).dtype)
        self.value_head = torch.nn.Linear(inner.config.hidden_size, 1, device=self.device, dtype=torch.float32)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        self.policy_params = [p for n, p in model.named_parameters() if ".default." in n]
        self.value_params = [p for n, p in model.named_parameters() if ".value." in n]
        self.value_params += list(self.value_head.parameters())
        for p in self.value_params:
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW([{"params": self.policy_params, "lr": cfg.learning_rate},
                                            {"params": self.value_params, "lr": cfg.value_learning_rate}])
        total = cfg.max_steps * cfg.ppo_epochs * cfg.minibatches
        self.scheduler = get_scheduler(cfg.lr_scheduler, self.optimizer,
                                       num_warmup_steps=round(cfg.warmup_ratio * total), num_training_steps=total)
        self.minibatch_stats: list[dict] = []  # the last step's, per minibatch (tests read the first one)

    # -- forward passes ---------------------------------------------------------------------------
    def _logits(self, batch: Batch) -> torch.Tensor:
        width = batch.answers.shape[1]
        with self._autocast():
            out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             position_ids=batch.position_ids, logits_to_keep=width + 1, use_cache=False)
        return out.logits[:, :-1].float()  # the logits at position i predict token i + 1

    def _values(self, batch: Batch) -> torch.Tensor:
        q, width = batch.query_width, batch.answers.shape[1]
        with self._autocast():
            hidden = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                   position_ids=batch.position_ids, use_cache=False).last_hidden_state
        # The value of answer token t is read where the policy chose it: one position earlier.
        return self.value_head(hidden[:, q - 1:q - 1 + width].float()).squeeze(-1)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @torch.no_grad()
    def _score_rollouts(self, batch: Batch, chunk: int):
        temp = self.cfg.temperature
        logp, ref_logp, ent, values = [], [], [], []
        for idx in torch.arange(batch.answers.shape[0], device=self.device).split(chunk):
            sub = batch.rows(idx)
            self.model.set_adapter("default")
            logits = self._logits(sub)
            logp.append(token_logprobs(logits, sub.answers, temp))
            ent.append(entropy(logits, temp))
            self.model.set_adapter("ref")
            ref_logp.append(token_logprobs(self._logits(sub), sub.answers, temp))
            self.model.set_adapter("value")
            values.append(self._values(sub))
        self.model.set_adapter("default")
        return torch.cat(logp), torch.cat(ref_logp), torch.cat(ent), torch.cat(values)

    # -- one step ---------------------------------------------------------------------------------
    def step(self, step: int) -> tuple[dict, list[dict]]:
        cfg, ctx = self.cfg, self.ctx
        t0 = time.perf_counter()
        records = ctx.step_prompts(step, cfg.prompts_per_step)
        rendered = [ctx.spec.prompt(r["prompt"]) for r in records]
        completions = self.sampler.sample(rendered, 1, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                          seed=step_seed(cfg.seed, step, "rollout"), tag=f"step-{step}")
        t1 = time.perf_counter()
        samples = ctx.samples(records, completions, step)
        terms = ctx.reward_fn.terms(samples)
        t2 = time.perf_counter()

        batch = build_batch(self.sampler.gen.encode_prompts(rendered), [c[0].token_ids for c in completions],
                            self.tok.pad_token_id, self.device)
        n = batch.answers.shape[0]
        mb_size = -(-n // cfg.minibatches)
        old_logp, ref_logp, ent, old_values = self._score_rollouts(batch, mb_size)
        mask = batch.mask
        kl = kl_per_token(old_logp, ref_logp, cfg.kl_estimator) * mask
        scores = torch.tensor([t["score"] for t in terms], device=self.device)
        rewards = shaped_rewards(scores, kl, mask, batch.lengths, cfg.kl_coef) * cfg.reward_scale
        advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, mask)

        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, "minibatches"))
        stats = []
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(n, generator=gen).to(self.device).split(mb_size):
                stats.append(self._update(batch.rows(idx), old_logp[idx], advantages[idx], old_values[idx],
                                          returns[idx]))
        t3 = time.perf_counter()
        mb = {k: torch.stack([s[k] for s in stats]) for k in stats[0]}
        self.minibatch_stats = [dict(zip(mb, vals)) for vals in zip(*(v.tolist() for v in mb.values()))]

        k1 = ((old_logp - ref_logp) * mask).sum(-1)  # the KL estimate reported: unclamped, per answer
        row_kl = (kl.sum(-1) * cfg.kl_coef).tolist()
        per_token = torch.stack([masked_mean(ent, mask), k1.mean()]).tolist()
        metrics = {
            "step": step, "score": _mean(t["score"] for t in terms),
            "reward": _mean(t["score"] - k for t, k in zip(terms, row_kl)),
            "rm": _mean(t["rm"] for t in terms), "rm_raw": _mean(t["rm_raw"] for t in terms),
            "unfinished": _mean(t["unfinished"] for t in terms), "length_term": _mean(t["length"] for t in terms),
            "kl_penalty": -_mean(row_kl), "kl": per_token[1], "entropy": per_token[0],
            "length": _mean(s.tokens for s in samples), "finished": _mean(float(s.finished) for s in samples),
            "clip_fraction": _mean(s["clip_fraction"] for s in self.minibatch_stats),
            "value_loss": _mean(s["value_loss"] for s in self.minibatch_stats),
            "policy_loss": _mean(s["policy_loss"] for s in self.minibatch_stats),
            "ratio": _mean(s["ratio"] for s in self.minibatch_stats),
            "value_clip_fraction": _mean(s["value_clip_fraction"] for s in self.minibatch_stats),
            "lr": self.scheduler.get_last_lr()[0],
            "time_generate": t1 - t0, "time_score": t2 - t1, "time_train": t3 - t2,
        }
        rows = [rollout_record(step, 0, s, t, {"kl": k, "reward": t["score"] - k})
                for s, t, k in zip(samples, terms, row_kl)]
        return metrics, rows

    def _update(self, sub: Batch, old_logp, advantages, old_values, returns) -> dict:
        cfg = self.cfg
        self.model.set_adapter("default")
        logp = token_logprobs(self._logits(sub), sub.answers, cfg.temperature)
        pg_loss, ratio, clip_fraction = policy_loss(logp, old_logp, advantages, sub.mask, cfg.clip_range)
        pg_loss.backward()
        self.model.set_adapter("value")
        vf_loss, vf_clip = value_loss(self._values(sub), old_values, returns, sub.mask, cfg.value_clip_range)
        (cfg.vf_coef * vf_loss).backward()
        self.model.set_adapter("default")
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.policy_params, cfg.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(self.value_params, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(), "ratio": ratio,
                "clip_fraction": clip_fraction, "value_clip_fraction": vf_clip}

    # -- checkpoints and the loop -----------------------------------------------------------------
    def state(self) -> dict:
        from peft import get_peft_model_state_dict

        return {"policy": get_peft_model_state_dict(self.model, adapter_name="default"),
                "value": get_peft_model_state_dict(self.model, adapter_name="value"),
                "value_head": self.value_head.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state(self, state: dict) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, state["policy"], adapter_name="default")
        set_peft_model_state_dict(self.model, state["value"], adapter_name="value")
        self.model.set_adapter("default")
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def train(self, progress: bool = True) -> dict:
        from tqdm.auto import tqdm

        cfg, paths = self.cfg, self.ctx.paths
        ckpts = Checkpoints(paths.checkpoints, self.ctx.signature, resume=cfg.resume)
        state, start = ckpts.latest(), 0
        if state is not None:
            self.load_state(state)
            start = state["step"]
        start_logs(paths, start)
        metrics = MetricsLog(paths.metrics, paths.checkpoints / "runs" if cfg.report_to == "tensorboard" else None)
        from ..io import RecordLog

        rollouts = RecordLog(paths.rollouts)
        budget, stopped, done = Budget(cfg.max_minutes), "max_steps", start
        self.model.train()
        with tqdm(total=cfg.max_steps, initial=start, desc="ppo", disable=not progress) as bar:
            for step in range(start, cfg.max_steps):
                row, rows = self.step(step)
                metrics.append(row)
                rollouts.append(rows)
                done = step + 1
                bar.update(1)
                bar.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{row['kl']:.3f}", len=f"{row['length']:.0f}")
                out_of_time = budget.exceeded()
                if done % cfg.save_steps == 0 or done == cfg.max_steps or out_of_time:
                    ckpts.save(done, self.state())
                if out_of_time:
                    stopped = "max_minutes"
                    break
        metrics.close()
        return {"steps": done, "resumed_from": start or None, "stopped": stopped, "value_init": self.value_init}


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0
