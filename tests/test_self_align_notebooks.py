"""Stages 01 and 02 as notebooks under the runner, on the tiny preset."""

import json

import pytest

from salmon_lib.runner.pipeline import run_pipeline

pytestmark = pytest.mark.slow


def test_tiny_preset_runs_self_align_then_engrave(tmp_path):
    run = tmp_path / "tiny"
    run.mkdir()
    prompts = ["How do tides work?", "Give me a tip for sleeping better.", "What is 12 times 12?"]
    (run / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n"
                                               for i, p in enumerate(prompts)))
    summary = run_pipeline("tiny", run, start="self_align", stop="engrave", progress=False)
    assert [(name, action) for name, action, _ in summary] == [("self_align", "ran"), ("engrave", "ran")]
    stats = json.loads((run / "self_align_stats.json").read_text())
    assert stats["answered"] == 3 and stats["identity"] == 12
    engrave = json.loads((run / "engrave_stats.json").read_text())
    assert engrave["steps"] == 3 and len(engrave["before_after"]) == 2
    assert (run / "sft" / "adapter_config.json").is_file() and (run / "sft" / "chat_format.json").is_file()
    for name in ("self_align_filter", "self_align_rules", "self_align_lengths", "engrave_loss"):
        assert (run / "figures" / f"{name}.png").is_file()
    # the executed notebooks are kept as the record of each stage
    assert (run / "notebooks" / "01_self_align.ipynb").is_file() and (run / "notebooks" / "02_engrave.ipynb").is_file()
    again = run_pipeline("tiny", run, start="self_align", stop="engrave", progress=False)
    assert [action for _, action, _ in again] == ["skipped", "skipped"]
