"""No run waits forever on a stage's kernel (runner.deadlines, runner.watch): a cell past its
deadline, a kernel killed mid-cell and one frozen mid-cell (SIGSTOP) each fail the stage with one
line naming the cell and the wait, leave no kernel behind, and the next run resumes the records."""

import contextlib
import json
import logging
import os
import re
import signal
import threading
import time
from queue import Empty

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.runner.kernel import _cmdline
from salmon_lib.runner.pipeline import StageFailed, run_pipeline
from salmon_lib.runner.presets import load_preset, parse_overrides, resolve, resolve_deadlines
from salmon_lib.runner.status import format_status, stage_status
from tests.notebooks.runner_stages import STAGES

N = 40
LOOP_CELL = r"cell 4 \(`log = RecordLog\(Path\(cfg.run_dir\) / \"numbers.jsonl\"\)`\)"


def _records(run_dir) -> int:
    path = run_dir / "numbers.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def _kernel(run_dir) -> dict | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((run_dir / "manifest.json").read_text())["stages"]["make"].get("kernel")
    return None


def _at_record(run_dir, count: int, action) -> threading.Thread:
    """Once the stage has written `count` records, call `action(kernel pid)` (in a thread: the
    runner waits on the kernel in this one)."""
    def watch():
        deadline = time.time() + 300
        while time.time() < deadline and not (_records(run_dir) >= count and _kernel(run_dir)):
            time.sleep(0.05)
        kernel = _kernel(run_dir)
        if kernel:
            action(kernel["pid"])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _fails_then_resumes(tmp_path, make: str, act=None, pattern: str = "") -> str:
    """Run stage make with `make` parameters (and `act` at the fifth record): it must fail with one
    line matching `pattern`, shown by status, with its kernel gone; a second run with no cell
    deadline resumes from the records on disk. Returns the failure line."""
    preset = tmp_path / "p.yaml"
    preset.write_text(f"stages:\n  make: {{n: {N}, delay: 0.2, {make}}}\n")
    run_dir = tmp_path / "run"
    watcher = _at_record(run_dir, 5, act) if act else None
    messages = []
    try:
        with pytest.raises(StageFailed) as failed:
            run_pipeline(preset, run_dir, stages=STAGES, only=["make"], progress=False, log=messages.append)
    finally:
        if watcher:
            watcher.join(timeout=60)
    kernel = _kernel(run_dir)
    try:
        line = json.loads((run_dir / "manifest.json").read_text())["stages"]["make"]["error"]
        assert "\n" not in line and re.search(pattern, line), line
        assert line in str(failed.value) and any(line in m and m.startswith("[make] FAILED") for m in messages)
        row = stage_status(run_dir, STAGES)[0]
        assert row["status"] == "failed" and line in format_status([row])
        assert kernel["connection_file"] not in _cmdline(kernel["pid"]), "the stage's kernel must be gone"
        executed = json.loads((run_dir / "notebooks" / "00_make.ipynb").read_text())["cells"][4]
        assert executed["metadata"]["papermill"]["status"] == "failed"
        assert any(o.get("evalue") == line for o in executed["outputs"]), "the cell shows the line"
        written = _records(run_dir)
        assert 5 <= written < N, "the failure must land in the middle of the cell"

        summary = run_pipeline(preset, run_dir, stages=STAGES, only=["make"], progress=False,
                               overrides=["make.cell_timeout_s=0"], log=messages.append)
        assert summary[0][:2] == ("make", "ran")
        ids = [json.loads(r)["id"] for r in (run_dir / "numbers.jsonl").read_text().splitlines()]
        assert sorted(ids) == list(range(N)), "every id exactly once"
        assert json.loads((run_dir / "make_stats.json").read_text())["resumed_with"] >= written
        assert stage_status(run_dir, STAGES)[0]["status"] == "finished"
        return line
    finally:
        if kernel and kernel["connection_file"] in _cmdline(kernel["pid"]):
            os.killpg(kernel["pid"], signal.SIGKILL)


def test_a_cell_past_its_deadline_fails_the_stage_with_one_line_and_the_rerun_resumes(tmp_path):
    _fails_then_resumes(tmp_path, "cell_timeout_s: 2",
                        pattern=rf"^{LOOP_CELL} was still running after \d+ s \(cell_timeout_s 2\)$")


@pytest.mark.slow  # two stage kernels: ~40 s beside another test
def test_a_kernel_killed_mid_cell_fails_the_stage_and_the_rerun_resumes(tmp_path):
    _fails_then_resumes(tmp_path, "cell_timeout_s: 600", act=lambda pid: os.kill(pid, signal.SIGKILL),
                        pattern=rf"^the kernel \(pid \d+\) died \(killed by SIGKILL\) while {LOOP_CELL} ran")


@pytest.mark.slow  # two stage kernels: ~40 s beside another test
def test_a_kernel_frozen_mid_cell_is_noticed_by_its_heartbeat_and_killed(tmp_path):
    _fails_then_resumes(tmp_path, "cell_timeout_s: 600, heartbeat_timeout_s: 3",
                        act=lambda pid: os.kill(pid, signal.SIGSTOP),
                        pattern=rf"^the kernel \(pid \d+\) stopped answering its heartbeat for \d+ s "
                                rf"\(heartbeat_timeout_s 3\): it is stopped or hung while {LOOP_CELL} ran")


def test_a_quick_cell_gets_the_quick_deadline_and_the_rest_the_stage_one(tmp_path):
    """The make stage's last cell is tagged quick: it may run quick_cell_timeout_s, not the stage's
    cell_timeout_s; untagged cells keep the stage's deadline, and the rerun resumes the records."""
    preset = tmp_path / "p.yaml"
    preset.write_text("stages:\n  make: {n: 2, delay: 3, pause: 60, cell_timeout_s: 600, quick_cell_timeout_s: 2}\n")
    run_dir = tmp_path / "run"
    with pytest.raises(StageFailed, match=r"cell 5 \(`time.sleep\(cfg.pause\)`\) was still running after \d+ s "
                                          r"\(quick_cell_timeout_s 2\)"):
        run_pipeline(preset, run_dir, stages=STAGES, only=["make"], progress=False)
    assert _records(run_dir) == 2, "the loop cell (6 s, untagged) ran to the end under cell_timeout_s 600"
    preset.write_text("stages:\n  make: {n: 2, delay: 3, cell_timeout_s: 600, quick_cell_timeout_s: 2}\n")
    assert run_pipeline(preset, run_dir, stages=STAGES, only=["make"], progress=False)[0][:2] == ("make", "ran")
    assert json.loads((run_dir / "make_stats.json").read_text())["resumed_with"] == 2


def test_a_cell_whose_reply_is_lost_is_finished_from_its_outputs(tmp_path, monkeypatch, caplog):
    """The hang of issue 30: the kernel finished a cell (its idle status came) but the runner never
    got the reply. nbclient alone waits for it forever; the runner goes on and says so."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    from salmon_lib.runner import watch

    receive = AsyncZMQSocketChannel.get_msg
    lost = []

    async def lossy(channel, timeout=None):
        msg = await receive(channel, timeout)
        if msg["msg_type"] == "execute_reply" and msg["content"].get("execution_count") == 4 and not lost:
            lost.append(msg)  # the loop cell's reply (code cells: parameters, injected, setup, loop)
            raise Empty
        return msg

    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", lossy)
    monkeypatch.setattr(watch, "REPLY_AFTER_IDLE_S", 2.0)
    preset = tmp_path / "p.yaml"
    preset.write_text("stages:\n  make: {n: 5, cell_timeout_s: 600}\n")
    with caplog.at_level(logging.WARNING, logger="papermill"):
        summary = run_pipeline(preset, tmp_path / "run", stages=STAGES, only=["make"], progress=False)
    assert lost and summary[0][:2] == ("make", "ran")
    assert json.loads((tmp_path / "run" / "make_stats.json").read_text())["records"] == 5  # the next cell ran
    assert any("no reply from the kernel for cell 4" in r.getMessage() for r in caplog.records)


def test_a_reply_whose_wakeup_a_widget_update_consumed_is_still_read():
    """The cause of issue 30's hang (benchmarks/kernel_wakeup.py reproduces it with stock nbclient):
    the reply arrives while the event loop is busy, then nbclient's Output widget sends its state on
    the same socket through a synchronous shadow of it, and zmq hands that send the socket's pending
    wake-up. A wait with no timeout never ends; the runner's client polls again and reads it."""
    import asyncio

    import nbformat
    from papermill.engines import NotebookExecutionManager

    from salmon_lib.runner.watch import WatchedNotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time; time.sleep(1.0)")])
    cell = nb.cells[0]
    client = WatchedNotebookClient(NotebookExecutionManager(nb, progress_bar=False), kernel_name="python3",
                                   stage_name="t", record_timing=False)

    async def execute():
        async with client.async_setup_kernel():
            kc = client.kc
            msg_id = kc.execute(cell.source)
            outputs = asyncio.ensure_future(client._async_poll_output_msg(msg_id, cell, 0))
            alive = asyncio.ensure_future(asyncio.sleep(3600))
            reply = asyncio.ensure_future(client._async_poll_for_reply(msg_id, cell, None, outputs, alive))
            await asyncio.sleep(0.2)
            time.sleep(3.0)  # the loop is busy while the kernel finishes and its reply arrives
            kc.shell_channel.send(kc.session.msg("comm_msg", content={"comm_id": "none", "data": {}}))
            done, _ = await asyncio.wait([reply], timeout=15)
            alive.cancel()
            return reply.result() if done else None

    msg = asyncio.run(execute())
    assert msg is not None, "the runner waited on a reply that sat on its socket"
    assert msg["msg_type"] == "execute_reply" and msg["content"]["status"] == "ok"


PRESET = """\
common:
  cell_timeout_s: 100
stages:
  make:
    kernel_start_timeout_s: 50
  double:
    cell_timeout_s: 7
"""


def test_deadlines_are_runner_keys_set_like_parameters_and_typed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PRESET)
    preset = load_preset(path)
    overrides = parse_overrides(["make.heartbeat_timeout_s=9", "common.kernel_stop_timeout_s=5"])
    configs, warnings = resolve(preset, STAGES, overrides)
    assert warnings == [] and "cell_timeout_s" not in configs["make"].to_dict()  # never reaches a notebook
    got = resolve_deadlines(preset, STAGES, overrides)
    assert (got["make"].cell_timeout_s, got["make"].kernel_start_timeout_s, got["make"].heartbeat_timeout_s,
            got["make"].kernel_stop_timeout_s) == (100, 50, 9, 5)
    assert (got["double"].cell_timeout_s, got["double"].heartbeat_timeout_s) == (7, 30)
    empty = tmp_path / "empty.yaml"
    empty.write_text("stages: {}\n")
    assert resolve_deadlines(load_preset(empty), STAGES)["make"].cell_timeout_s == STAGES[0].cell_timeout_s
    path.write_text(PRESET.replace("50", "soon"))
    with pytest.raises(ConfigError, match=r"p.yaml:5: stages.make.kernel_start_timeout_s: expected float, got 'soon'"):
        resolve_deadlines(load_preset(path), STAGES)
    with pytest.raises(ConfigError, match=r"-p make.heartbeat_timeout_s=0: must be > 0"):
        resolve_deadlines(preset, STAGES, parse_overrides(["make.heartbeat_timeout_s=0"]))
