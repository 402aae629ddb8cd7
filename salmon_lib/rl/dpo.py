"""Iterative, online-ish DPO: each round samples `group_size` answers per prompt from the current
policy, ranks them with the reward function under the prompt's drawn principles, and trains TRL's
`DPOTrainer` on the best against the worst answer of each prompt. The reference of each round is
the policy as it entered the round (TRL copies the "default" adapter to "ref"), the usual choice
for iterative DPO; round 0's reference is the SFT policy.
"""

from __future__ import annotations

import logging

from ..mixed_precision import release_autocast, train_in_bf16
from .context import Context
from .rounds import run_rounds, sequence_budget

log = logging.getLogger(__name__)


def preference_pairs(rendered: list[str], groups: list[list], term_groups: list[list[dict]], completion_end: str):
    """(pairs, roles): best vs worst answer per prompt by score; prompts whose answers tie or
    repeat one text give no pair. A finished answer keeps its end-of-turn marker, so DPO also
    learns where to stop; an answer cut at the token limit keeps none (`chosen_finished`,
    `rejected_finished` say which, for `CutAwareDPO`)."""
    pairs, roles = [], []
    for prompt, samples, terms in zip(rendered, groups, term_groups):
        scores = [t["score"] for t in terms]
        best = max(range(len(scores)), key=scores.__getitem__)
        worst = min(range(len(scores)), key=scores.__getitem__)
        group_roles = [None] * len(samples)
        if scores[best] > scores[worst] and samples[best].response != samples[worst].response:
            text = [s.response + (completion_end if s.finished else "") for s in samples]
            pairs.append({"prompt": prompt, "chosen": text[best], "rejected": text[worst],
                          "chosen_finished": samples[best].finished, "rejected_finished": samples[worst].finished})
            group_roles[best], group_roles[worst] = "chosen", "rejected"
        roles += group_roles
    return pairs, roles


def cut_aware(trainer_cls):
    """`trainer_cls` (TRL's DPOTrainer) tokenizing the pairs itself: TRL appends the EOS to every
    text completion, which would teach the policy that an answer cut at the token limit stopped
    there. Finished answers get the EOS (after the format's end when that is not the EOS)."""

    class CutAwareDPO(trainer_cls):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            tok = getattr(processing_class, "tokenizer", processing_class)
            eos = tok.eos_token_id

            def tokenize(row):
                out = {"prompt_ids": tok(row["prompt"])["input_ids"]}
                for side in ("chosen", "rejected"):
                    ids = tok(row[side], add_special_tokens=False)["input_ids"]
                    if row[f"{side}_finished"] and (not ids or ids[-1] != eos):
                        ids = ids + [eos]
                    out[f"{side}_ids"] = ids
                return out

            return dataset.map(tokenize, remove_columns=dataset.column_names)

    CutAwareDPO.__name__ = trainer_cls.__name__
    return CutAwareDPO


def train_dpo(ctx: Context, model, tokenizer, sampler, progress: bool = True) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from ..engrave.lm_head import score_labelled_positions_only

    score_labelled_positions_only()
    cfg = ctx.cfg
    max_length = sequence_budget(ctx, tokenizer)
    cuda = torch.cuda.is_available()
    # DPO compares summed log-probs of the policy with its reference's: on a CPU under bf16 autocast
    # its positive control made answers longer instead of shorter (tests/test_rl_positive_control.py),
    # so `auto` keeps it in fp32 there
    precision = "no" if cfg.mixed_precision == "auto" and not cuda else cfg.mixed_precision

    def train_round(r, rendered, groups, term_groups):
        pairs, roles = preference_pairs(rendered, groups, term_groups, ctx.spec.completion_end)
        if not pairs:
            log.warning("round %d: every prompt's answers tied; no DPO step", r)
            return roles, {"pairs": 0}
        args = DPOConfig(
            output_dir=str(ctx.paths.checkpoints / "dpo_round"), seed=cfg.seed + r, beta=cfg.dpo_beta,
            learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, max_grad_norm=cfg.max_grad_norm,
            num_train_epochs=cfg.sft_epochs, per_device_train_batch_size=max(1, len(pairs) // cfg.minibatches),
            max_length=max_length, gradient_checkpointing=cfg.gradient_checkpointing,
            bf16=train_in_bf16(precision, cuda, model.dtype), use_cpu=not cuda, logging_steps=1,
            save_strategy="no", report_to=[], disable_tqdm=not progress)
        trainer = cut_aware(DPOTrainer)(model=model, args=args, train_dataset=Dataset.from_list(pairs),
                                        processing_class=tokenizer, callbacks=[release_autocast()])
        trainer.train()
        model.delete_adapter("ref")
        model.set_adapter("default")
        logged = [h for h in trainer.state.log_history if "loss" in h]
        last = logged[-1] if logged else {}
        return roles, {"pairs": len(pairs), "policy_loss": last.get("loss"),
                       "dpo_accuracy": last.get("rewards/accuracies"), "dpo_margin": last.get("rewards/margins")}

    return run_rounds(ctx, model, sampler, train_round, progress)
