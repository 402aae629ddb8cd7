"""The tiny preset through the real registry, end to end (live once stages are registered)."""

import time

import pytest

from salmon_lib.runner.pipeline import run_pipeline, stage_status
from salmon_lib.stages import STAGES

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not STAGES, reason="no stages registered in salmon_lib/stages.py yet")
def test_tiny_preset_runs_every_stage_then_skips_them(tmp_path):
    start = time.perf_counter()
    summary = run_pipeline("tiny", tmp_path / "tiny", progress=False)
    elapsed = time.perf_counter() - start
    assert [a for _, a, _ in summary] == ["ran"] * len(STAGES)
    assert elapsed < 180, f"the tiny preset must stay under 3 minutes on CPU, took {elapsed:.0f} s"
    rows = stage_status(tmp_path / "tiny")
    assert all(r["status"] == "finished" and not r["stale"] for r in rows), rows
    summary = run_pipeline("tiny", tmp_path / "tiny", progress=False)
    assert [a for _, a, _ in summary] == ["skipped"] * len(STAGES)
