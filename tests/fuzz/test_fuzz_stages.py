"""Bad input that only a running stage can meet, and what the runner does around a stage: a
failing stage gets its previous outputs back, damaged outputs are set aside and their stage
reruns, leftovers of killed writes are removed, a successful run prints no kernel noise.

Most rows run a stage's code in-process (no kernel); one runs the real stage 00 under the
runner on a hand-made run (tests/fuzz/runs.py), the rest use the runner's two small test stages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from salmon_lib.io import DataError
from salmon_lib.provenance import hash_path
from salmon_lib.runner.outputs import CHANGED, PREVIOUS
from salmon_lib.runner.pipeline import StageFailed, run_pipeline
from salmon_lib.runner.status import stage_status
from tests.fuzz.runs import Case, Ctx, build_finished_run, check_case, file_digests, make_reward_model, write
from tests.notebooks.runner_stages import STAGES


@dataclasses.dataclass
class SourceCase:
    name: str
    kind: str  # reader format
    content: bytes | None  # the file's bytes; None: the location is a dataset id
    suffix: str
    first: str  # regex for the error's message


SOURCES = [
    SourceCase("empty file", "dolly", b"", ".jsonl",
               r"sources.dolly: .*empty.jsonl: no prompts read \(it holds no rows\)"),
    SourceCase("not parquet", "openorca", b"PAR1 but not really", ".parquet",
               r"sources.openorca: .*: no prompts read \(.*not a readable parquet file"),
    SourceCase("unreachable data set id", "oasst1", None, "",
               r"sources.oasst1: someone/absent-data: no prompts read \(someone/absent-data: not a local file, and the "
               r"Hugging Face Hub is unreachable"),
    SourceCase("Dolly file not UTF-8", "dolly", b'{"instruction": "caf\xe9?", "category": "open_qa"}\n', ".jsonl",
               r"no prompts read \(.*:1: not UTF-8 text \(byte 0xe9 at column 21\)\)"),
    SourceCase("every row filtered out", "dolly",
               b'{"instruction": "Summarise this.", "category": "summarization"}\n', ".jsonl",
               r"no prompts read \(1 row\(s\), none kept: \{'category not selected': 1\}\)"),
]


@pytest.mark.parametrize("case", SOURCES, ids=[c.name for c in SOURCES])
def test_a_source_that_gives_no_prompt_stops_stage_00_before_it_writes(case, tmp_path, monkeypatch):
    from salmon_lib.prompts import PromptsConfig, run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub check answers at once, as on this machine
    location = "someone/absent-data" if case.content is None else str(
        write(tmp_path / f"{case.name.split()[0]}{case.suffix}", case.content))
    (tmp_path / "prompts.jsonl").write_text('{"id": "a", "prompt": "kept"}\n')
    cfg = PromptsConfig.from_dict({"run_dir": str(tmp_path), "model": "tiny", "sources": {case.kind: [location]}})
    with pytest.raises(DataError, match=case.first):
        run(cfg)
    assert (tmp_path / "prompts.jsonl").read_text() == '{"id": "a", "prompt": "kept"}\n'


# -- the real stage 00 under the runner, on a hand-made finished run --------------------------------

KERNEL_CASES = [
    Case("stage 00 on an empty source",
         lambda c: ["run", "--preset", "tiny", "--run", str(c.run), "--only", "prompts", "--no-progress",
                    "-p", f"prompts.sources={{dolly: [{c.data / 'empty.jsonl'}]}}"], 1,
         r"^error: stage 'prompts' failed: DataError: sources.dolly: .*empty.jsonl: no prompts read \(it holds no "
         r"rows\) \(cell \d+\); its previous outputs are back in place",
         changes=("manifest.json", "run.yaml", ".lock", "notebooks/00_prompts.ipynb"),
         stdout=r"\[prompts\] FAILED after"),
]


@pytest.mark.slow  # a kernel importing the stage's stack: ~30 s alone, minutes on a loaded machine
@pytest.mark.parametrize("case", KERNEL_CASES, ids=[c.name for c in KERNEL_CASES])
def test_a_failing_stage_leaves_the_run_as_it_was(case, tmp_path, capsys):
    rm = make_reward_model(tmp_path / "rm")
    finished = build_finished_run(tmp_path / "finished", rm)
    write(tmp_path / "data" / "empty.jsonl", b"")
    ctx = Ctx(tmp_path / "run", tmp_path / "data", tmp_path / "out")
    check_case(case, ctx, finished, capsys)
    record = json.loads((ctx.run / "manifest.json").read_text())["stages"]["prompts"]
    assert record["status"] == "failed" and record["restored"]
    assert not (ctx.run / PREVIOUS / "prompts").exists()


# -- the runner around a stage, with its two test stages --------------------------------------------

PRESET = "stages:\n  make: {n: 4}\n  double: {factor: 3}\n"


def run(preset, run_dir, messages=None, **kw):
    log = messages.append if messages is not None else (lambda m: None)
    return run_pipeline(preset, run_dir, stages=STAGES, progress=False, log=log, **kw)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    (root / "p.yaml").write_text(PRESET)
    run(root / "p.yaml", root / "base")
    return root / "p.yaml", root / "base"


def copy_of(finished, tmp_path) -> Path:
    shutil.copytree(finished[1], tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow  # a stage kernel run twice: ~50 s beside another test
def test_a_stage_failing_after_it_wrote_gets_its_previous_outputs_back(finished, tmp_path):
    preset, _ = finished
    run_dir = copy_of(finished, tmp_path)
    outputs = {name: (run_dir / name).read_bytes() for name in ("numbers.jsonl", "make_stats.json")}
    for attempt in range(2):  # a second failure after a restore still has the good outputs to go back to
        with pytest.raises(StageFailed, match="make was asked to fail.*previous outputs are back in place"):
            run(preset, run_dir, overrides=["make.n=6", "make.fail=true"])
        assert {name: (run_dir / name).read_bytes() for name in outputs} == outputs, f"attempt {attempt}"
        record = json.loads((run_dir / "manifest.json").read_text())["stages"]["make"]
        assert record["status"] == "failed" and record["restored"]
        assert record["outputs"]["numbers.jsonl"] == hash_path(run_dir / "numbers.jsonl")
        assert not (run_dir / PREVIOUS).joinpath("make").exists()
    # the later stage still reads what the restored outputs are: it is not stale for its input
    assert "input numbers.jsonl changed" not in stage_status(run_dir, STAGES)[1]["reasons"]
    run(preset, run_dir, overrides=["make.n=6"])
    assert len((run_dir / "numbers.jsonl").read_text().splitlines()) == 6
    assert not (run_dir / PREVIOUS / "make").exists()


def test_damaged_outputs_are_kept_aside_and_their_stage_reruns(finished, tmp_path):
    preset, base = finished
    run_dir = copy_of(finished, tmp_path)
    (run_dir / "doubled" / "values.json").write_text("junk")
    (run_dir / "numbers.jsonl").unlink()
    (run_dir / "numbers.jsonl").mkdir()
    (run_dir / "numbers.jsonl" / "mine.txt").write_text("someone's notes")
    rows = {r["stage"]: r for r in stage_status(run_dir, STAGES)}
    assert rows["make"]["reasons"] == ["output numbers.jsonl is now a folder, it was a file"]
    assert "output doubled/ changed since the stage wrote it (values.json differs)" in rows["double"]["reasons"]
    messages = []
    summary = run(preset, run_dir, messages)
    assert [a for _, a, _ in summary] == ["ran", "ran"]
    assert (run_dir / "numbers.jsonl").read_bytes() == (base / "numbers.jsonl").read_bytes()
    assert json.loads((run_dir / "doubled" / "values.json").read_text()) == [0, 3, 6, 9]
    kept = [p.relative_to(run_dir / CHANGED).as_posix() for p in (run_dir / CHANGED).rglob("*") if p.is_file()]
    assert sorted(k.split("/", 1)[1] for k in kept) == ["doubled/values.json", "numbers.jsonl/mine.txt"]
    assert any("numbers.jsonl is now a folder, it was a file: kept as" in m for m in messages)
    assert all(r["status"] == "finished" and not r["stale"] for r in stage_status(run_dir, STAGES))


def test_leftovers_of_killed_writes_are_removed_before_a_run(finished, tmp_path):
    preset, _ = finished
    run_dir = copy_of(finished, tmp_path)
    leftovers = [write(run_dir / ".numbers.jsonl.k2j4h1.tmp", "half a line"),
                 write(run_dir / "doubled" / ".values.json.a8b.tmp", "["),
                 write(run_dir / ".sft.tmp" / "adapter_model.safetensors", b"\0\0")]
    before = {k: v for k, v in file_digests(run_dir).items() if ".tmp" not in k}
    messages = []
    assert [a for _, a, _ in run(preset, run_dir, messages)] == ["skipped", "skipped"]
    assert not any(p.exists() for p in leftovers) and not (run_dir / ".sft.tmp").exists()
    assert any(m.startswith("removed 3 temporary file(s) left by an interrupted write") for m in messages)
    after = file_digests(run_dir)
    assert {k: v for k, v in after.items() if k in before and k not in ("manifest.json", "run.yaml", ".lock")} == \
        {k: v for k, v in before.items() if k not in ("manifest.json", "run.yaml", ".lock")}


def test_a_finished_kernel_is_shut_down_without_an_interrupt(monkeypatch):
    """jupyter_client interrupts a kernel before shutting it down, and an idle ipykernel then logs
    "KeyboardInterrupt caught in kernel" after a successful run; the runner's manager skips it."""
    from jupyter_client.manager import AsyncKernelManager

    from salmon_lib.runner.kernel import _kernel_manager_class

    calls = []

    async def interrupt(self):
        calls.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", interrupt)
    km = _kernel_manager_class()()
    km.shutting_down = True
    asyncio.run(km._async_interrupt_kernel())
    km.shutting_down = False
    asyncio.run(km._async_interrupt_kernel())  # a user's interrupt of a running kernel still goes through
    assert calls == [False]


def test_engraving_that_fails_keeps_the_checkpoints_of_earlier_settings(tmp_path):
    """Stage 02 starts afresh when its settings changed; if that fresh start fails (here peft finds
    no module to put LoRA on; any failure of the fresh start is handled alike),
    the earlier checkpoints are back in place."""
    from salmon_lib.engrave.stage import run as engrave
    from tests.test_engrave import tiny_cfg, write_self_align

    write_self_align(tmp_path, n=4)
    old = write(tmp_path / "sft_checkpoints" / "checkpoint-2" / "adapter_model.safetensors", b"earlier weights")
    write(tmp_path / "sft_checkpoints" / "engrave_config.json", json.dumps({"learning_rate": 1.0}))
    before = file_digests(tmp_path / "sft_checkpoints")
    with pytest.raises(ValueError, match="no_such_module"):
        engrave(tiny_cfg(tmp_path, lora_target_modules="no_such_module"))
    assert old.read_bytes() == b"earlier weights"
    assert file_digests(tmp_path / "sft_checkpoints") == before
    assert not (tmp_path / "sft").exists()
