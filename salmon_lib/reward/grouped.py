"""Reward-model training that computes each response's prefix once for all its principle draws.

The template (`template.py`) puts the response and the instruction first and the principles last.
Stage 03 draws several principle subsets for every pair of responses, and a negated subset swaps
which response wins, so the examples of one pair share just two prefixes: (instruction, response 1)
and (instruction, response 2). TRL's RewardTrainer runs every example as two full sequences.
Here one training row is a *group*: the two prefixes and every draw's principle suffix. The loss
runs each prefix once with gradients, continues every suffix from its prefix's KV cache (the
cache rows are selected per suffix, so gradients flow back into the shared prefix), and takes the
same Bradley-Terry loss over the draws. The gradients equal those of the unshared computation
(tests/test_reward_grouped.py); the cost of a group drops from 2 x draws full sequences to two
prefixes plus 2 x draws short suffixes.

Where a KV cache cannot carry gradients through the trainer (gradient checkpointing, which turns
the cache off, or several processes, where DDP/FSDP must see the forward call) the same groups are
run as full sequences through the model's own forward.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from trl import RewardTrainer

from .pairs import Pair


def group_pairs(tok, template, pairs: Sequence[Pair]) -> tuple[dict[str, list], int]:
    """Columns of a grouped dataset: `prefix_ids` (the two responses' prefixes), `suffix_ids` (one
    principle suffix per draw) and `first_wins` (per draw, whether response 1 is the chosen one).
    Also returns how many pairs had text cut to the template's limits."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    n_cut = 0
    for p in pairs:
        first, second = sorted((p.chosen, p.rejected))
        key = (p.prompt, first, second)
        if key not in groups:
            prefixes, cut = [], False
            for response in (first, second):
                ids, c = template.encode_prefix(tok, p.prompt, response)
                prefixes.append(ids)
                cut = cut or c
            groups[key] = {"prefix_ids": prefixes, "suffix_ids": [], "first_wins": [], "cut": cut}
        g = groups[key]
        g["suffix_ids"].append(template.encode_suffix(tok, p.principles))
        g["first_wins"].append(p.chosen == first)
        n_cut += g["cut"]
    columns = {name: [g[name] for g in groups.values()] for name in ("prefix_ids", "suffix_ids", "first_wins")}
    return columns, n_cut


def _pad(seqs: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[row, sl], mask[row, sl] = torch.tensor(s, dtype=torch.long), 1
    return ids, mask


class GroupCollator:
    """Batches groups: prefixes left-padded (so every suffix continues right after its prefix's
    last real token), suffixes right-padded, and for each draw the chosen and rejected rows."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, groups: list[dict]) -> dict[str, torch.Tensor]:
        prefixes, suffixes, source, chosen, rejected = [], [], [], [], []
        for g in groups:
            base = len(prefixes)
            prefixes += g["prefix_ids"]
            for suffix, first_wins in zip(g["suffix_ids"], g["first_wins"]):
                winner, loser = (base, base + 1) if first_wins else (base + 1, base)
                for prefix_row, side in ((winner, chosen), (loser, rejected)):
                    side.append(len(suffixes))
                    suffixes.append(suffix)
                    source.append(prefix_row)
        prefix_ids, prefix_mask = _pad(prefixes, self.pad_id, left=True)
        suffix_ids, suffix_mask = _pad(suffixes, self.pad_id, left=False)
        return {"prefix_ids": prefix_ids, "prefix_mask": prefix_mask, "suffix_ids": suffix_ids,
                "suffix_mask": suffix_mask, "source": torch.tensor(source), "chosen": torch.tensor(chosen),
                "rejected": torch.tensor(rejected)}


def shared_rewards(backbone, head, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One reward per suffix row: the prefixes once, each suffix from its prefix's cache."""
    from transformers import DynamicCache

    pmask, src = batch["prefix_mask"], batch["source"]
    cache = backbone(input_ids=batch["prefix_ids"], attention_mask=pmask,
                     position_ids=(pmask.cumsum(-1) - 1).clamp(min=0), use_cache=True).past_key_values
    rows = DynamicCache(ddp_cache_data=[(layer.keys.index_select(0, src), layer.values.index_select(0, src))
                                        for layer in cache.layers])
    smask = batch["suffix_mask"]
    positions = pmask.sum(-1)[src].unsqueeze(1) + torch.arange(smask.shape[1], device=smask.device)
    hidden = backbone(input_ids=batch["suffix_ids"], attention_mask=torch.cat([pmask[src], smask], dim=1),
                      position_ids=positions, past_key_values=rows, use_cache=True).last_hidden_state
    last = smask.sum(-1) - 1
    return head(hidden[torch.arange(len(last), device=last.device), last]).squeeze(-1)


def full_rewards(model, batch: dict[str, torch.Tensor], pad_id: int) -> torch.Tensor:
    """The same rewards from whole sequences (prefix + suffix) through the model's own forward."""
    prefixes = [ids[m.bool()].tolist() for ids, m in zip(batch["prefix_ids"], batch["prefix_mask"])]
    suffixes = [ids[m.bool()].tolist() for ids, m in zip(batch["suffix_ids"], batch["suffix_mask"])]
    seqs = [prefixes[int(s)] + suffix for s, suffix in zip(batch["source"], suffixes)]
    ids, mask = _pad(seqs, pad_id, left=False)
    device = batch["suffix_ids"].device
    return model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits.squeeze(-1)


def backbone_and_head(model) -> tuple[nn.Module, nn.Module]:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, inner.base_model_prefix), inner.score


class GroupedRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer (optimiser, schedule, PEFT, logging, saving) on grouped rows; only the
    loss is computed here. Use with `remove_unused_columns=False` and `prediction_loss_only=True`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.share_prefix = not self.args.gradient_checkpointing and self.accelerator.num_processes == 1

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # grouped rows are built and tokenized by `group_pairs`

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        if self.share_prefix:
            rewards = shared_rewards(*backbone_and_head(self.accelerator.unwrap_model(model)), inputs)
        else:
            rewards = full_rewards(model, inputs, self.processing_class.pad_token_id)
        chosen, rejected = rewards[inputs["chosen"]], rewards[inputs["rejected"]]
        loss = -nn.functional.logsigmoid(chosen - rejected).mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
        if mode == "train":
            self._total_train_tokens += int(inputs["prefix_mask"].sum() + inputs["suffix_mask"].sum())
        metrics = self._metrics[mode]
        metrics["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            metrics["min_reward"].append(rewards.min().item())
            metrics["mean_reward"].append(rewards.mean().item())
            metrics["max_reward"].append(rewards.max().item())
            metrics["accuracy"].append((chosen > rejected).float().mean().item())
            metrics["margin"].append((chosen - rejected).mean().item())
        return (loss, {"rewards": rewards}) if return_outputs else loss


def group_stats(columns: dict[str, list]) -> dict[str, float]:
    sizes = [len(s) for s in columns["suffix_ids"]]
    return {"groups": len(sizes), "draws": sum(sizes), "mean_draws": sum(sizes) / len(sizes) if sizes else 0.0}
