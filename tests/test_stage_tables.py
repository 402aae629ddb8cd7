"""The notebooks' tables of stages 03 and 05 (salmon_lib/<stage>/tables.py), from hand-made stats."""

from salmon_lib.preferences import tables as pref
from salmon_lib.rl import tables as rl


def test_rl_tables_count_the_split_and_compare_early_with_late_steps():
    split = rl.split({"train": ["a", "b", "c"], "heldout": ["d"], "excluded": {"self_align": 2}})
    assert split.to_dict() == {"train": 3, "held out": 1, "excluded (self_align)": 2}
    stats = {"steps": 4, "first_step": {"reward": 0.1}, "last_step": {"reward": 0.5}, "seconds_per_step": {}}
    assert rl.summary(stats).to_dict() == {"steps": 4}
    assert rl.first_and_last_step(stats)["reward"].to_dict() == {"first_step": 0.1, "last_step": 0.5}
    rollouts = [{"step": s, "principles": ["Concise"], "rm": rm, "prompt_id": "p", "response": "x" * 400,
                 "tokens": 3, "finished": True} for s, rm in ((1, -1.0), (2, 0.0), (3, 1.0), (4, 2.0))]
    by_half = rl.principle_table(rollouts)
    assert by_half.loc["Concise", "early"] == -0.5 and by_half.loc["Concise", "late"] == 1.5
    sample = rl.rollout_table(rollouts, per_phase=1, width=10)
    assert list(sample["phase"]) == ["early (step 1)", "late (step 4)"] and sample["response"].str.len().max() == 10


def test_preferences_judge_table_follows_the_mode():
    pairwise = {"judge": {"mode": "pairwise", "agreement": {
        "none": {"Concise": {"agreement": 0.5}}, "content_free": {"Concise": {"agreement": 0.75}}}}}
    assert pref.judge(pairwise).loc["Concise"].to_dict() == {"none": 0.5, "content_free": 0.75}
    likelihood = {"judge": {"mode": "contrastive", "by_principle": {"Concise": {"n": 4, "mean": 0.25}}}}
    assert pref.judge(likelihood).loc["Concise"].to_dict() == {"n": 4, "mean": 0.25}
    assert pref.hhh_debiasing({"hhh": {"skipped": "no file"}}) is None


def test_preferences_figures_leave_out_an_earlier_pairwise_runs_figures(tmp_path):
    (tmp_path / "figures").mkdir()
    for name in ("judge_position_bias", "judge_scores"):
        (tmp_path / "figures" / f"{name}.png").write_bytes(b"png")
    assert [p.stem for p in pref.figures(tmp_path, "judge", "pairwise")] == ["judge_position_bias", "judge_scores"]
    assert [p.stem for p in pref.figures(tmp_path, "judge", "contrastive")] == ["judge_scores"]
