"""Aggregation on hand-made judgements, and the override heuristics."""

import dataclasses
from dataclasses import dataclass

import pytest

from salmon_lib.preferences.aggregate import AggregateOptions, aggregate, scale_scores
from salmon_lib.preferences.heuristics import disclaimer_winner, has_disclaimer, language_verdict


@dataclass
class P:
    name: str

    def text(self, negated=False):
        return f"avoid {self.name}" if negated else f"be {self.name}"


class FixedSet:
    """A principle set whose `sample` returns a fixed draw: the test decides subset and negations."""

    def __init__(self, names, draw):
        self.principles = [P(n) for n in names]
        self.draw = draw
        self.calls = 0

    def sample(self, rng, max_k, p_continue, p_negate, prompt_type=None, cap="clip"):
        self.calls += 1
        by = {p.name: p for p in self.principles}
        return [(by[n], neg) for n, neg in self.draw]


QUIET = dict(
    disclaimer_rule=False, language_rule=False, label_noise=0.0, rule_label_noise=0.0, draws_per_pair=1
)


def j(pair, principle, s12, s21):
    return {
        "pair_id": pair,
        "principle": principle,
        "s12": s12,
        "s21": s21,
        "agree": (s12 > 0) == (s21 > 0) and s12 * s21 != 0,
    }


def pair(pid, r1="one", r2="two", prompt="Say something"):
    return {"id": pid, "prompt": prompt, "response_1": r1, "response_2": r2}


def test_variance_scaling_and_disagreement_scores_zero():
    js = [j("p1", "A", 2.0, 2.0), j("p2", "A", -2.0, -2.0), j("p1", "B", 0.2, 0.2), j("p2", "B", -0.1, 0.3)]
    scores, var = scale_scores(js)
    assert var["A"] == pytest.approx(4.0)
    assert scores["p1"]["A"] == pytest.approx(0.5) and scores["p2"]["A"] == pytest.approx(-0.5)
    assert scores["p2"]["B"] == 0.0  # the two orders disagree
    assert scale_scores(js, require_agreement=False)[0]["p2"]["B"] != 0.0


def test_dominant_principle_decides_and_negation_flips_the_label():
    scores = {"p1": {"A": 0.5, "B": -2.0}}
    ex, _ = aggregate(
        [pair("p1")], scores, FixedSet("AB", [("A", False), ("B", False)]), AggregateOptions(**QUIET), seed=0
    )
    assert ex[0]["dominant"] == "B" and ex[0]["chosen"] == "two" and ex[0]["score_gap"] == pytest.approx(2.0)
    ex, _ = aggregate(
        [pair("p1")], scores, FixedSet("AB", [("A", False), ("B", True)]), AggregateOptions(**QUIET), seed=0
    )
    assert ex[0]["chosen"] == "one"
    assert ex[0]["principles"] == [
        {"name": "A", "text": "be A", "negated": False},
        {"name": "B", "text": "avoid B", "negated": True},
    ]


def test_zero_dominant_score_is_skipped_and_counted():
    ex, stats = aggregate(
        [pair("p1")], {"p1": {"A": 0.0}}, FixedSet("A", [("A", False)]), AggregateOptions(**QUIET), seed=0
    )
    assert ex == [] and stats["skipped_zero_score"] == 1


def test_pairs_without_all_judgements_are_counted_not_used():
    ex, stats = aggregate(
        [pair("p1")], {"p1": {"A": 1.0}}, FixedSet("AB", [("A", False)]), AggregateOptions(**QUIET), seed=0
    )
    assert ex == [] and stats["pairs_missing_judgements"] == 1


def test_draws_are_seeded_per_pair_and_noise_is_counted():
    opts = AggregateOptions(**{**QUIET, "draws_per_pair": 50, "label_noise": 0.5})
    fs = FixedSet("A", [("A", False)])
    pairs = [pair("p1"), pair("p2")]
    scores = {"p1": {"A": 1.0}, "p2": {"A": 1.0}}
    ex1, st1 = aggregate(pairs, scores, fs, opts, seed=3)
    ex2, _ = aggregate(pairs[::-1], scores, fs, opts, seed=3)
    assert sorted(ex1, key=lambda e: e["id"]) == sorted(ex2, key=lambda e: e["id"])
    ex3, _ = aggregate(pairs, scores, fs, opts, seed=4)
    assert ex1 != ex3
    flips = sum(e["flags"]["label_noise"] for e in ex1)
    assert st1["label_noise_flips"] == flips and 20 < flips < 80
    assert sum(e["chosen"] == "two" for e in ex1) == flips  # a flipped label chooses the judge's loser
    assert all(e["score_gap"] < 0 for e in ex1 if e["flags"]["label_noise"])


def test_disclaimer_rule_prefers_the_other_response_with_its_probability():
    r1 = "As an AI language model, I cannot have opinions, but blue is popular."
    opts = AggregateOptions(**{**QUIET, "disclaimer_rule": True, "disclaimer_p": 1.0, "draws_per_pair": 3})
    ex, stats = aggregate(
        [pair("p1", r1=r1, r2="Blue.")], {"p1": {"A": 1.0}}, FixedSet("A", [("A", False)]), opts, seed=0
    )
    assert all(e["chosen"] == "Blue." and e["flags"]["rule"] == "disclaimer" for e in ex)
    assert stats["rule_disclaimer"] == 3 and stats["rule_overrode_judge"] == 3
    opts.disclaimer_p = 0.0
    ex, _ = aggregate([pair("p1", r1=r1, r2="Blue.")], {"p1": {"A": 1.0}}, FixedSet("A", [("A", False)]), opts, seed=0)
    assert all(e["chosen"] == r1 for e in ex)


def test_language_rule_picks_the_matching_language_and_drops_when_neither_matches():
    prompt = "What is a good way to learn to cook simple dinners at home?"
    en = "Start with a few one-pot recipes and cook them every week until they feel easy."
    fr = "Commencez par quelques recettes simples et cuisinez-les chaque semaine jusqu'à ce que ce soit facile."
    de = "Beginnen Sie mit einigen einfachen Rezepten und kochen Sie diese jede Woche, bis es leicht fällt."
    assert language_verdict(prompt, fr, en) == 2 and language_verdict(prompt, fr, de) == "neither"
    assert language_verdict("Hi", fr, en) is None  # too short to identify
    opts = AggregateOptions(**{**QUIET, "language_rule": True})
    ex, stats = aggregate([pair("p1", en, fr, prompt), pair("p2", fr, de, prompt)],
                          {"p1": {"A": -1.0}, "p2": {"A": 1.0}}, FixedSet("A", [("A", False)]), opts, seed=0)
    assert [e["chosen"] for e in ex] == [en] and ex[0]["flags"]["rule"] == "language"
    assert stats["pairs_dropped_language"] == 1 and stats["rule_overrode_judge"] == 1


def test_disclaimer_detection():
    assert has_disclaimer("Well, as an AI model I cannot feel.") and has_disclaimer("I'm just an AI assistant.")
    assert not has_disclaimer("AI models are trained on data.")
    assert disclaimer_winner("I am a language model, so no.", "Sure: 4.") == 2
    assert disclaimer_winner("x", "y") is None


def test_with_the_judge_principle_set_negation_shows_the_negative_definition():
    from salmon_lib.principles import load_principles

    ps = load_principles("principles/judge.yaml")
    sampled = [p for p in ps.principles if p.sampled]
    scores = {f"p{i}": {p.name: (k + 1) * (-1) ** (i + k) for k, p in enumerate(sampled)} for i in range(20)}
    pairs = [pair(f"p{i}") for i in range(20)]
    opts = AggregateOptions(**{**QUIET, "draws_per_pair": 4, "max_principles": 3})
    ex, stats = aggregate(pairs, scores, ps, opts, seed=1)
    assert stats["examples"] == 80 and stats["pairs_missing_judgements"] == 0
    assert ex == aggregate(pairs, scores, ps, opts, seed=1)[0]
    for e in ex:
        assert 1 <= len(e["principles"]) <= 3
        dom = next(p for p in e["principles"] if p["name"] == e["dominant"])
        principle = ps.by_name(dom["name"])
        assert dom["text"] == principle.text(dom["negated"])
        raw = scores[e["pair_id"]][dom["name"]] * (-1 if dom["negated"] else 1)
        assert (e["chosen"] == "one") == (raw > 0) and e["score_gap"] == pytest.approx(abs(raw))
    assert 0 < sum(p["negated"] for e in ex for p in e["principles"]) < sum(len(e["principles"]) for e in ex)


def test_swap_p_is_gone_and_says_why():
    """It only set a flag nothing read: a pointwise reward model never sees the order of a pair."""
    from salmon_lib.config import ConfigError
    from salmon_lib.preferences.config import PreferencesConfig

    assert "swap_p" not in {f.name for f in dataclasses.fields(PreferencesConfig)}
    with pytest.raises(ConfigError, match="swap_p is no longer a parameter.*order of a pair never reaches"):
        PreferencesConfig.from_dict({"swap_p": 0.5})
    examples, stats = aggregate([pair("p1")], {"p1": {"A": 1.0}}, FixedSet("A", [("A", False)]),
                                AggregateOptions(**QUIET), seed=0)
    assert "swapped" not in stats and set(examples[0]["flags"]) == {"rule", "label_noise"}
