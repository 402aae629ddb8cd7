"""Log-prob scoring with one forward pass per batch, computing shared token prefixes once.

The judge's prompts put the principle after the instruction and both outputs, and the reward
template puts the principles after the response: many rows share a long prefix. Rows are sorted by
their token ids so that rows sharing a prefix are neighbours; a row joins its neighbour's group when
that saves computation. A group's prefix is run once (batch 1); its KV cache is copied and expanded
over each batch of the group's suffixes. Rows without a partner are batched by length. Only the
positions that are scored go through the LM head, so the vocabulary-sized logits stay small.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Iterable

import torch

# Rows x output positions per batch that go through the LM head: the logits of a batch are
# rows x positions x vocabulary floats (2048 x 49152 x 4 bytes = 400 MB for SmolLM2).
MAX_SCORED = 2048


@dataclasses.dataclass
class ScoreRow:
    ids: list[int]  # the token sequence fed to the model
    # (t, token): the log-prob of `token` at position t, i.e. predicted from the output at t-1;
    # t may be len(ids) (a token after the row, as for single-token options).
    queries: list[tuple[int, int]]

    @property
    def first_output(self) -> int:
        return min(t for t, _ in self.queries) - 1


def _lcp(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def group_rows(rows: list[ScoreRow], min_shared: int) -> list[tuple[int, list[int]]]:
    """[(prefix_len, row indices)]: groups of rows sharing their first `prefix_len` tokens
    (prefix_len 0: rows scored without a shared prefix).

    A row joins the current group when that costs fewer token computations than leaving it out:
    joining k members with shared prefix p shrinks the prefix to p' and saves p' tokens of the row
    but costs (k-1)(p-p') tokens for the other members."""
    order = sorted(range(len(rows)), key=lambda i: rows[i].ids)
    groups: list[tuple[int, list[int]]] = []
    members: list[int] = []
    p = 0
    for i in order:
        if members:
            prev = rows[members[-1]].ids
            p_new = min(_lcp(prev, rows[i].ids), rows[i].first_output, p if len(members) > 1 else len(prev))
            p_new = min(p_new, rows[members[0]].first_output)
            if p_new >= min_shared and (len(members) - 1) * (p - p_new) < p_new:
                members.append(i)
                p = p_new
                continue
            groups.append((p if len(members) > 1 else 0, members))
        members, p = [i], 0
    if members:
        groups.append((p if len(members) > 1 else 0, members))
    singles = [i for plen, m in groups if plen == 0 for i in m]
    return [(plen, m) for plen, m in groups if plen > 0] + ([(0, singles)] if singles else [])


def _batches(indices: list[int], rows: list[ScoreRow], start: int, max_rows: int, max_tokens: int,
             max_scored: int | None = None) -> Iterable[list[int]]:
    """Length-sorted batches, each padded to its own longest row, within the token budget and the
    budget of output positions that go through the LM head (rows x positions kept)."""
    max_scored = max_scored or MAX_SCORED
    indices = sorted(indices, key=lambda i: len(rows[i].ids), reverse=True)
    batch: list[int] = []
    keep = 0
    for i in indices:
        width = len(rows[batch[0]].ids) - start if batch else len(rows[i].ids) - start
        row_keep = max(keep, len(rows[i].ids) - rows[i].first_output)
        if batch and (len(batch) >= max_rows or width * (len(batch) + 1) > max_tokens
                      or row_keep * (len(batch) + 1) > max_scored):
            yield batch
            batch, row_keep = [], len(rows[i].ids) - rows[i].first_output
        batch.append(i)
        keep = row_keep
    if batch:
        yield batch


@torch.no_grad()
def _score_batch(model, rows: list[ScoreRow], start: int, prefix_cache, pad_id: int, device) -> list[list[float]]:
    """Run the suffixes `row.ids[start:]` (left-padded) after an optional prefix cache of length
    `start`; return each row's query log-probs."""
    suffixes = [r.ids[start:] for r in rows]
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, s in enumerate(suffixes):
        ids[b, width - len(s):] = torch.tensor(s)
        mask[b, width - len(s):] = 1
    positions = (start + mask.cumsum(-1) - 1).clamp(min=start)
    kwargs = {}
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)  # the forward pass extends the cache in place
        cache.batch_repeat_interleave(len(rows))
        kwargs["past_key_values"] = cache
        mask = torch.cat([torch.ones((len(rows), start), dtype=torch.long), mask], dim=1)
    # Outputs needed per row: from its first scored output to its last token; left padding aligns
    # every row's end at the right edge, so one `logits_to_keep` covers them all.
    keep = max(len(r.ids) - r.first_output for r in rows)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                use_cache=prefix_cache is not None, logits_to_keep=keep, **kwargs)
    result = []
    for b, r in enumerate(rows):
        # output at position t-1 sits (len(ids) - t) columns left of the last kept column
        cols = torch.tensor([keep - 1 - (len(r.ids) - t) for t, _ in r.queries], device=out.logits.device)
        toks = torch.tensor([tok for _, tok in r.queries], device=out.logits.device)
        # only the queried positions are normalised: no vocabulary-sized copy of every kept position
        logits = out.logits[b, cols].float()
        result.append((logits.gather(-1, toks[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)).tolist())
    return result


@torch.no_grad()
def score_rows(model, rows: list[ScoreRow], pad_id: int, *, share_prefix: bool = True, min_shared: int = 16,
               max_rows: int = 16, max_tokens: int = 8192, progress=None) -> list[list[float]]:
    """Each row's query log-probs. `progress` (a tqdm bar or None) advances by rows done.

    Identical rows (the same pair judged twice, two equal answers) are scored once."""
    first: dict[tuple, int] = {}
    owner = [first.setdefault((tuple(r.ids), tuple(r.queries)), i) for i, r in enumerate(rows)]
    if len(first) < len(rows):
        distinct = sorted(first.values())
        scores = score_rows(model, [rows[i] for i in distinct], pad_id, share_prefix=share_prefix,
                            min_shared=min_shared, max_rows=max_rows, max_tokens=max_tokens, progress=progress)
        by_row = dict(zip(distinct, scores))
        if progress is not None:
            progress.update(len(rows) - len(distinct))
        return [list(by_row[o]) for o in owner]
    device = next(model.parameters()).device
    results: list[list[float] | None] = [None] * len(rows)
    groups = group_rows(rows, min_shared) if share_prefix else [(0, list(range(len(rows))))]
    for plen, members in groups:
        prefix_cache = None
        if plen > 0:
            prefix = torch.tensor([rows[members[0]].ids[:plen]], device=device)
            prefix_cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        for batch in _batches(members, rows, plen, max_rows, max_tokens):
            scores = _score_batch(model, [rows[i] for i in batch], plen, prefix_cache, pad_id, device)
            for i, s in zip(batch, scores):
                results[i] = s
            if progress is not None:
                progress.update(len(batch))
    return results
