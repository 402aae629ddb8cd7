"""PPO's implementation details, each on its own (SALMON's code gets several of them wrong)."""

import pytest
import torch

from salmon_lib.rl.ppo import build_batch
from salmon_lib.rl.ppo_math import (
    answer_mask,
    gae,
    kl_per_token,
    masked_whiten,
    policy_loss,
    shaped_rewards,
    token_logprobs,
    value_loss,
)

EOS = PAD = 2  # as on SmolLM2: the pad token is the end-of-turn token


def test_end_of_turn_token_stays_in_the_mask_although_pad_is_eos():
    answers = [[5, 6, EOS], [7, EOS], [8, 9, 10, 11]]  # the last one was cut by the token limit
    batch = build_batch([[1, 3], [1, 3, 4], [3]], answers, PAD, "cpu")
    assert batch.mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch.answers[1].tolist() == [7, EOS, PAD, PAD]  # an id test would have kept or dropped all three
    assert (batch.answers[batch.mask.bool()] == EOS).sum() == 2
    # Left-padded prompts: positions count real tokens only.
    assert batch.position_ids[0].tolist()[:6] == [0, 0, 1, 2, 3, 4] and batch.query_width == 3
    assert answer_mask(torch.tensor([0, 2]), 3).tolist() == [[0, 0, 0], [1, 1, 0]]


def test_logprobs_use_the_sampling_temperature():
    torch.manual_seed(0)
    logits, tokens = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, tokens[..., None])[..., 0]
    assert torch.allclose(token_logprobs(logits, tokens, 0.7), expected)
    assert not torch.allclose(token_logprobs(logits, tokens, 1.0), expected)


def test_score_sits_on_the_last_real_token_and_kl_on_every_token():
    mask = answer_mask(torch.tensor([3, 1]), 4)
    kl = torch.full((2, 4), 0.5)
    rewards = shaped_rewards(torch.tensor([2.0, -1.0]), kl * mask, mask, torch.tensor([3, 1]), kl_coef=0.1)
    assert torch.allclose(rewards, torch.tensor([[-0.05, -0.05, 2.0 - 0.05, 0.0], [-1.05, 0.0, 0.0, 0.0]]))


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value():
    torch.manual_seed(1)
    mask = answer_mask(torch.tensor([5, 3]), 5)
    rewards, values = torch.randn(2, 5) * mask, torch.randn(2, 5)
    adv, returns = gae(rewards, values, mask, 1.0, 1.0)
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)
    assert torch.allclose(adv, (to_go - values) * mask, atol=1e-6)
    assert torch.allclose(returns, to_go * mask, atol=1e-6)
    # With discounting, a one-step delta at λ=0: r_t + γ V_{t+1} - V_t (0 after the last real token).
    adv0, _ = gae(rewards, values, mask, 0.9, 0.0)
    v = values * mask
    nxt = torch.cat([v[:, 1:], torch.zeros(2, 1)], 1)
    assert torch.allclose(adv0, (rewards + 0.9 * nxt - v) * mask, atol=1e-6)


def test_policy_loss_ratio_one_and_no_clipping_when_unchanged():
    mask = answer_mask(torch.tensor([4, 2]), 4)
    logp, adv = torch.randn(2, 4), torch.randn(2, 4)
    loss, ratio, clip = policy_loss(logp, logp.clone(), adv, mask, 0.2)
    assert ratio.item() == pytest.approx(1.0) and clip.item() == 0.0
    assert loss.item() == pytest.approx(-(adv * mask).sum().item() / 6)
    _, ratio, clip = policy_loss(logp + 1.0, logp, torch.ones(2, 4), mask, 0.2)
    assert clip.item() == 1.0 and ratio.item() == pytest.approx(torch.e, rel=1e-5)


def test_value_loss_clips_around_the_old_values():
    mask = torch.ones(1, 2)
    old, ret = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    loss, frac = value_loss(torch.tensor([[1.0, 0.1]]), old, ret, mask, clip=0.2)
    # First token: the clipped prediction 0.2 is further from the return than 1.0, so its error counts.
    assert loss.item() == pytest.approx(0.5 * ((0.8 ** 2) + (0.9 ** 2)) / 2) and frac.item() == 0.5


def test_kl_estimators_and_whitening():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    assert kl_per_token(logp, ref, "k1").tolist() == [[0.5, -1.0]]
    assert kl_per_token(logp, ref, "k1_clamped").tolist() == [[0.5, 0.0]]
    assert (kl_per_token(logp, ref, "k3") >= 0).all()
    mask = answer_mask(torch.tensor([3]), 4)
    w = masked_whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), mask)
    assert w[0, :3].mean().item() == pytest.approx(0.0, abs=1e-6) and w[0, 3].item() == 0.0
