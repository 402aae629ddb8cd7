"""The reward audit: its statistics against rewards whose preference is known, and the stage step."""

import json

import pytest

from salmon_lib.reward.audit import Answer, length_audit, plot_length_audit, spearman

SHORT = ("concise", ["Be brief."])
LONG = ("comprehensive", ["Be thorough."])


class LengthReward:
    """Scores by length: `sign` +1 prefers shorter answers under SHORT and longer ones under LONG."""

    def __init__(self, sign: float):
        self.sign, self.items = sign, []

    def score(self, items, batch_size=16, progress=False):
        self.items += items
        return [self.sign * (-len(r) if ps == SHORT[1] else len(r)) for _, r, ps, _ in items]


def answers():
    out = []
    for p in ("Why is the sky blue?", "Name a fruit.", "What is rain?"):
        for k, n in enumerate((3, 9, 5, 12)):
            out.append(Answer(p, "x" * n, finished=k != 3, tokens=n))
    return out


def test_a_reward_that_follows_the_sets_scores_one_and_a_reversed_one_minus_one():
    good = length_audit(LengthReward(+1), answers(), SHORT, LONG)
    assert good["spearman_difference"] == pytest.approx(1.0)
    assert good["spearman_shorter"] == pytest.approx(1.0) and good["spearman_longer"] == pytest.approx(1.0)
    assert good["pick_shorter_rate"] == 1.0 and good["picks_differ"] == 3
    bad = length_audit(LengthReward(-1), answers(), SHORT, LONG)
    assert bad["spearman_difference"] == pytest.approx(-1.0) and bad["pick_shorter_rate"] == 0.0
    assert good["finished_share"] == pytest.approx(0.75) and good["answers"] == 12 and good["prompts"] == 3


def test_intervals_are_over_prompts_and_match_textbook_values():
    from salmon_lib.reward.audit import t_interval, wilson

    lo, hi = t_interval([0.2, 0.4, 0.6])
    assert (lo + hi) / 2 == pytest.approx(0.4) and hi - lo == pytest.approx(2 * 4.3026527 * 0.2 / 3 ** 0.5)
    assert t_interval([0.5]) is None and t_interval([0.3, None, 0.3]) == [0.3, 0.3]
    rhos = [-0.3, 0.8, 1.0, 0.6, -0.7]
    lo, hi = t_interval(rhos)
    assert lo > -1 and hi > 1, "five scattered correlations: the textbook interval leaves [-1, 1]"
    assert t_interval(rhos, bounds=(-1, 1)) == [lo, 1.0]
    # Wilson, 11 of 11: (0.7412, 1.0)
    assert wilson(11, 11)[0] == pytest.approx(0.7412, abs=1e-3) and wilson(11, 11)[1] == pytest.approx(1.0)
    assert wilson(0, 0) is None
    good = length_audit(LengthReward(+1), answers(), SHORT, LONG)
    assert good["spearman_difference_ci"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert good["pick_shorter_ci"] == pytest.approx(wilson(3, 3))


def test_unfinished_answers_reach_the_reward_as_unfinished():
    reward = LengthReward(+1)
    length_audit(reward, answers(), SHORT, LONG)
    assert [finished for *_, finished in reward.items] == [a.finished for a in answers()] * 2


def test_spearman_gives_ties_their_average_rank_and_none_without_spread():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1], [2]) is None


def test_a_prompt_whose_answers_all_have_one_length_is_left_out_of_the_correlations():
    same = [Answer("Same?", "x" * 4, True, 4) for _ in range(3)]
    result = length_audit(LengthReward(+1), answers() + same, SHORT, LONG)
    assert result["prompts"] == 4 and result["prompts_with_spread"] == 3
    assert result["spearman_difference"] == pytest.approx(1.0)


def test_the_figure_draws_every_answer():
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_length_audit(length_audit(LengthReward(+1), answers(), SHORT, LONG))
    assert sum(len(c.get_offsets()) for c in ax.collections) == 12
    assert "concise minus comprehensive" in ax.get_title()


def test_stage_04_audit_samples_the_model_and_writes_its_record(tmp_path):
    from salmon_lib.reward import load_reward
    from salmon_lib.reward.contrastive import write_spec
    from salmon_lib.reward.stage import audit
    from salmon_lib.reward.train import RewardConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Tell me about topic {i}."}) + "\n"
                                               for i in range(5)))
    write_spec(run / "rm", model={"spec": "tiny"}, adapter=None, chat_format="chatml",
               principle_files=["principles/judge.yaml"])
    cfg = RewardConfig(run_dir=str(run), model="tiny", kind="contrastive", contrastive_use_sft=False,
                       audit_prompts=2, audit_samples=3, audit_max_new_tokens=8)
    rm = load_reward(run / "rm")
    try:
        result = audit(cfg, rm, progress=False)
    finally:
        rm.close()
    assert result["shorter"] == "concise" and result["longer"] == "comprehensive"
    assert result["answers"] == 6 and result["prompts"] == 2
    assert json.loads((run / "reward_audit.json").read_text())["answers"] == 6
    assert (run / "figures" / "reward_audit.png").is_file()
    off = RewardConfig(run_dir=str(run), model="tiny", kind="contrastive", audit_shorter="")
    assert audit(off, None) == {"skipped": "audit_shorter is empty"}
