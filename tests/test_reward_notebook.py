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


@pytest.mark.slow
def test_contrastive_kind_writes_a_reward_folder_and_evaluates_it_under_the_runner(tmp_path):
    from salmon_lib.principles import load_principles
    from salmon_lib.reward import ContrastiveReward, load_reward

    run = tmp_path / "tiny"
    run.mkdir()
    # the contrastive reward scores principles whose negation it knows: stage 03's pairs use judge.yaml's texts
    concise = load_principles("principles/judge.yaml").by_name("Concise")
    with open(FIXTURES / "preferences_separable.jsonl") as src, open(run / "preferences.jsonl", "w") as out:
        for line in src:
            rec = json.loads(line)
            rec["principles"] = [{"name": "Concise", "text": concise.definition, "negated": False}]
            out.write(json.dumps(rec) + "\n")
    overrides = ["reward_model.kind=contrastive", "reward_model.contrastive_use_sft=false",
                 "reward_model.plot_responses=2"]
    summary = run_pipeline("tiny", run, only=["reward_model"], overrides=overrides, progress=False)
    assert [(name, action) for name, action, _ in summary] == [("reward_model", "ran")]
    assert (run / "rm/reward_spec.json").is_file() and not (run / "rm/adapter_model.safetensors").exists()
    assert not (run / "figures/rm_training_curves.png").exists() and (run / "figures/rm_heatmap.png").is_file()
    assert json.loads((run / "reward_stats.json").read_text())["kind"] == "contrastive"
    result = json.loads((run / "rm_eval.json").read_text())
    assert result["flip"]["overall"]["n"] == result["flip_judge_wording"]["overall"]["n"] == 24
    assert isinstance(load_reward(run / "rm"), ContrastiveReward)
