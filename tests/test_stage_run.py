"""`stage.run(cfg)` of the stages whose notebooks call their steps one by one, on the tiny preset:
the whole stage without a kernel, as the runner's notebooks run it."""

import json
import shutil
from pathlib import Path

import pytest

from salmon_lib.io import read_json, read_jsonl
from salmon_lib.runner.presets import load_preset, parse_overrides, resolve
from salmon_lib.stages import STAGES

FIXTURES = Path(__file__).parent / "fixtures"


def tiny_config(stage: str, run_dir: Path, *overrides: str):
    configs, _ = resolve(
        load_preset("tiny"), STAGES, parse_overrides([f"{stage}.{o}" for o in overrides]), str(run_dir)
    )
    return configs[stage]


@pytest.mark.slow
def test_preferences_run_writes_every_artifact_and_figure(tmp_path):
    from salmon_lib.preferences.stage import run

    (tmp_path / "prompts.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "prompt": p}) + "\n"
        for i, p in enumerate(["Why is the sky blue?", "How do I boil an egg?", "Name a prime number."])))
    stats = run(tiny_config("preferences", tmp_path, "use_sft=false", "max_prompts=3", "hhh_max_pairs=2"))
    assert stats["aggregate"]["examples"] == len(read_jsonl(tmp_path / "preferences.jsonl")) > 0
    assert {"pairs", "judge", "hhh", "config"} <= set(stats)
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"judge_scores.png", "judge_position_bias.png", "judge_principle_correlation.png"} <= figures
    assert ("judge_hhh_accuracy.png" in figures) == ("skipped" not in stats["hhh"])


@pytest.mark.slow
def test_reward_run_trains_evaluates_and_draws(tmp_path):
    from salmon_lib.reward.stage import run

    shutil.copy(FIXTURES / "preferences_separable.jsonl", tmp_path / "preferences.jsonl")
    result = run(tiny_config("reward_model", tmp_path, "max_steps=2", "hhh_max_pairs=4", "plot_responses=4"))
    assert result["training"] == read_json(tmp_path / "reward_stats.json")
    assert result["evaluation"] == read_json(tmp_path / "rm_eval.json")
    assert result["training"]["phases"]["principles"]["steps"] == 2
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert figures == {"rm_training_curves.png", "rm_heatmap.png", "rm_score_distributions.png", "rm_prompt_bars.png"}
