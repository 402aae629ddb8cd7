"""PPO's tensor arithmetic, as pure functions so each detail is tested on its own.

Shapes: `[B, T]` over the answer tokens of a batch (right-padded), with `mask` 1 on real answer
tokens. The mask comes from each answer's length, never from comparing ids to the pad id: on
SmolLM2 the pad token IS the end-of-turn token, and a mask built from `ids != pad` would drop the
one token that teaches the policy to stop.
"""

from __future__ import annotations

import torch


def answer_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """1 on the first `lengths[i]` positions of each row (the end-of-turn token included)."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).to(torch.float32)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log π(token) under the distribution the tokens were sampled from: logits / temperature."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """k1 = log π - log π_ref; SALMON clamps it at 0 ("k1_clamped"); k3 = (r - 1) - log r with
    r = π_ref / π is unbiased and never negative."""
    diff = logp - ref_logp
    if estimator == "k1":
        return diff
    if estimator == "k1_clamped":
        return diff.clamp(min=0)
    if estimator == "k3":
        return torch.expm1(-diff) + diff
    raise ValueError(f"unknown KL estimator {estimator!r}")


def shaped_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor,
                   kl_coef: float) -> torch.Tensor:
    """Per-token rewards: -kl_coef·KL on every answer token, plus the sequence score on the last
    real token (the end-of-turn token, or the last one generated when the limit cut the answer),
    not on the last padded slot as SALMON's code does."""
    rewards = -kl_coef * kl * mask
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    return rewards.index_put((rows, lengths - 1), scores.to(rewards.dtype), accumulate=True)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over each answer; nothing follows the last real token, so
    its successor's value is 0. Returns (advantages, returns = advantages + values), 0 on padding."""
    values = values * mask
    rewards = rewards * mask
    width = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        adv[:, t] = running
    return adv, (adv + values) * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float):
    """Clipped surrogate; returns (loss, ratio mean, clip fraction) with the last two detached."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, masked_mean(ratio, mask).detach(), clip_fraction.detach()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float):
    """Clipped value loss 0.5·max((v - R)², (clip(v) - R)²); returns (loss, clip fraction)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    unclipped_err, clipped_err = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    return loss, masked_mean((clipped_err > unclipped_err).float(), mask).detach()
