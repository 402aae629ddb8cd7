"""kill -9 of the runner in the middle of a stage, then a rerun: no record lost or duplicated."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from salmon_lib.runner.kernel import _cmdline, stop_orphan_kernel
from salmon_lib.runner.pipeline import run_pipeline
from salmon_lib.runner.status import stage_status
from salmon_lib.stages import PROJECT_ROOT
from tests.notebooks.runner_stages import STAGES

N = 40


@pytest.mark.slow  # two stage kernels, one killed mid-way: ~35 s beside another test
def test_kill_9_mid_stage_then_rerun_resumes_records(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(f"stages:\n  make: {{n: {N}, delay: 0.1}}\n")
    run_dir = tmp_path / "run"
    records = run_dir / "numbers.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "salmon_lib", "run", "--preset", str(preset), "--run", str(run_dir),
         "--registry", "tests.notebooks.runner_stages:STAGES", "--only", "make", "--no-progress"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    kernel = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 8):
            time.sleep(0.05)
        kernel = json.loads((run_dir / "manifest.json").read_text())["stages"]["make"]["kernel"]
        # freeze the kernel first: like one stuck in a long C call, it cannot notice its runner died
        os.kill(kernel["pid"], signal.SIGSTOP)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        written = records.read_text().count("\n")
        assert 8 <= written < N, "the kill must land in the middle of the stage"
        assert stage_status(run_dir, STAGES)[0]["status"] == "interrupted"

        messages = []
        summary = run_pipeline(preset, run_dir, stages=STAGES, only=["make"], progress=False, log=messages.append)
        assert summary[0][:2] == ("make", "ran")
        assert any(f"stopping the kernel (pid {kernel['pid']})" in m for m in messages)
        assert kernel["connection_file"] not in _cmdline(kernel["pid"])  # the orphan is gone
        ids = [json.loads(line)["id"] for line in records.read_text().splitlines()]
        assert sorted(ids) == list(range(N)), "every id exactly once"
        stats = json.loads((run_dir / "make_stats.json").read_text())
        assert stats["resumed_with"] >= written  # the rerun started from the records already on disk
        assert stage_status(run_dir, STAGES)[0]["status"] == "finished"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if kernel and kernel["connection_file"] in _cmdline(kernel["pid"]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(kernel["pid"], signal.SIGKILL)


def test_an_orphan_kernel_is_stopped_only_in_the_run_folder_that_started_it(tmp_path):
    """A run folder copied while a stage runs carries the record of the original's live kernel:
    running the copy must not kill it."""
    conn = str(tmp_path / "kernel-test.json")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", conn], start_new_session=True)
    try:
        deadline = time.time() + 30
        while conn not in _cmdline(proc.pid) and time.time() < deadline:  # until the child has exec'd
            time.sleep(0.01)
        record = {"status": "running",
                  "kernel": {"pid": proc.pid, "connection_file": conn, "run_dir": str((tmp_path / "run").resolve())}}
        said = []
        stop_orphan_kernel(record, tmp_path / "copy", said.append)
        assert proc.poll() is None and said == []
        stop_orphan_kernel(record, tmp_path / "run", said.append)
        assert proc.wait(timeout=30) is not None and "left running by an interrupted run" in said[0]
    finally:
        proc.kill()
