"""The tiny preset through the real registry, end to end: in the default run, because it is the
one test that proves the stages fit together (every artifact a stage reads is one an earlier
stage wrote, in the format it expects)."""

import json

import pytest

from salmon_lib.io import read_jsonl
from salmon_lib.runner.pipeline import run_pipeline
from salmon_lib.runner.status import stage_status
from salmon_lib.stages import STAGES


@pytest.mark.skipif(not STAGES, reason="no stages registered in salmon_lib/stages.py yet")
def test_tiny_preset_runs_every_stage_then_skips_them(tmp_path):
    summary = run_pipeline("tiny", tmp_path / "tiny", progress=False)
    assert [a for _, a, _ in summary] == ["ran"] * len(STAGES)
    run = tmp_path / "tiny"
    assert read_jsonl(run / "prompts.jsonl")
    assert any(r["kept"] for r in read_jsonl(run / "self_align.jsonl"))
    assert (run / "sft" / "adapter_config.json").is_file() and (run / "sft" / "chat_format.json").is_file()
    prefs = read_jsonl(run / "preferences.jsonl")
    assert prefs and all(p["chosen"] != p["rejected"] for p in prefs)
    assert (run / "rm" / "adapter_config.json").is_file()
    assert {"held_out", "hhh", "flip"} <= set(json.loads((run / "rm_eval.json").read_text()))
    assert json.loads((run / "reward_audit.json").read_text())["answers"] > 0
    assert (run / "policy" / "adapter_config.json").is_file() and (run / "policy" / "chat_format.json").is_file()
    assert [r["step"] for r in read_jsonl(run / "rl_metrics.jsonl")] == [0, 1]
    assert json.loads((run / "rl_stats.json").read_text())["steps"] == 2
    report = json.loads((run / "report.json").read_text())
    assert [p["name"] for p in report["policies"]] == ["base", "sft", "rl", "arm:comprehensive", "arm:concise"]
    assert report["prompts"]["source"] == "heldout" and {"arms", "preview"} <= set(report["controllability"])
    assert (run / "rl_arms" / "concise" / "policy" / "adapter_config.json").is_file()
    assert len(read_jsonl(run / "samples.jsonl")) == report["prompts"]["n"] and (run / "report.html").is_file()
    assert sorted(p.name for p in (run / "notebooks").iterdir()) == sorted(s.notebook_path().name for s in STAGES)
    rows = stage_status(tmp_path / "tiny")
    assert all(r["status"] == "finished" and not r["stale"] for r in rows), rows
    figures = {r["stage"]: r for r in rows}
    for name in ("prompts", "self_align", "preferences"):  # the stages that generate
        assert figures[name]["tokens"] > 0 and figures[name]["backends"] == ["hf"], figures[name]
    # a count can be 0 (the random tiny model's self-align answers all fail the filter), never unread
    assert all(r["examples"] is not None and r["cpu_s"] for r in rows), rows
    summary = run_pipeline("tiny", tmp_path / "tiny", progress=False)
    assert [a for _, a, _ in summary] == ["skipped"] * len(STAGES)
