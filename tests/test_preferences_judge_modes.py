"""Likelihood judge modes on the tiny model: each value equals a direct forward-pass computation,
the contrastive score changes sign under negation, prefix sharing changes nothing, and judging
resumes without duplicates."""

import pytest

from salmon_lib import generation
from salmon_lib.chat_format import get_format
from salmon_lib.io import RecordLog
from salmon_lib.scoring import judge_modes as jm
from salmon_lib.scoring.render import PRINCIPLE_SYSTEM

FMT = get_format("chatml")
CONCISE = jm.Criterion("Concise", "The response is brief.", "The response is long and detailed.")
HONEST = jm.Criterion("Honest", "The response admits what it does not know.", "The response sounds certain.")
PAIRS = [
    {"id": "p1", "prompt": "What is the boiling point of water?", "response_1": "100 degrees Celsius at sea level.",
     "response_2": "Water boils when it gets hot enough, which depends on many things."},
    {"id": "p2", "prompt": "Who will win the next election?", "response_1": "I cannot know that.",
     "response_2": "The incumbent will win by exactly four points."},
]


@pytest.fixture(scope="module")
def gens():
    from salmon_lib.models import ModelConfig

    with generation.make_generator(ModelConfig(spec="tiny"), backend="hf", progress=False) as shared, \
            generation.make_generator(ModelConfig(spec="tiny"), backend="hf", progress=False,
                                      share_prefix=False) as plain:
        yield shared, plain


def logprob(gen, prompt: str, continuation: str) -> float:
    """Summed log p(continuation | prompt) from one plain forward pass over the concatenated ids."""
    import torch

    p = gen.tokenizer(prompt)["input_ids"]
    c = gen.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(gen.model(torch.tensor([p + c])).logits[0].float(), -1)
    return sum(logp[len(p) + i - 1, t].item() for i, t in enumerate(c))


def system(request, text):
    return FMT.prompt(request, system=PRINCIPLE_SYSTEM.format(text=text) if text else None)


def test_each_mode_equals_a_direct_forward_pass(gens):
    gen, _ = gens
    request, response = PAIRS[0]["prompt"], PAIRS[0]["response_1"]
    answer = response + FMT.end
    modes = ["contrastive", "likelihood", "pmi", "pointwise"]
    values = jm.response_values(gen, FMT, [(request, response, CONCISE)], modes)
    under = logprob(gen, system(request, CONCISE.text), answer)
    n = len(gen.tokenizer(answer, add_special_tokens=False)["input_ids"])
    opposite = logprob(gen, system(request, CONCISE.opposite), answer)
    assert values["contrastive"][0] == pytest.approx((under - opposite) / n, abs=1e-5)
    assert values["likelihood"][0] == pytest.approx(under / n, abs=1e-5)
    assert values["pmi"][0] == pytest.approx(under - logprob(gen, system(request, None), answer), abs=1e-4)
    ask = FMT.prompt(jm.POINTWISE_TURN.format(request=request, answer=response, text=CONCISE.text))
    assert values["pointwise"][0] == pytest.approx(logprob(gen, ask, "Yes") - logprob(gen, ask, "No"), abs=1e-4)
    suffix = jm.response_values(gen, FMT, [(request, response, CONCISE)], ["contrastive"], layout="suffix")
    describe = FMT.render([{"role": "user", "content": request}, {"role": "assistant", "content": response},
                           {"role": "user", "content": jm.DESCRIBE_TURN}])
    expected = logprob(gen, describe, CONCISE.text) - logprob(gen, describe, CONCISE.opposite)
    assert suffix["contrastive"][0] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("layout", jm.LAYOUTS)
def test_contrastive_changes_sign_under_negation(gens, layout):
    gen, _ = gens
    items = [(p["prompt"], p["response_1"], c) for p in PAIRS for c in (CONCISE, HONEST)]
    pos = jm.response_values(gen, FMT, items, ["contrastive"], layout=layout)["contrastive"]
    negated = [(q, r, c.negated()) for q, r, c in items]
    neg = jm.response_values(gen, FMT, negated, ["contrastive"], layout=layout)["contrastive"]
    assert all(abs(v) > 1e-6 for v in pos)
    assert neg == pytest.approx([-v for v in pos], abs=1e-4)


def test_negating_a_principle_without_negative_definition_fails_clearly():
    with pytest.raises(ValueError, match="'Bare' has no negative definition"):
        jm.Criterion("Bare", "Say it.").negated()


@pytest.mark.parametrize("mode", ["contrastive", "likelihood", "pmi", "pointwise", "ensemble"])
def test_sharing_equals_no_sharing(gens, mode):
    shared, plain = gens
    a = jm.judge_pairs_likelihood(shared, FMT, PAIRS, [CONCISE, HONEST], mode, progress=False)
    b = jm.judge_pairs_likelihood(plain, FMT, PAIRS, [CONCISE, HONEST], mode, progress=False)
    assert [r["s12"] for r in a] == pytest.approx([r["s12"] for r in b], abs=1e-4)


def test_pair_scores_are_first_minus_second_in_both_orders(gens):
    gen, _ = gens
    recs = jm.judge_pairs_likelihood(gen, FMT, PAIRS, [CONCISE], "contrastive", progress=False)
    for r in recs:
        assert r["s12"] == r["s21"] == pytest.approx(r["v1"] - r["v2"]) and r["agree"] == (r["s12"] != 0)
        assert r["id"] == f"{r['pair_id']}|Concise|contrastive"
    swapped = [{**p, "response_1": p["response_2"], "response_2": p["response_1"]} for p in PAIRS]
    back = jm.judge_pairs_likelihood(gen, FMT, swapped, [CONCISE], "contrastive", progress=False)
    assert [r["s12"] for r in back] == pytest.approx([-r["s12"] for r in recs], abs=1e-5)


def test_ensemble_scales_each_part_by_its_rms():
    recs = [{"principle": "C", "parts": {"contrastive": 3.0, "likelihood": 0.1}},
            {"principle": "C", "parts": {"contrastive": -4.0, "likelihood": 0.0}}]
    scales = jm.ensemble_scales(recs)
    assert scales["C"]["contrastive"] == pytest.approx((12.5) ** 0.5)
    out = jm.combine(recs)
    assert out[0]["s12"] == out[0]["s21"] == pytest.approx(3.0 / 12.5 ** 0.5 + 0.1 / 0.005 ** 0.5)
    assert jm.ensemble_scales([{"principle": "Z", "parts": {"likelihood": 0.0}}])["Z"]["likelihood"] == 1.0


def test_judging_resumes_without_duplicates(gens, tmp_path):
    gen, _ = gens
    log = RecordLog(tmp_path / "judgements.jsonl")
    first = jm.judge_pairs_likelihood(gen, FMT, PAIRS[:1], [CONCISE, HONEST], "likelihood", log=log, progress=False)
    again = RecordLog(tmp_path / "judgements.jsonl")
    rest = jm.judge_pairs_likelihood(gen, FMT, PAIRS, [CONCISE, HONEST], "likelihood", log=again, progress=False)
    assert len(first) == 2 and len(rest) == 2 and {r["pair_id"] for r in rest} == {"p2"}
    ids = [r["id"] for r in again.records()]
    assert len(ids) == len(set(ids)) == 4


def test_a_judgement_whose_pair_changed_is_made_again(gens, tmp_path):
    gen, _ = gens
    model = {"model": "tiny", "adapter": None}
    sigs = jm.likelihood_signatures(FMT, PAIRS, [CONCISE], "likelihood", "system", model)
    log = RecordLog(tmp_path / "judgements.jsonl")
    jm.judge_pairs_likelihood(gen, FMT, PAIRS, [CONCISE], "likelihood", log=log, signatures=sigs, progress=False)
    changed = [{**PAIRS[0], "response_2": "Something else entirely."}, *PAIRS[1:]]
    sigs2 = jm.likelihood_signatures(FMT, changed, [CONCISE], "likelihood", "system", model)
    assert [k for k in sigs if sigs[k] != sigs2[k]] == [jm.judgement_id(PAIRS[0]["id"], CONCISE.name, "likelihood")]
    redone = jm.judge_pairs_likelihood(gen, FMT, changed, [CONCISE], "likelihood", log=RecordLog(log.path),
                                       signatures=sigs2, progress=False)
    assert [r["pair_id"] for r in redone] == [PAIRS[0]["id"]]
    assert len(RecordLog(log.path).records(sigs2)) == len(PAIRS)
