"""Stage 03's notebook under the pipeline runner on the tiny preset, both paths."""

import json

import pytest

from salmon_lib.runner import pipeline

PROMPTS = ["What is the capital of France?", "Give me two tips for sleeping better.", "How do I boil an egg?",
           "Write a haiku about rain.", "Why is the sky blue?"]


def prepared(tmp_path):
    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    (run_dir / "prompts.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "prompt": p, "source": "test", "question_type": None, "meta": {}}) + "\n"
        for i, p in enumerate(PROMPTS)))
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("method", ["salmon", "almost"])
def test_stage_runs_under_the_runner_on_the_tiny_preset(tmp_path, method):
    from salmon_lib.io import read_json, read_jsonl

    run_dir = prepared(tmp_path)
    overrides = ["preferences.use_sft=false", f"preferences.method={method}"]
    summary = pipeline.run_pipeline("tiny", run_dir, only=["preferences"], overrides=overrides, progress=False)
    assert [action for _, action, _ in summary] == ["ran"]
    examples = read_jsonl(run_dir / "preferences.jsonl")
    stats = read_json(run_dir / "preferences_stats.json")
    for e in examples:
        assert set(e) >= {"id", "prompt", "chosen", "rejected", "principles", "dominant", "score_gap", "flags"}
    if method == "salmon":
        assert examples and stats["aggregate"]["examples"] == len(examples)
        assert {"judge", "pairs", "hhh"} <= set(stats)
        assert (run_dir / "figures" / "judge_position_bias.png").is_file()
        judged = read_jsonl(run_dir / "judgements.jsonl")
        from salmon_lib.principles import load_principles

        assert len(judged) == stats["pairs"]["kept"] * len(load_principles("principles/judge.yaml").principles)
    else:
        assert stats["almost"]["prompts"] == len(PROMPTS)
    summary = pipeline.run_pipeline("tiny", run_dir, only=["preferences"], overrides=overrides, progress=False)
    assert [action for _, action, _ in summary] == ["skipped"]
