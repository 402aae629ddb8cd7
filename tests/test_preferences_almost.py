"""ALMoST: configuration parsing, few-shot prompts, response filters, chain + length filter."""

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.preferences import almost


def test_chain_pairs_each_configuration_with_the_next_valid_lower_one():
    same = "x" * 100
    cands = [("A", 0, same), ("B", 1, same), ("C", 2, same), ("D", 3, same)]
    pairs, _ = almost.chain_pairs(cands)
    assert [(c, r) for c, r, *_ in pairs] == [("A", "B"), ("B", "C"), ("C", "D")]
    # B was BAD (so it is not a candidate): A-vs-C, C-vs-D
    pairs, _ = almost.chain_pairs([cands[0], cands[2], cands[3]])
    assert [(c, r) for c, r, *_ in pairs] == [("A", "C"), ("C", "D")]


def test_length_filter_only_drops_short_winners():
    long = "y" * 200
    # A is very short: never chosen; B-vs-C and C-vs-D remain
    pairs, counts = almost.chain_pairs([("A", 0, "x" * 10), ("B", 1, long), ("C", 2, long), ("D", 3, long)])
    assert [(c, r) for c, r, *_ in pairs] == [("B", "C"), ("C", "D")]
    assert counts["length_filter"] == 3
    # lengths 140, 200, 20: mean 120, pstdev 74.8 -> threshold 82.6; a shorter winner above it survives
    pairs, _ = almost.chain_pairs([("A", 0, "x" * 140), ("B", 1, "y" * 200), ("C", 2, "z" * 20)])
    assert [(c, r) for c, r, *_ in pairs] == [("A", "B"), ("B", "C")]
    # two answers 130 and 170: threshold 140, so the shorter winner goes
    assert almost.chain_pairs([("A", 0, "x" * 130), ("B", 1, "y" * 170)])[0] == []
    # a short C under a longer D gives nothing for C
    pairs, _ = almost.chain_pairs([("A", 0, long), ("B", 1, long), ("C", 2, "x" * 20), ("D", 3, long)])
    assert [(c, r) for c, r, *_ in pairs] == [("A", "B"), ("B", "C")]
    pairs, _ = almost.chain_pairs([("A", 0, "x" * 10), ("B", 1, long)], length_filter=False)
    assert len(pairs) == 1


def test_ties_are_not_compared_and_a_tier_is_chosen_once():
    t = "z" * 80
    pairs, counts = almost.chain_pairs([("A", 0, t), ("A2", 0, t), ("B", 1, t)])
    assert [(c, r) for c, r, *_ in pairs] == [("A", "B")] and counts["tie"] == 1


def test_fewer_than_two_valid_answers_give_nothing():
    pairs, counts = almost.chain_pairs([("A", 0, "x" * 60)])
    assert pairs == [] and counts["prompts_with_fewer_than_2_answers"] == 1


def test_bad_response_filters():
    ok = "Paris is the capital of France, and it has been for a very long time."
    assert almost.bad_reason(ok) is None
    assert almost.bad_reason("Too short.") == "too_short"
    assert almost.bad_reason(ok[:-1] + "?") == "ends_with_question_or_colon"
    assert almost.bad_reason("Well, " + ok) == "starts_with_well"
    assert almost.bad_reason(ok[:-1]) == "unfinished"
    assert almost.bad_reason("I don’t know much, but " + ok) == "dont_know"
    assert almost.bad_reason(ok + " Human: thanks!") == "leaked_turn"
    assert almost.bad_reason("<|im_start|>user " + ok, ("<|im_start|>",)) == "leaked_turn"


def test_configurations_rubric_and_fewshot_prompt():
    rubric = almost.parse_rubric([["default:detailed:3"], ["default:plain:2", "/models/Base-1B:plain:1"]])
    assert [(c.name, r) for c, r in rubric] == [
        ("default-detailed-3shot", 0),
        ("default-plain-2shot", 1),
        ("base-1b-plain-1shot", 1),
    ]
    with pytest.raises(ValueError, match=r"almost_rubric\[0\]\[0\].*'fancy'"):
        almost.parse_rubric([["default:fancy:1"], ["default:plain:1"]])
    demos = almost.load_demos()
    fmt = get_format("chatml")
    text = almost.fewshot_prompt(fmt, demos, rubric[1][0], "What is rain?")
    assert text.count("<|im_start|>user") == 3 and text.endswith("What is rain?<|im_end|>\n<|im_start|>assistant\n")
    assert demos["plain"][1]["assistant"] in text and demos["plain"][2]["user"] not in text
    with pytest.raises(ValueError, match="only 3 dialogues"):
        almost.fewshot_prompt(fmt, demos, almost.Configuration("default", "detailed", 5), "q")


def test_comparisons_use_the_preference_schema():
    prompts = [{"id": "q1", "prompt": "What is rain?"}]
    good = "Rain is water that falls from clouds when droplets grow heavy enough to drop."
    responses = {
        "default-detailed-3shot": {"q1": {"response": good, "bad": None}},
        "default-plain-1shot": {"q1": {"response": good[:60] + ".", "bad": None}},
        "tiny-plain-1shot": {"q1": {"response": "??", "bad": "too_short"}},
    }
    rubric = almost.parse_rubric([["default:detailed:3"], ["default:plain:1"], ["tiny:plain:1"]])
    ex, stats = almost.comparisons(prompts, responses, rubric)
    assert len(ex) == 1 and ex[0]["chosen"] == good and ex[0]["principles"] == [] and ex[0]["score_gap"] == 1.0
    assert ex[0]["flags"]["meta"] == "default-detailed-3shot-vs-default-plain-1shot"
    assert stats["bad_responses"] == {"too_short": 1} and stats["examples"] == 1
