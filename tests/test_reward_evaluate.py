"""Stage 04's evaluation arithmetic with stand-in reward models (no training): which pairs count as
held out, and what counts as a principle flip."""

import json

import pytest

from salmon_lib.reward.config import RewardConfig
from salmon_lib.reward.evaluate import evaluate_reward_model, flip_rates
from salmon_lib.reward.pairs import read_preferences, split_held_out


class ByRule:
    """Scores each response by `rule(response, principles)`."""

    def __init__(self, rule):
        self.rule = rule

    def score(self, items, batch_size=16, progress=False):
        return [float(self.rule(response, principles)) for _, response, principles in items]


def write_preferences(path, n_prompts=40, noise_every=3):
    """The good answer is chosen, except where label noise flipped the label (every `noise_every`-th)."""
    with open(path, "w") as f:
        for i in range(n_prompts):
            noisy = i % noise_every == 0
            good, bad = f"A good answer {i}.", f"A bad answer {i}."
            chosen, rejected = (bad, good) if noisy else (good, bad)
            f.write(json.dumps({"id": f"pair-{i}:0", "prompt": f"Question {i}?", "chosen": chosen, "rejected": rejected,
                                "principles": [{"name": "Helpful", "text": "Be helpful.", "negated": False}],
                                "flags": {"rule": None, "label_noise": noisy}}) + "\n")


def test_held_out_accuracy_leaves_out_the_labels_flipped_on_purpose(tmp_path):
    """A reward model that ranks every pair right scores 1: the labels stage 03 flipped on purpose
    (label_noise) are left out of held-out accuracy, not counted as its errors."""
    write_preferences(tmp_path / "preferences.jsonl")
    assert sum(p.label_noise for p in read_preferences(tmp_path / "preferences.jsonl")) == 14
    cfg = RewardConfig(run_dir=str(tmp_path), eval_fraction=0.5, hhh_eval="", flip_principles="")
    result = evaluate_reward_model(ByRule(lambda response, _: "good" in response), cfg, progress=False)
    _, split = split_held_out(read_preferences(tmp_path / "preferences.jsonl"), 0.5, cfg.seed)
    noised = sum(p.label_noise for p in split)
    held = result["held_out"]
    assert held["accuracy"] == 1.0 and held["noised_labels_left_out"] == noised > 0
    assert held["n"] == len(split) - noised


def test_flip_rate_counts_only_reversals_the_right_way_round():
    """The obeying reply must win under the principle AND the violating one under its negation; a
    reversal the wrong way round is no flip."""
    kinds = {"concise": {"principle": "Be brief.", "negation": "Be long-winded.",
                         "probes": [{"prompt": "Why is the sky blue?", "obeys": "Scattering.",
                                     "violates": "Well, it is a long story about light and air and more."}]}}

    def rate(rule):
        return flip_rates(ByRule(rule), kinds)["overall"]

    right = rate(lambda r, ps: -len(r) if ps == ["Be brief."] else len(r))
    wrong = rate(lambda r, ps: len(r) if ps == ["Be brief."] else -len(r))
    never = rate(lambda r, ps: -len(r))  # prefers the short reply whatever the principle says
    assert (right["flip_rate"], right["wrong_way_rate"]) == (1.0, 0.0)
    assert (wrong["flip_rate"], wrong["wrong_way_rate"]) == (0.0, 1.0)
    assert (never["flip_rate"], never["wrong_way_rate"]) == (0.0, 0.0)
    assert never["obeying_wins_under_principle"] == 1.0 and never["violating_wins_under_negation"] == 0.0
    assert "correct_flip_rate" not in right  # one name for the headline


@pytest.mark.parametrize("flags", ['"flags": []', '"flags": {"label_noise": "yes"}'])
def test_malformed_flags_are_named(tmp_path, flags):
    from salmon_lib.io import DataError

    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "prompt": "p", "chosen": "a", "rejected": "b", "principles": [], ' + flags + "}\n")
    with pytest.raises(DataError, match=r"p.jsonl:1: field 'flags'"):
        read_preferences(path)
