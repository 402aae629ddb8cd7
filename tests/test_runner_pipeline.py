"""The runner end to end on two tiny test stages: manifest, skip/rerun, failure, status."""

import json
import shutil
import subprocess
import sys

import nbformat
import papermill
import pytest
import yaml

import salmon_lib
from salmon_lib.config import ConfigError
from salmon_lib.provenance import hash_path
from salmon_lib.runner.kernel import RunLocked, run_lock
from salmon_lib.runner.pipeline import StageFailed, run_pipeline
from salmon_lib.runner.plan import notebook_digest
from salmon_lib.runner.status import stage_status
from salmon_lib.stages import PROJECT_ROOT, Stage
from tests.notebooks.runner_stages import STAGES

PRESET = "common:\n  seed: 1\n  model: small\nstages:\n  make: {n: 4}\n  double: {factor: 3}\n"
REGISTRY = "tests.notebooks.runner_stages:STAGES"


def run(preset, run_dir, **kw):
    return run_pipeline(preset, run_dir, stages=kw.pop("stages", STAGES), progress=False, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "p.yaml"
    path.write_text(PRESET)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, preset):
    """A run directory where both stages finished once (tests work on copies of it)."""
    run_dir = tmp_path_factory.mktemp("runs") / "base"
    summary = run(preset, run_dir)
    return run_dir, summary


def copy_run(finished, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(finished[0], dst)
    return dst


def values(run_dir):
    return json.loads((run_dir / "doubled" / "values.json").read_text())


def test_first_run_writes_artifacts_manifest_and_executed_notebooks(finished):
    run_dir, summary = finished
    assert [(s, a) for s, a, _ in summary] == [("make", "ran"), ("double", "ran")]
    assert values(run_dir) == [3, 6, 9, 12]  # (id + seed 1) * factor 3

    manifest = json.loads((run_dir / "manifest.json").read_text())
    make, double = manifest["stages"]["make"], manifest["stages"]["double"]
    assert make["status"] == double["status"] == "finished"
    assert make["params"] == {"run_dir": str(run_dir), "seed": 1, "n": 4, "delay": 0.0, "fail": False, "pause": 0.0,
                              "model": "small"}
    assert double["params"]["factor"] == 3 and double["params"]["model"] == "small"
    assert double["inputs"] == {"numbers.jsonl": hash_path(run_dir / "numbers.jsonl")}
    assert (
        double["outputs"]["doubled/"] == hash_path(run_dir / "doubled") and double["outputs"]["doubled/"]["files"] == 1
    )
    assert make["outputs"]["numbers.jsonl"]["bytes"] == (run_dir / "numbers.jsonl").stat().st_size
    assert make["started"] < make["ended"] <= double["started"] < double["ended"]
    assert make["wall_s"] > 0 and make["error"] is None
    assert {"python", "torch", "transformers", "trl", "peft", "papermill"} <= set(make["versions"])
    assert make["notebook_sha256"] == notebook_digest(PROJECT_ROOT / "tests/notebooks/00_make.ipynb")

    resolved = yaml.safe_load((run_dir / "run.yaml").read_text())
    assert resolved["stages"]["double"] == double["params"]

    # the executed notebook is the record: injected parameters and outputs are in it
    nb = nbformat.read(run_dir / "notebooks" / "00_make.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n = 4" in injected[0].source
    assert not list((run_dir / "notebooks").glob("*.partial.ipynb"))
    # the kernel ran this checkout's salmon_lib with the runner's interpreter, from the project root
    stats = json.loads((run_dir / "make_stats.json").read_text())
    assert stats["salmon_lib"] == salmon_lib.__file__
    assert stats["executable"] == sys.executable
    assert stats["cwd"] == str(PROJECT_ROOT)


def test_unchanged_run_is_skipped_even_in_a_copied_run_dir(finished, preset, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    summary = run(preset, run_dir)
    assert [(s, a) for s, a, _ in summary] == [("make", "skipped"), ("double", "skipped")]
    assert all(not r["stale"] and r["status"] == "finished" for r in stage_status(run_dir, STAGES))


def test_changed_params_rerun_that_stage_and_every_later_one(finished, preset, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    summary = run(preset, run_dir, overrides=["double.factor=10"])
    assert [(s, a) for s, a, _ in summary] == [("make", "skipped"), ("double", "ran")]
    assert values(run_dir) == [10, 20, 30, 40]
    summary = run(preset, run_dir, overrides=["double.factor=10", "make.n=2"])
    assert [(s, a) for s, a, _ in summary] == [("make", "ran"), ("double", "ran")]
    assert values(run_dir) == [10, 20, 30, 40]  # numbers.jsonl is a RecordLog: ids 0-3 are kept


def test_failure_is_recorded_stops_the_pipeline_and_keeps_finished_artifacts(finished, preset, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    before = hash_path(run_dir / "doubled")
    with pytest.raises(StageFailed, match="make was asked to fail"):
        run(preset, run_dir, overrides=["make.fail=true"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["make"]["status"] == "failed"
    assert manifest["stages"]["make"]["error"].startswith("RuntimeError: make was asked to fail")
    assert manifest["stages"]["double"]["status"] == "finished"  # not run, its record untouched
    assert hash_path(run_dir / "doubled") == before
    nb = nbformat.read(run_dir / "notebooks" / "00_make.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in nb.cells for o in c.get("outputs", []))
    rows = {r["stage"]: r for r in stage_status(run_dir, STAGES)}
    assert rows["make"]["status"] == "failed" and rows["double"]["stale"]


def test_stage_that_skips_a_declared_output_fails(finished, preset, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    stages = [STAGES[0], Stage("double", STAGES[1].notebook, STAGES[1].config, inputs=["numbers.jsonl"],
                               outputs=["doubled/", "summary.json", "extra?"])]
    with pytest.raises(StageFailed, match="without writing declared output.*summary.json"):
        run(preset, run_dir, stages=stages, only=["double"], overrides=["double.factor=4"])


def test_status_command_reports_stale_stages(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    cmd = [sys.executable, "-m", "salmon_lib", "status", "--run", str(run_dir), "--registry", REGISTRY]
    out = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["stage", "status", "stale", "wall"]
    assert lines[1].split()[:3] == ["make", "finished", "no"] and lines[2].split()[:3] == ["double", "finished", "no"]
    with open(run_dir / "numbers.jsonl", "a") as f:
        f.write('{"id": 99, "value": 0}\n')
    out = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "input numbers.jsonl changed" in out.stdout.splitlines()[2]


def test_status_reports_time_tokens_and_examples_per_stage(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    cmd = [sys.executable, "-m", "salmon_lib", "status", "--run", str(run_dir), "--registry", REGISTRY, "--json"]
    out = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    make, double = json.loads(out.stdout)
    # make wrote 4 records and, like a generating stage, recorded 10 tokens for each
    assert (make["tokens"], make["examples"], make["backends"]) == (40, 4, ["test"])
    assert make["cpu_s"] > 0.5  # the kernel's own CPU time: it imports salmon_lib and runs cells
    assert make["examples_per_min"] == pytest.approx(60 * 4 / make["wall_s"], rel=0.01)
    assert double["tokens"] is None and double["examples"] is None  # generates nothing, writes no .jsonl
    table = subprocess.run(cmd[:-1], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert table[0].split()[3:11] == ["wall", "s", "cpu", "s", "tokens", "tok/s", "examples", "ex/min"]
    assert table[1].split()[5:6] == ["40"] and table[-1].split()[0] == "total"


def test_preflight_errors_start_no_kernel(preset, tmp_path):
    with pytest.raises(ConfigError, match="stage 'double' needs numbers.jsonl"):
        run(preset, tmp_path / "empty", only=["double"])
    assert not (tmp_path / "empty" / "manifest.json").exists()
    with pytest.raises(ConfigError, match="no stages are registered"):
        run(preset, tmp_path / "empty", stages=[])
    with run_lock(tmp_path / "locked"):
        with pytest.raises(RunLocked, match="another runner"):
            run(preset, tmp_path / "locked")


def test_notebook_run_directly_by_papermill_rejects_unknown_params(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter.*nn for MakeConfig"):
        papermill.execute_notebook(
            str(PROJECT_ROOT / "tests/notebooks/00_make.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"run_dir": str(tmp_path), "n": 2, "nn": 1}, cwd=str(PROJECT_ROOT), progress_bar=False,
        )
    assert not (tmp_path / "numbers.jsonl").exists()


def test_only_code_changes_make_a_notebook_stale(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    nb = nbformat.read(PROJECT_ROOT / "tests/notebooks/00_make.ipynb", as_version=4)
    nb.cells[0].source += "\nMore narrative."
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="saved after an interactive run")]
    nb.cells[2].execution_count = 7
    path = tmp_path / "00_make.ipynb"
    nbformat.write(nb, path)
    stages = [Stage("make", str(path), STAGES[0].config, outputs=STAGES[0].outputs), STAGES[1]]
    assert [r["stale"] for r in stage_status(run_dir, stages)] == [False, False]
    nb.cells[2].source += "\nprint('changed')"
    nbformat.write(nb, path)
    rows = stage_status(run_dir, stages)
    assert rows[0]["reasons"] == ["notebook changed"] and rows[1]["reasons"] == ["an earlier stage is stale"]


def test_status_compares_records_with_the_latest_resolved_params(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    resolved = yaml.safe_load((run_dir / "run.yaml").read_text())
    resolved["stages"]["double"]["factor"] = 7  # what `run ... -p double.factor=7 --only make` would leave
    (run_dir / "run.yaml").write_text(yaml.safe_dump(resolved))
    rows = stage_status(run_dir, STAGES)
    assert rows[0]["reasons"] == [] and rows[1]["reasons"] == ["parameters changed: factor"]
    shutil.rmtree(run_dir / "doubled")
    assert stage_status(run_dir, STAGES)[1]["reasons"] == ["parameters changed: factor", "output(s) missing: doubled/"]


def test_dry_run_reports_the_plan_and_writes_nothing(finished, preset, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    before = (run_dir / "manifest.json").read_text(), (run_dir / "run.yaml").read_text()
    summary = run(preset, run_dir, overrides=["double.factor=8"], dry_run=True)
    assert [(s, a) for s, a, _ in summary] == [("make", "would skip"), ("double", "would run")]
    summary = run(preset, run_dir, overrides=["make.n=9"], dry_run=True)
    assert [(s, a) for s, a, _ in summary] == [("make", "would run"), ("double", "would run")]
    assert ((run_dir / "manifest.json").read_text(), (run_dir / "run.yaml").read_text()) == before
    fresh = tmp_path / "fresh"
    assert [a for _, a, _ in run(preset, fresh, dry_run=True)] == ["would run", "would run"]
    assert not fresh.exists()


def test_dry_run_and_status_read_one_plan(finished, preset, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    (run_dir / "numbers.jsonl").write_text((run_dir / "numbers.jsonl").read_text() + '{"id": 99, "value": 0}\n')
    messages = []
    run_pipeline(preset, run_dir, stages=STAGES, progress=False, log=messages.append, dry_run=True)
    reasons = {r["stage"]: r["reasons"] for r in stage_status(run_dir, STAGES)}
    assert messages == [f"[{name}] would " + (f"run: {'; '.join(r)}" if r else "skip: up to date")
                        for name, r in reasons.items()]
    assert reasons["make"] == ["output numbers.jsonl changed since the stage wrote it (88 -> 111 bytes)"]
    assert reasons["double"] == ["input numbers.jsonl changed"]
