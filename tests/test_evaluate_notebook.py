"""Notebook 06 under the runner with the tiny preset, on a hand-made run (SFT, reward model, an RL
policy), then skipped on rerun."""

import json

import pytest

from salmon_lib.io import read_jsonl
from salmon_lib.runner.pipeline import run_pipeline
from tests.evaluate_helpers import make_adapter, make_run


@pytest.mark.slow
def test_evaluate_notebook_runs_under_the_runner_on_the_tiny_preset(tmp_path):
    run = make_run(tmp_path / "tiny")
    make_adapter(run / "policy", seed=2)
    overrides = ["evaluate.controllability_arms=false"]  # arms need stage 05's outputs; the preview runs
    summary = run_pipeline("tiny", run, only=["evaluate"], overrides=overrides, progress=False)
    assert [(name, action) for name, action, _ in summary] == [("evaluate", "ran")]
    report = json.loads((run / "report.json").read_text())
    assert [p["name"] for p in report["policies"]] == ["base", "sft", "rl"]
    assert report["controllability"]["preview"]["n"] == 2 and "skipped" in report["controllability"]["arms"]
    assert len(read_jsonl(run / "samples.jsonl")) == report["prompts"]["n"] == 4 + 4
    for name in report["figures"].values():
        assert (run / name).is_file()
    assert (run / "notebooks" / "06_evaluate.ipynb").is_file() and (run / "report.html").is_file()
    again = run_pipeline("tiny", run, only=["evaluate"], overrides=overrides, progress=False)
    assert [a for _, a, _ in again] == ["skipped"]
