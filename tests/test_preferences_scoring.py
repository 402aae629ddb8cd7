"""The judge's scores on the tiny model equal log p(a) - log p(b) from a plain forward pass."""

import pytest

from salmon_lib import generation
from salmon_lib.chat_format import get_format
from salmon_lib.preferences import judge


@pytest.fixture(scope="module")
def gen():
    from salmon_lib.models import ModelConfig

    with generation.make_generator(ModelConfig(spec="tiny"), backend="hf", progress=False) as g:
        yield g


def direct_margin(gen, prompt):
    import torch

    ids = gen.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(gen.model(ids).logits[0, -1].float(), -1)
    a, b = (gen.tokenizer(o, add_special_tokens=False)["input_ids"][0] for o in judge.OPTIONS)
    return (logp[a] - logp[b]).item()


def test_crafted_pair_scores_match_a_forward_pass(gen):
    fmt = get_format("chatml")
    pair = {"id": "p1", "prompt": "What is the boiling point of water at sea level?",
            "response_1": "100 degrees Celsius.", "response_2": "It depends on the colour of the kettle."}
    principles = [("Honest and Accurate", "States only what is true."), ("Concise", "Is brief.")]
    recs = judge.judge_pairs(gen, fmt, [pair], principles, batch_pairs=1, progress=False)
    assert [r["principle"] for r in recs] == ["Honest and Accurate", "Concise"]
    for r, (name, definition) in zip(recs, principles):
        p12 = judge.judge_prompt(fmt, pair["prompt"], pair["response_1"], pair["response_2"], name, definition)
        p21 = judge.judge_prompt(fmt, pair["prompt"], pair["response_2"], pair["response_1"], name, definition)
        assert r["s12"] == pytest.approx(direct_margin(gen, p12), abs=1e-4)
        assert r["s21"] == pytest.approx(-direct_margin(gen, p21), abs=1e-4)
        assert r["agree"] == ((r["s12"] > 0) == (r["s21"] > 0))
