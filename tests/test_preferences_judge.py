"""Judge prompt rendering, order agreement and debiasing on hand-made scores."""

import math

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.preferences import judge


def test_prompt_shows_request_outputs_then_one_principle_and_ends_prefilled():
    fmt = get_format("chatml")
    text = judge.judge_prompt(fmt, "Name a fruit.", "An apple.", "A chair.", "Honest", "Say true things.")
    i_req, i_a, i_b, i_p = (
        text.index(s) for s in ("Name a fruit.", "An apple.", "A chair.", "Honest: Say true things.")
    )
    assert i_req < i_a < i_b < i_p
    assert text.endswith("<|im_start|>assistant\nOutput (")
    assert text.count("<|im_start|>user") == 1 and judge.JUDGE_SYSTEM in text


def test_prompts_of_one_ordering_share_everything_before_the_principle():
    fmt = get_format("plain")
    p1 = judge.judge_prompt(fmt, "Q", "first", "second", "Concise", "Be brief.")
    p2 = judge.judge_prompt(fmt, "Q", "first", "second", "Ethical", "Do no harm.")
    prefix = p1[:next(i for i, (x, y) in enumerate(zip(p1, p2)) if x != y)]
    assert prefix.endswith("### Principle\n") and "first" in prefix and "second" in prefix


class FakeScorer:
    """Returns log p(a), log p(b) from a rule on the prompt text, so the test knows the answer."""

    def __init__(self, bias=0.0):
        self.bias = bias
        self.calls = []

    def score_options(self, prompts, options, adapter=None):
        self.calls.append((len(prompts), tuple(options), adapter))
        out = []
        for p in prompts:
            a = p.split("### Output (a)\n")[1].split("\n\n")[0]
            b = p.split("### Output (b)\n")[1].split("\n\n")[0]
            good = "Concise" in p and len(a) < len(b) or "Concise" not in p and len(a) > len(b)
            margin = (1.0 if good else -1.0) + self.bias
            out.append([math.log(0.5) + margin / 2, math.log(0.5) - margin / 2])
        return out


def test_judge_pairs_scores_both_orders_and_flags_agreement():
    fmt = get_format("chatml")
    pairs = [{"id": "p1", "prompt": "Q", "response_1": "short", "response_2": "a much longer answer"}]
    principles = [("Concise", "Be brief."), ("Comprehensive", "Cover everything.")]
    gen = FakeScorer()
    recs = {r["principle"]: r for r in judge.judge_pairs(gen, fmt, pairs, principles, adapter="X", progress=False)}
    assert gen.calls == [(4, ("a", "b"), "X")]
    assert recs["Concise"]["s12"] == pytest.approx(1.0) and recs["Concise"]["s21"] == pytest.approx(1.0)
    assert recs["Comprehensive"]["s12"] == pytest.approx(-1.0) and recs["Comprehensive"]["agree"]
    assert recs["Concise"]["id"] == "p1|Concise"


def test_position_bias_breaks_agreement_and_debiasing_restores_it():
    fmt = get_format("chatml")
    pairs = [
        {"id": f"p{i}", "prompt": "Q", "response_1": "x" * (i + 1), "response_2": "y" * (10 - i)} for i in range(6)
    ]
    principles = [("Concise", "Be brief.")]
    recs = judge.judge_pairs(FakeScorer(bias=3.0), fmt, pairs, principles, progress=False)
    assert not any(r["agree"] for r in recs)  # slot (a) always wins: the orders never agree
    stats = judge.agreement_stats(recs)["Concise"]
    assert stats["agreement"] == 0 and stats["slot_a_both_orders"] == 1.0
    assert stats["mean_slot_a_preference"] == pytest.approx(3.0)
    fixed = judge.debias(recs, judge.position_bias(recs))
    assert all(r["agree"] for r in fixed)
    for r, f in zip(recs, fixed):  # the order-averaged verdict never changes
        assert r["s12"] + r["s21"] == pytest.approx(f["s12"] + f["s21"])


def test_content_free_bias_reads_the_empty_input():
    bias = judge.content_free_bias(FakeScorer(bias=2.0), get_format("chatml"), [("Ethical", "Do no harm.")])
    assert bias["Ethical"] == pytest.approx(1.0)  # equal-length N/A outputs: -1 (not longer) + 2


def test_non_finite_scores_are_reported_by_pair_and_principle():
    with pytest.raises(ValueError, match="'p9' under 'Ethical'"):
        judge.finite_or_raise([{"pair_id": "p9", "principle": "Ethical", "s12": float("-inf"), "s21": 0.0}])


def test_stage_config_imports_without_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; from salmon_lib.preferences.config import PreferencesConfig; PreferencesConfig(); "
        "import salmon_lib.preferences.stage; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0
