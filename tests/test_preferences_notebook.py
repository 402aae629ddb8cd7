"""Stage 03's notebook under the pipeline runner on the tiny preset: SALMON (pairwise and
contrastive judge), ALMoST and RLCD."""

import json
from pathlib import Path

import pytest

from salmon_lib.runner import pipeline

PROMPTS = ["What is the capital of France?", "Give me two tips for sleeping better.", "How do I boil an egg?",
           "Write a haiku about rain.", "Why is the sky blue?"]
# the shipped HHH-shaped fixture: a clean clone has no ../shared/data for `hhh_path: auto` to find
HHH = Path(__file__).parent / "fixtures" / "hhh_like.json"


def prepared(tmp_path):
    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    (run_dir / "prompts.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "prompt": p, "source": "test", "question_type": None, "meta": {}}) + "\n"
        for i, p in enumerate(PROMPTS)))
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("method, mode", [("salmon", "pairwise"), ("salmon", "contrastive"), ("almost", "pairwise"),
                                          ("rlcd", "pairwise")])
def test_stage_runs_under_the_runner_on_the_tiny_preset(tmp_path, method, mode):
    from salmon_lib.io import read_json, read_jsonl

    run_dir = prepared(tmp_path)
    overrides = ["preferences.use_sft=false", f"preferences.method={method}", f"preferences.judge_mode={mode}",
                 "preferences.rlcd_max_new_tokens=16", "preferences.min_response_chars=1",
                 f"preferences.hhh_path={HHH}"]
    summary = pipeline.run_pipeline("tiny", run_dir, only=["preferences"], overrides=overrides, progress=False)
    assert [action for _, action, _ in summary] == ["ran"]
    examples = read_jsonl(run_dir / "preferences.jsonl")
    stats = read_json(run_dir / "preferences_stats.json")
    for e in examples:
        assert set(e) >= {"id", "prompt", "chosen", "rejected", "principles", "dominant", "score_gap", "flags"}
    if method == "salmon":
        assert examples and stats["aggregate"]["examples"] == len(examples)
        assert {"judge", "pairs", "hhh", "signal"} <= set(stats) and stats["judge"]["mode"] == mode
        assert all((run_dir / "figures" / f).is_file() for f in ("judge_scores.png", "judge_signal.png"))
        judged = read_jsonl(run_dir / "judgements.jsonl")
        from salmon_lib.principles import load_principles

        assert len(judged) == stats["pairs"]["kept"] * len(load_principles("principles/judge.yaml").principles)
        assert {j.get("mode", "pairwise") for j in judged} == {mode}
        assert stats["signal"]["modes"] == [mode] and 0 <= stats["hhh"]["accuracy"]["overall"] <= 1
        flips = stats["signal"]["flips"]["probe_wording"][mode]["overall"]
        assert flips["n"] == 24 and 0 <= flips["flip_rate"] <= 1
    elif method == "rlcd":
        records = read_jsonl(run_dir / "rlcd.jsonl")
        assert len(records) == len(PROMPTS) and stats["aggregate"]["rlcd"]["records"] == len(PROMPTS)
        assert len(examples) == 2 * stats["aggregate"]["rlcd"]["pairs_kept"] > 0
        assert {e["principles"][0]["negated"] for e in examples} == {False, True}
        assert (run_dir / "figures" / "rlcd_contrast.png").is_file() and "signal" in stats
    else:
        assert stats["almost"]["prompts"] == len(PROMPTS)
    summary = pipeline.run_pipeline("tiny", run_dir, only=["preferences"], overrides=overrides, progress=False)
    assert [action for _, action, _ in summary] == ["skipped"]
