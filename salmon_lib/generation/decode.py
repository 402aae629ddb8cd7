"""The HF backend's decoding loop.

`model.generate` leaves two costs on the table that dominate a small model on a CPU:
- sampling: its top-p sorts the whole vocabulary (49k entries for SmolLM2) for every row at every
  step, and its multinomial draw walks the whole vocabulary too; together about a fifth of the
  decoding time of the 135M model (profiled). `sample` draws exactly the same distribution from the
  few hundred most likely tokens, which almost always hold the whole nucleus, and sorts the full
  vocabulary only for a row where they do not;
- finished rows: a row that has hit EOS or a stop string keeps being computed (as padding) until
  the longest row of its batch ends. `decode` drops finished rows from the batch and its KV cache.

Each row draws from its own seeded `torch.Generator` (see `seeding`), so a prompt's sample is the
same alone and in any batch.

Sampling follows exactly the interface's arguments (temperature, top_p, no top-k), as the vLLM
backend does; a model's generation_config sampling defaults are not applied.

Classifier-free guidance (`guidance_scale` != 1): every row has a partner in the second half of the
batch, the same request under a contrast prompt. The two run in one forward pass and take the same
tokens; the row samples from contrast + scale x (row - contrast), in log-probabilities, before
temperature and top-p (as transformers' `UnbatchedClassifierFreeGuidanceLogitsProcessor`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

# Candidates read per row before falling back to a full sort: the nucleus of a chat model at
# T <= 1 is nearly always far smaller.
CANDIDATES = 256


def sample(logits: torch.Tensor, temperature: float, top_p: float, uniform: torch.Tensor | None = None,
           candidates: int = CANDIDATES) -> torch.Tensor:
    """One token per row of `logits` (rows x vocab): greedy for temperature 0, else a draw from
    softmax(logits / temperature) restricted to its top-p nucleus (the smallest set of most likely
    tokens whose probability reaches top_p, as transformers' TopPLogitsWarper keeps it).

    Inverse-CDF sampling over the tokens in descending probability with one uniform draw per row
    (`uniform`, drawn here if not given): the token whose cumulative interval holds uniform x
    nucleus mass. When that lies among the top `candidates` tokens only they are needed; otherwise
    the row is redone over its fully sorted vocabulary with the same draw."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if uniform is None:
        uniform = torch.rand(logits.shape[0], device=logits.device)
    k = min(candidates, logits.shape[-1])
    top, idx = logits.topk(k, dim=-1)
    probs = (top - torch.logsumexp(logits, dim=-1, keepdim=True)).exp()
    cum = probs.cumsum(-1)
    if top_p >= 1.0:  # the nucleus is the whole vocabulary
        u = uniform
        inside = u < cum[:, -1]
    else:
        # a token is in the nucleus while the probability of the tokens before it is below top_p
        in_nucleus = (cum - probs) < top_p
        u = uniform * (probs * in_nucleus).sum(-1)
        inside = ~in_nucleus[:, -1]  # the nucleus ends among the candidates
    pick = torch.searchsorted(cum, u.unsqueeze(-1)).clamp(max=k - 1)
    tokens = idx.gather(-1, pick).squeeze(-1)
    for row in (~inside).nonzero().flatten().tolist():
        tokens[row] = _sample_sorted(logits[row], top_p, float(uniform[row]))
    return tokens


def _sample_sorted(logits: torch.Tensor, top_p: float, uniform: float) -> int:
    """The same draw for one row over its whole vocabulary, sorted."""
    probs, order = logits.softmax(-1).sort(descending=True)
    cum = probs.cumsum(-1)
    u = uniform * float(probs[(cum - probs) < top_p].sum())
    pick = int(torch.searchsorted(cum, torch.tensor([u], dtype=cum.dtype)).clamp(max=len(cum) - 1))
    return int(order[pick])


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


class StopCheck:
    """Whether a row's generated tokens end in EOS or contain a stop string."""

    def __init__(self, tokenizer, stop: tuple[str, ...], eos_ids: set[int]):
        self.tokenizer, self.stop, self.eos_ids = tokenizer, stop, eos_ids
        # A stop string that just appeared ends within the last len(stop) tokens (tokens are >= 1 char);
        # a few more tokens of context keep byte-level pieces decoding as they do in the full text.
        self.window = max((len(s) for s in stop), default=0) + 4

    def __call__(self, tokens: list[int]) -> str | None:
        """"eos", "string" or None (not finished)."""
        if tokens[-1] in self.eos_ids:
            return "eos"
        if self.stop:
            tail = self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=False)
            if any(s in tail for s in self.stop):
                return "string"
        return None


@dataclasses.dataclass
class Decoded:
    tokens: list[int]  # generated ids, up to and including the one that ended the row
    ended_by: str | None  # "eos", "string", or None when max_new_tokens ran out


def to_completion(tokenizer, d: Decoded, stop: tuple[str, ...]):
    """The interface's Completion: text cut before the stop string; an EOS is no part of the text."""
    from .base import Completion

    if d.ended_by is None:
        return Completion(tokenizer.decode(d.tokens, skip_special_tokens=False), d.tokens, "length", len(d.tokens))
    text_ids = d.tokens[:-1] if d.ended_by == "eos" else d.tokens
    text = cut_at_stop(tokenizer.decode(text_ids, skip_special_tokens=False), stop)
    return Completion(text, d.tokens, "stop", len(d.tokens))


def guide(logits: torch.Tensor, scale: float, plausibility: float = 0.0) -> torch.Tensor:
    """Rows [conditioned; contrast] (2R x vocab) -> the R guided rows, in log-probabilities: the
    conditioned distribution pushed away from the contrast by `scale` (1: unchanged), over the
    tokens whose conditioned probability is at least `plausibility` x its largest (0: all)."""
    half = logits.shape[0] // 2
    cond, contrast = logits[:half].float().log_softmax(-1), logits[half:].float().log_softmax(-1)
    guided = contrast + scale * (cond - contrast)
    if plausibility > 0:
        floor = cond.max(-1, keepdim=True).values + math.log(plausibility)
        guided = guided.masked_fill(cond < floor, float("-inf"))
    return guided


@torch.no_grad()
def decode(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, temperature: float, top_p: float,
           check: StopCheck, seeds: Sequence[int], past_key_values=None, guidance_scale: float = 1.0,
           plausibility: float = 0.0) -> list[Decoded]:
    """Generate after each row of `ids` (rows x width, padding masked out by `mask`); row r samples
    with its own generator seeded `seeds[r]`, so its draws do not depend on the other rows. With
    `past_key_values`, its first `cache length` columns are already in the cache (a shared
    prefix, expanded to one cache row per row). Rows leave the batch as soon as they end.
    With `guidance_scale` != 1 the second half of `ids` holds the first half's contrast prompts
    (see the module's docstring, also for `plausibility`); `seeds` and the results are the first half's."""
    guided = guidance_scale != 1.0
    if guided and (ids.shape[0] % 2 or past_key_values is not None):
        raise ValueError("guidance needs an even number of rows (each row, then its contrast) and no shared prefix")
    if len(seeds) != ids.shape[0] // (2 if guided else 1):
        raise ValueError(f"{len(seeds)} seeds for {ids.shape[0]} rows")
    device = next(model.parameters()).device
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds] if temperature > 0 else []
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cached = past_key_values.get_seq_length() if past_key_values is not None else 0
    out = model(input_ids=ids[:, cached:], attention_mask=mask, position_ids=positions[:, cached:],
                past_key_values=past_key_values, use_cache=True, logits_to_keep=1)
    cache, next_pos = out.past_key_values, positions[:, -1] + 1
    results = [Decoded([], None) for _ in range(len(seeds))]
    active = list(range(len(seeds)))  # result index of each batch row (of its first half when guided)
    for _ in range(max_new_tokens):
        # One uniform per row and step from the row's own generator: a row's draws do not depend on
        # which rows share its batch or have left it.
        uniform = torch.cat([torch.rand(1, generator=generators[r], device=device) for r in active]) \
            if temperature > 0 else None
        logits = guide(out.logits[:, -1, :], guidance_scale, plausibility) if guided else out.logits[:, -1, :]
        tokens = sample(logits, temperature, top_p, uniform)
        keep = []
        for b, tok in enumerate(tokens.tolist()):
            r = results[active[b]]
            r.tokens.append(tok)
            r.ended_by = check(r.tokens)
            if r.ended_by is None:
                keep.append(b)
        if not keep or len(results[active[0]].tokens) == max_new_tokens:
            break
        if len(keep) < len(active):
            rows = torch.tensor(keep + [b + len(active) for b in keep] if guided else keep, device=device)
            cache.batch_select_indices(rows)
            mask, next_pos = mask[rows], next_pos[rows]
            tokens = tokens[rows[:len(keep)]]
            active = [active[b] for b in keep]
        if guided:
            tokens = tokens.repeat(2)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=next_pos.unsqueeze(1),
                    past_key_values=cache, use_cache=True)
        next_pos = next_pos + 1
    return results
