"""Bad input through the command line, one row per case: the command, the exit code, the first
line of what it says, and the files of the run folder that may change (all others must stay
byte-identical). Every case runs `python -m salmon_lib` in-process on a fresh copy of a
hand-made finished run (tests/fuzz/runs.py); no case starts a kernel, so a traceback would fail
the test. Add a row for each new way in which a user's input went wrong.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from tests.fuzz.runs import Case, Ctx, build_finished_run, check_case, make_reward_model, write

GOOD = {"prompt": "Tell me about bees.", "response": "Bees make honey.", "principles": ["Be concise."]}


def run_cmd(*extra: str, preset: str = "tiny", dry: bool = False):
    return lambda c: ["run", "--preset", preset.format(data=c.data), "--run", str(c.run), "--no-progress",
                      *(x.format(data=c.data, run=c.run) for x in extra), *(["--dry-run"] if dry else [])]


def status_cmd(c: Ctx) -> list[str]:
    return ["status", "--run", str(c.run)]


def score_cmd(inp: str, out: str = "{out}/scored.jsonl", rm: str = "{run}/rm", *extra: str):
    def argv(c: Ctx) -> list[str]:
        fill = dict(run=c.run, data=c.data, out=c.out)
        return ["score", "--reward-model", rm.format(**fill), "--input", inp.format(**fill),
                "--output", out.format(**fill), *extra]
    return argv


def emptied(name: str) -> Callable[[Ctx], None]:
    return lambda c: (c / name).write_bytes(b"")


def junk(name: str) -> Callable[[Ctx], None]:
    return lambda c: (c / name).write_bytes(b"not a safetensors file")


def file_to_folder(name: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        (c / name).unlink()
        (c / name).mkdir()
    return setup


def mark_failed(stage: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        manifest = json.loads((c / "manifest.json").read_text())
        manifest["stages"][stage]["status"] = "failed"
        (c / "manifest.json").write_text(json.dumps(manifest))
    return setup


def rm_variant(change: Callable[[Path], None]) -> Callable[[Ctx], None]:
    """A copy of the run's reward model at <run>/rm_bad, damaged by `change`."""
    def setup(c: Ctx) -> None:
        shutil.copytree(c / "rm", c / "rm_bad")
        change(c / "rm_bad")
    return setup


def truncate(name: str, keep: int) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes((folder / name).read_bytes()[:keep])


def score_lines(*lines: str | bytes) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        write(c / "score_in" / "in.jsonl", b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return setup


def scored(n: int) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        recs = [json.loads(line) for line in (c.out / "scored.jsonl").read_text().splitlines()]
        assert len(recs) == n and all(isinstance(r["score"], float) for r in recs)
    return check


def immutable(c: Ctx) -> None:
    done = subprocess.run(["chattr", "+i", str(c.run)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("chattr +i is not available here")


GOOD_LINE = json.dumps(GOOD)
CASES = [
    # -- ranges: caught up front, by a dry run too, before any kernel starts
    Case("negative max_prompts (dry run)", run_cmd("-p", "prompts.max_prompts=-3", dry=True), 2,
         r"-p prompts.max_prompts=-3: must be >= 0, got -3"),
    Case("negative max_prompts", run_cmd("-p", "prompts.max_prompts=-3"), 2, r"prompts.max_prompts=-3: must be >= 0"),
    Case("negative epochs", run_cmd("-p", "engrave.epochs=-1"), 2, r"-p engrave.epochs=-1: must be >= 0"),
    Case("zero epochs", run_cmd("-p", "reward_model.epochs=0", dry=True), 2, r"must be > 0 when max_steps is -1"),
    Case("negative num_bootstrap", run_cmd("-p", "prompts.num_bootstrap=-1", dry=True), 2,
         r"-p prompts.num_bootstrap=-1: must be >= 0"),
    Case("negative tgrt_rounds", run_cmd("-p", "prompts.tgrt_rounds=-2"), 2, r"prompts.tgrt_rounds=-2: must be >= 0"),
    Case("nan learning rate", run_cmd("-p", "engrave.learning_rate=.nan", dry=True), 2,
         r"-p engrave.learning_rate=.nan: expected a finite number, got nan"),
    Case("infinite learning rate", run_cmd("-p", "reward_model.learning_rate=.inf"), 2, r"expected a finite number"),
    Case("zero learning rate", run_cmd("-p", "reward_model.learning_rate=0"), 2, r"learning_rate=0: must be > 0"),
    Case("negative temperature", run_cmd("-p", "self_align.temperature=-0.5", dry=True), 2, r"must be >= 0"),
    Case("negative ALMoST temperature", run_cmd("-p", "preferences.almost_temperature=-1"), 2,
         r"almost_temperature=-1: must be >= 0"),
    Case("negative common seed", run_cmd("-p", "common.seed=-1", dry=True), 2, r"-p common.seed=-1: must be >= 0"),
    # -- files named by parameters
    Case("missing principle file (dry run)", run_cmd("-p", "self_align.principles={data}/nope.yaml", dry=True), 2,
         r"principles=.*nope.yaml: .*nope.yaml: file not found"),
    Case("principle file is a folder", run_cmd("-p", "preferences.principles={data}", dry=True), 2,
         r"is a folder, expected a file"),
    Case("principle file not UTF-8 (dry run)", run_cmd("-p", "self_align.principles={data}/latin1_rules.yaml",
                                                       dry=True), 2,
         r"latin1_rules.yaml:\d+: not UTF-8 text \(byte 0xe9 at column \d+\)"),
    Case("principle file with a typo (dry run)", run_cmd("-p", "reward_model.plot_principles={data}/typo.yaml",
                                                        dry=True), 2, r"typo.yaml:\d+: .*unknown field"),
    Case("seed file not UTF-8", run_cmd("-p", "prompts.seed_file={data}/latin1_seeds.yaml"), 2,
         r"seed_file=.*: .*latin1_seeds.yaml:2: not UTF-8 text \(byte 0xe9 at column 8\)"),
    Case("source is a folder", run_cmd("-p", "prompts.sources={{dolly: [{data}]}}", dry=True), 2,
         r"sources.dolly: .*is not a file"),
    # -- model specs: a cheap look at the folder, no weights loaded
    Case("model folder that is not a model (dry run)", run_cmd("-p", "self_align.model={data}/not_a_model",
                                                              dry=True), 2,
         r"self_align.model=.*: .*not_a_model is not a model folder: expected a config.json"),
    Case("adapter given as a model", run_cmd("-p", "reward_model.model={run}/rm"), 2,
         r"rm is a LoRA adapter, not a model"),
    Case("model config without weights", run_cmd("-p", "engrave.model={data}/no_weights", dry=True), 2,
         r"no_weights holds a config.json but no weights"),
    Case("model spec is a file", run_cmd("-p", "common.model={data}/typo.yaml", dry=True), 2,
         r"typo.yaml is a file, not a model folder"),
    Case("model spec that is nothing", run_cmd("-p", "preferences.model=not/a/model", dry=True), 2,
         r"neither 'default', 'tiny', an existing folder nor a Hub id"),
    # -- presets
    Case("preset not UTF-8", run_cmd(preset="{data}/latin1_preset.yaml"), 2,
         r"latin1_preset.yaml:2: not UTF-8 text \(byte 0xe9"),
    Case("preset is a folder", run_cmd(preset="{data}/folder.yaml"), 2, r"folder.yaml: is a folder, expected a preset"),
    Case("preset is not YAML", run_cmd(preset="{data}/broken.yaml", dry=True), 2, r"broken.yaml:\d+: not valid YAML"),
    # -- the run folder
    Case("run folder is a file", lambda c: ["run", "--preset", "tiny", "--run", str(c.data / "typo.yaml")], 2,
         r"typo.yaml is a file, not a folder: pick another --run"),
    Case("run folder inside a file", lambda c: ["run", "--preset", "tiny", "--run", str(c.data / "typo.yaml/sub")], 2,
         r"typo.yaml is a file, not a folder"),
    Case("immutable run folder", run_cmd(), 2, r"run: cannot write in this folder",
         setup=immutable),
    Case("status of a file", lambda c: ["status", "--run", str(c.data / "typo.yaml")], 2,
         r"typo.yaml is a file, not a run folder"),
    Case("status of nothing", lambda c: ["status", "--run", str(c.data / "nothing")], 2, r"has no manifest.json"),
    Case("truncated manifest", run_cmd(dry=True), 2, r"manifest.json:\d+: not valid JSON",
         setup=lambda c: (c / "manifest.json").write_text('{"stages": {"prompts": {')),
    Case("truncated manifest, status", status_cmd, 2, r"manifest.json:\d+: not valid JSON",
         setup=lambda c: (c / "manifest.json").write_text('{"stages": {')),
    Case("manifest not UTF-8", status_cmd, 2, r"manifest.json:1: not UTF-8 text",
         setup=lambda c: (c / "manifest.json").write_bytes(b'{"stages": "\xff"}')),
    Case("run.yaml not YAML, status", status_cmd, 2, r"run.yaml:\d+: not valid YAML",
         setup=lambda c: (c / "run.yaml").write_text("stages: [unclosed\n")),
    # -- damaged outputs: status and the plan compare hashes
    Case("junk reward model weights, status", status_cmd, 1, "", setup=junk("rm/adapter_model.safetensors"),
         stdout=r"reward_model +finished +yes .*output rm/ changed since the stage wrote it "
                r"\(adapter_model.safetensors differs\)"),
    Case("prompts.jsonl replaced by a folder, status", status_cmd, 1, "", setup=file_to_folder("prompts.jsonl"),
         stdout=r"prompts +finished +yes .*output prompts.jsonl is now a folder, it was a file"),
    Case("emptied output, status", status_cmd, 1, "", setup=emptied("self_align.jsonl"),
         stdout=r"self_align +finished +yes .*output self_align.jsonl was emptied \(\d+ bytes when the stage wrote"),
    Case("damaged output, dry run", run_cmd(dry=True), 0, "", setup=junk("rm/adapter_model.safetensors"),
         stdout=r"\[reward_model\] would run: output rm/ changed since the stage wrote it"),
    Case("emptied input of a later stage", run_cmd("--from", "engrave"), 2,
         r"stage 'engrave' reads self_align.jsonl, but self_align.jsonl was emptied .*: run stage 'self_align' "
         r"again \(--from self_align\), or pass --accept-changed", setup=emptied("self_align.jsonl")),
    Case("accepted change, dry run", run_cmd("--accept-changed", "--from", "self_align", dry=True), 0, "",
         setup=lambda c: (c / "self_align.jsonl").write_text('{"id": "mine", "kept": true}\n'),
         stdout=r"\[self_align\] would skip: up to date\n\[engrave\] would run: input self_align.jsonl changed"),
    Case("input left by a failed stage", run_cmd("--only", "self_align"), 2,
         r"stage 'self_align' reads prompts.jsonl, which stage 'prompts' left unfinished \(its last run failed\)",
         setup=mark_failed("prompts")),
    # -- the score command
    Case("score: output is the input", score_cmd("{run}/score_in/in.jsonl", "{run}/score_in/in.jsonl"), 2,
         r"--output .*in.jsonl is the input file", setup=score_lines(GOOD_LINE)),
    Case("score: output is the input by another path",
         score_cmd("{run}/score_in/in.jsonl", "{run}/score_in/../score_in/in.jsonl"), 2, r"is the input file",
         setup=score_lines(GOOD_LINE)),
    Case("score: lone surrogate escape", score_cmd("{run}/score_in/in.jsonl"), 0,
         r"warning: skipped .*in.jsonl:2: field 'prompt' holds a lone surrogate escape",
         setup=score_lines(GOOD_LINE, r'{"prompt": "bad \ud800", "response": "x", "principles": ["p"]}', GOOD_LINE),
         check=scored(2)),
    Case("score: byte that is not UTF-8", score_cmd("{run}/score_in/in.jsonl"), 0,
         r"warning: skipped .*in.jsonl:2: not UTF-8 text \(byte 0xe9 at column 16\)",
         setup=score_lines(GOOD_LINE, b'{"prompt": "caf\xe9", "response": "x", "principles": ["p"]}', GOOD_LINE),
         check=scored(2)),
    Case("score: every line bad", score_cmd("{run}/score_in/in.jsonl"), 1, r"warning: skipped .*in.jsonl:1",
         setup=score_lines("{not json", b"\xff")),
    Case("score: batch size 0", score_cmd("{run}/score_in/in.jsonl", "{out}/s.jsonl", "{run}/rm", "--batch-size", "0"),
         2, r"batch_size: must be at least 1, got 0", setup=score_lines(GOOD_LINE)),
    Case("score: truncated rm_info.json", score_cmd("{run}/score_in/in.jsonl", rm="{run}/rm_bad"), 2,
         r"rm_bad/rm_info.json:\d+: not valid JSON",
         setup=lambda c: (score_lines(GOOD_LINE)(c), rm_variant(truncate("rm_info.json", 40))(c))),
    Case("score: rm_info.json without base_model", score_cmd("{run}/score_in/in.jsonl", rm="{run}/rm_bad"), 2,
         r"rm_info.json: no 'base_model' mapping",
         setup=lambda c: (score_lines(GOOD_LINE)(c),
                          rm_variant(lambda f: (f / "rm_info.json").write_text('{"trained_by": "me"}'))(c))),
    Case("score: truncated adapter", score_cmd("{run}/score_in/in.jsonl", rm="{run}/rm_bad"), 2,
         r"adapter_model.safetensors: damaged or truncated adapter weights",
         setup=lambda c: (score_lines(GOOD_LINE)(c), rm_variant(truncate("adapter_model.safetensors", 1000))(c))),
    Case("score: truncated template", score_cmd("{run}/score_in/in.jsonl", rm="{run}/rm_bad"), 2,
         r"template.json:\d+: not valid JSON",
         setup=lambda c: (score_lines(GOOD_LINE)(c), rm_variant(truncate("template.json", 30))(c))),
    Case("score: adapter without a score head", score_cmd("{run}/score_in/in.jsonl", rm="{data}/rm_no_head"), 2,
         r"rm_no_head: the adapter holds no trained score head", setup=score_lines(GOOD_LINE)),
    Case("score: no reward model there", score_cmd("{run}/score_in/in.jsonl", rm="{data}/nothing"), 2,
         r"nothing: not found; expected the reward folder", setup=score_lines(GOOD_LINE)),
    Case("score: base model that is nothing", score_cmd("{run}/score_in/in.jsonl", rm="{run}/rm_bad"), 2,
         r"model spec 'nowhere' is neither",
         setup=lambda c: (score_lines(GOOD_LINE)(c), rm_variant(
             lambda f: (f / "rm_info.json").write_text('{"base_model": {"spec": "nowhere"}}'))(c))),
    Case("score: input is a folder", score_cmd("{data}"), 2, r"is a folder, expected a file"),
    Case("score: output is a folder", score_cmd("{run}/score_in/in.jsonl", "{data}"), 2,
         r"--output .*: is a folder; give a file name", setup=score_lines(GOOD_LINE)),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    rm = make_reward_model(root / "rm_source")
    run = build_finished_run(root / "finished", rm)
    data = root / "data"
    rules = (Path(__file__).parents[2] / "principles" / "self_align.yaml").read_bytes()
    write(data / "latin1_rules.yaml", rules + b"\n# caf\xe9\n")
    write(data / "latin1_seeds.yaml", b"queries:\n  - caf\xe9 au lait?\n")
    write(data / "latin1_preset.yaml", b"common:\n  model: tiny  # caf\xe9\n")
    write(data / "typo.yaml", "principles:\n  - name: Concise\n    definitoin: Keep it short.\n")
    write(data / "broken.yaml", "common: {model: tiny\nstages: [\n")
    (data / "folder.yaml").mkdir()
    write(data / "not_a_model" / "readme.txt", "just notes\n")
    write(data / "no_weights" / "config.json", json.dumps({"model_type": "llama"}))
    _adapter_without_head(data / "rm_no_head", rm)
    return run, data


def _adapter_without_head(folder: Path, rm: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from salmon_lib.models import load_model

    _, model = load_model("tiny")
    get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(
        str(folder))
    for name in ("rm_info.json", "template.json"):
        shutil.copy(rm / name, folder / name)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, base, tmp_path, capsys):
    run, data = base
    try:
        check_case(case, Ctx(tmp_path / "run", data, tmp_path / "out"), run, capsys)
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "run")], capture_output=True)


def test_every_case_has_its_own_name():
    assert len({c.name for c in CASES}) == len(CASES)




def test_a_reward_model_loads_its_trained_head_without_a_missing_key_report(base):
    """The base model has no score head, so transformers reports score.weight as newly initialised;
    the adapter then supplies the trained head. The report is dropped then, and only then."""
    import logging

    import torch

    from salmon_lib.models import load_model
    from salmon_lib.reward import RewardModel

    run, _ = base
    reports = []
    handler = logging.Handler()
    handler.emit = lambda record: reports.append(record.getMessage())
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    try:
        rm = RewardModel.load(run / "rm")
        assert not [r for r in reports if "LOAD REPORT" in r]
        assert torch.all(rm.head.weight == 0.5)  # the value make_reward_model saved, not a fresh init
        load_model("tiny", head="score")  # no adapter: the head really is new, and the report says so
        assert any("LOAD REPORT" in r and "score.weight" in r for r in reports)
    finally:
        logger.removeHandler(handler)
