"""best_of_n: ALMoST's RM-guided self-play in its simplest honest form. Each round samples
`group_size` answers per prompt from the current policy, keeps the one the reward function scores
highest under the prompt's drawn principles, and fine-tunes the policy on the winners with the
stage-02 trainer (`engrave.train.make_trainer`: the same chat spec and completion-only loss). A
winner cut at the token limit is trained without an end of turn, so the policy is not taught to
stop wherever the limit fell.

`context_distill` is the same loop with the answers sampled under a guided prompt (the prompt's
drawn principles in the system message) and trained under the plain one: Self-Align's engraving
of principles, one round at a time; with `group_size` > 1 the reward also picks among them."""

from __future__ import annotations

import math

from .context import Context
from .rounds import run_rounds, sequence_budget


def winners(groups: list[list], term_groups: list[list[dict]]) -> tuple[list[dict], list]:
    """(SFT records, roles): the best-scoring answer of each prompt."""
    records, roles = [], []
    for samples, terms in zip(groups, term_groups):
        best = max(range(len(terms)), key=lambda i: terms[i]["score"])
        s = samples[best]
        records.append({"id": s.prompt_id, "prompt": s.instruction, "response": s.response, "kept": True,
                        "finished": s.finished})
        roles += ["best" if i == best else None for i in range(len(samples))]
    return records, roles


def train_best_of_n(ctx: Context, model, tokenizer, sampler, progress: bool = True, guided: bool = False) -> dict:
    from ..engrave.config import EngraveConfig
    from ..engrave.train import make_trainer

    cfg, spec = ctx.cfg, ctx.spec
    max_length = sequence_budget(ctx, tokenizer)

    def train_round(r, rendered, groups, term_groups):
        records, roles = winners(groups, term_groups)
        sft = EngraveConfig(
            run_dir=str(ctx.paths.checkpoints / "best_of_n_sft"), seed=cfg.seed + r, model=cfg.model,
            chat_format=spec.chat_format, assistant_name=spec.assistant_name,
            assistant_creator=spec.assistant_creator, system_variants=list(spec.system_variants),
            method="lora", quantization=cfg.quantization, learning_rate=cfg.learning_rate,
            lr_scheduler=cfg.lr_scheduler, warmup_ratio=0.0, max_grad_norm=cfg.max_grad_norm, epochs=cfg.sft_epochs,
            batch_size=max(1, math.ceil(len(records) / cfg.minibatches)), grad_accum=1,
            max_length=max_length, save_steps=10**9, heldout=0, report_to="none",
            gradient_checkpointing=cfg.gradient_checkpointing, mixed_precision=cfg.mixed_precision)
        trainer, _ = make_trainer(sft, records, loaded=(tokenizer, model))
        trainer.train()
        logged = [h for h in trainer.state.log_history if "loss" in h]
        return roles, {"winners": len(records), "policy_loss": logged[-1]["loss"] if logged else None,
                       "winner_score": sum(max(t["score"] for t in ts) for ts in term_groups) / len(term_groups)}

    return run_rounds(ctx, model, sampler, train_round, progress, guided=guided)
