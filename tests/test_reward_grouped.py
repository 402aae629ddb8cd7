"""Shared-prefix reward-model training: the grouped loss equals the loss of full sequences, and so
do its gradients (tiny model with LoRA and a score head)."""

import pytest
import torch

from salmon_lib.reward.grouped import GroupCollator, backbone_and_head, full_rewards, group_pairs, shared_rewards
from salmon_lib.reward.pairs import Pair
from salmon_lib.reward.template import RMTemplate

TEMPLATE = RMTemplate(max_prompt_tokens=64, max_response_tokens=96)


def pairs():
    """Two response pairs; the draws of the first come in both polarities (a negated principle
    swaps the winner), as stage 03 writes them."""
    a, b = "Paris is the capital of France.", "I think it might be Lyon, or maybe Marseille?"
    c, d = "Water boils at 100 degrees Celsius at sea level.", "It boils when it is hot enough, roughly."
    return [
        Pair("1", "What is the capital of France?", a, b, ["Be accurate."]),
        Pair("2", "What is the capital of France?", b, a, ["Be inaccurate and vague, and hedge a lot."]),
        Pair("3", "What is the capital of France?", a, b, ["Be accurate.", "Be concise."]),
        Pair("4", "At what temperature does water boil?", c, d, ["Give precise numbers."]),
    ]


def test_draws_of_one_response_pair_form_one_group():
    from salmon_lib.models import load_tokenizer

    tok = load_tokenizer("tiny")
    columns, cut = group_pairs(tok, TEMPLATE, pairs())
    assert [len(s) for s in columns["suffix_ids"]] == [3, 1] and cut == 0
    first, second = sorted((pairs()[0].chosen, pairs()[0].rejected))
    assert columns["first_wins"][0] == [pairs()[0].chosen == first, pairs()[1].chosen == first,
                                        pairs()[2].chosen == first]
    assert columns["first_wins"][0][0] != columns["first_wins"][0][1]  # the negated draw swaps the winner
    assert columns["prefix_ids"][0][0] == TEMPLATE.encode_prefix(tok, pairs()[0].prompt, first)[0]


@pytest.fixture(scope="module")
def reward_model():
    from peft import LoraConfig, get_peft_model

    from salmon_lib.models import load_model

    torch.manual_seed(0)
    tok, model = load_model("tiny", head="score")
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules="all-linear",
                                             modules_to_save=["score"]))
    with torch.no_grad():  # peft starts B at zero: give the adapter something to differentiate
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.config.pad_token_id = tok.pad_token_id
    return tok, model


def loss_and_grads(model, rewards_fn):
    model.zero_grad()
    rewards, batch = rewards_fn()
    loss = -torch.nn.functional.logsigmoid(rewards[batch["chosen"]] - rewards[batch["rejected"]]).mean()
    loss.backward()
    return loss.item(), rewards.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_shared_prefix_loss_and_gradients_equal_the_full_computation(reward_model):
    tok, model = reward_model
    columns, _ = group_pairs(tok, TEMPLATE, pairs())
    batch = GroupCollator(tok.pad_token_id)([{k: v[i] for k, v in columns.items()} for i in range(2)])
    # 2 prefixes per pair, 2 rows per draw
    assert batch["prefix_ids"].shape[0] == 4 and batch["suffix_ids"].shape[0] == 8

    shared = loss_and_grads(model, lambda: (shared_rewards(*backbone_and_head(model), batch), batch))
    full = loss_and_grads(model, lambda: (full_rewards(model, batch, tok.pad_token_id), batch))
    assert shared[0] == pytest.approx(full[0], abs=1e-5)
    assert torch.allclose(shared[1], full[1], atol=1e-5)
    assert set(shared[2]) == set(full[2]) and any(".score." in n for n in shared[2])
    for name, g in shared[2].items():
        assert g.abs().sum() > 0, name  # every trainable tensor gets a gradient, the prefix's LoRA included
        assert torch.allclose(g, full[2][name], rtol=1e-4, atol=1e-6), name
