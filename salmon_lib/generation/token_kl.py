"""KL(policy || reference) along given answers, from full next-token distributions (HF only).

The KL between two sequence distributions equals the expectation, over sequences drawn from the
first, of the per-position KL between their next-token distributions. Summing the exact
per-position KL (over the whole vocabulary, both models at the sampling temperature) along an
answer the policy sampled at that temperature is therefore an unbiased, never-negative estimate of
the tempered sequence KL, with far less noise than log-ratio estimates. Policy and reference are two
adapters of one model: each batch runs once under each.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Sequence

import torch

MAX_POSITIONS = 1024  # kept logit rows per forward pass (rows x vocab floats each, twice)


def batches_by_positions(answer_lengths: Sequence[int], total_lengths: Sequence[int],
                         max_positions: int = MAX_POSITIONS) -> list[list[int]]:
    """Row indices, longest row first (little padding), in batches whose kept logit rows (the
    longest answer's, per row) stay under `max_positions`."""
    order = sorted(range(len(answer_lengths)), key=lambda i: -total_lengths[i])
    out, batch = [], []
    for i in order:
        if batch and (max(answer_lengths[j] for j in batch + [i]) + 1) * (len(batch) + 1) > max_positions:
            out.append(batch)
            batch = []
        batch.append(i)
    return out + [batch] if batch else out


def token_kl(model, pad_id: int, prompt_ids: Sequence[list[int]], answer_ids: Sequence[list[int]],
             policy: Callable[[], AbstractContextManager], reference: Callable[[], AbstractContextManager],
             temperature: float, bar=None) -> list[float]:
    """Per row: the summed per-position KL(policy || reference) over the answer's tokens, in nats.
    `policy()` and `reference()` make the model act as each (adapter switches)."""
    device = next(model.parameters()).device
    out = [0.0] * len(prompt_ids)
    lengths = [len(a) for a in answer_ids]
    for batch in batches_by_positions(lengths, [len(p) + n for p, n in zip(prompt_ids, lengths)]):
        full = [list(prompt_ids[i]) + list(answer_ids[i]) for i in batch]
        width, keep = max(map(len, full)), max(len(answer_ids[i]) for i in batch) + 1
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(full):  # left padding: every answer ends at the right edge
            ids[r, width - len(s):], mask[r, width - len(s):] = torch.tensor(s), 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        args = dict(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                    logits_to_keep=keep)
        with torch.inference_mode():
            with policy():
                logp = torch.log_softmax(model(**args).logits.float() / temperature, dim=-1)
            with reference():
                logq = torch.log_softmax(model(**args).logits.float() / temperature, dim=-1)
            per_position = (logp.exp() * (logp - logq)).sum(-1)  # (rows, keep)
        for r, i in enumerate(batch):
            n = len(answer_ids[i])
            # outputs predicting the answer's n tokens are the n columns before the last one
            out[i] = float(per_position[r, keep - 1 - n:keep - 1].sum())
        if bar is not None:
            bar.update(len(batch))
    return out
