"""Notebook 04 under the runner with the tiny preset, on a hand-made preferences.jsonl."""

import json
import shutil
from pathlib import Path

import pytest

from salmon_lib.runner.pipeline import run_pipeline

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.slow
def test_reward_notebook_runs_under_the_runner_on_the_tiny_preset(tmp_path):
    run = tmp_path / "tiny"
    run.mkdir()
    shutil.copy(FIXTURES / "preferences_separable.jsonl", run / "preferences.jsonl")
    summary = run_pipeline("tiny", run, only=["reward_model"], progress=False)
    assert [(name, action) for name, action, _ in summary] == [("reward_model", "ran")]
    for name in ("rm/adapter_model.safetensors", "rm/template.json", "rm_eval.json", "reward_stats.json",
                 "figures/rm_heatmap.png", "figures/rm_training_curves.png", "figures/rm_prompt_bars.png",
                 "figures/rm_score_distributions.png"):
        assert (run / name).is_file(), name
    result = json.loads((run / "rm_eval.json").read_text())
    assert result["held_out"]["accuracy"] >= 0.9
    assert result["flip"]["overall"]["n"] == result["flip_judge_wording"]["overall"]["n"] == 24
    assert [a for _, a, _ in run_pipeline("tiny", run, only=["reward_model"], progress=False)] == ["skipped"]
