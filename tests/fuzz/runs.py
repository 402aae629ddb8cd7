"""Hand-made run folders for the fuzz cases: every registered stage "finished" with the tiny
preset's parameters, its outputs on disk and hashed in the manifest, so the runner, `status` and
`--dry-run` see a complete run without any stage having run (seconds instead of minutes).

`rm/` is a real reward model (the tiny base, a LoRA adapter with a score head, the template and
rm_info.json), so `score` cases load it; every other output holds small placeholder content."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Callable

from salmon_lib.cli import main
from salmon_lib.provenance import hash_artifacts
from salmon_lib.runner.manifest import MANIFEST, RUN_YAML, now
from salmon_lib.runner.plan import jsonable, kernel_run_dir, notebook_digest
from salmon_lib.runner.presets import load_preset, resolve
from salmon_lib.stages import STAGES

PROMPTS = [{"id": f"p{i}", "prompt": f"Question number {i}?", "source": "seed", "question_type": "general",
            "meta": {}} for i in range(6)]


def make_reward_model(folder: Path, head_value: float = 0.5) -> Path:
    """A stage-04-shaped reward model folder on the tiny base: LoRA on the backbone, the score head
    in the adapter (set to `head_value` everywhere, so a test can tell it from a fresh head)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from salmon_lib.models import ModelConfig, load_model
    from salmon_lib.reward.score import save_info
    from salmon_lib.reward.template import RMTemplate

    _, model = load_model(ModelConfig(spec="tiny"), head="score")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="SEQ_CLS"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "score" in name:
                p.fill_(head_value)
    model.save_pretrained(str(folder))
    RMTemplate().save(folder)
    save_info(folder, ModelConfig(spec="tiny").to_dict())
    return folder


def _placeholder(path: Path, name: str) -> None:
    if name == "prompts.jsonl":
        path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    elif name.endswith(".jsonl"):
        path.write_text(json.dumps({"id": "x", "stage output": name}) + "\n")
    else:
        path.write_text(json.dumps({"stage output": name}) + "\n")


def build_finished_run(run_dir: Path, rm_source: Path) -> Path:
    """Outputs of every registered stage plus a manifest saying each finished with the tiny preset."""
    run_dir.mkdir(parents=True)
    configs, _ = resolve(load_preset("tiny"), STAGES, {}, kernel_run_dir(run_dir))
    stages = {}
    for stage in STAGES:
        for declared in stage.outputs:
            name = declared.rstrip("?")
            path = run_dir / name.rstrip("/")
            if name == "rm/":
                shutil.copytree(rm_source, path)
            elif name.endswith("/"):
                path.mkdir()
                (path / "placeholder.json").write_text(json.dumps({"stage output": name}) + "\n")
            else:
                _placeholder(path, name)
        started = now()
        stages[stage.name] = {
            "status": "finished", "notebook": stage.notebook, "notebook_sha256": notebook_digest(stage.notebook_path()),
            "executed": f"notebooks/{stage.notebook_path().name}", "params": jsonable(configs[stage.name].to_dict()),
            "inputs": hash_artifacts(run_dir, stage.inputs), "outputs": hash_artifacts(run_dir, stage.outputs),
            "started": started, "ended": now(), "wall_s": 0.1, "error": None, "pid": 0, "versions": {},
        }
    (run_dir / MANIFEST).write_text(json.dumps({"run": run_dir.name, "stages": stages}, indent=2))
    params = {name: jsonable(cfg.to_dict()) for name, cfg in configs.items()}
    (run_dir / RUN_YAML).write_text(json.dumps({"preset": "configs/tiny.yaml", "stages": params}))
    return run_dir


def file_digests(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`, hidden ones included."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@dataclasses.dataclass
class Ctx:
    run: Path  # a fresh copy of the finished run
    data: Path  # bad inputs, shared by every case (outside the run folder)
    out: Path  # an empty folder for outputs

    def __truediv__(self, name: str) -> Path:
        return self.run / name


@dataclasses.dataclass
class Case:
    name: str
    argv: Callable[[Ctx], list[str]]
    code: int
    first: str  # regex searched in the first "error:"/"warning:" line of stderr
    changes: tuple[str, ...] = ()  # run-folder files allowed to change
    setup: Callable[[Ctx], None] | None = None
    stdout: str | None = None  # regex searched in stdout
    check: Callable[[Ctx], None] | None = None  # more assertions after the command


def first_message(stderr: str) -> str:
    """The first "error:" or "warning:" line (argparse's "prog: error: ..." included)."""
    return next((line for line in stderr.splitlines() if re.search(r"(^|: )(error|warning): ", line)), "")


def check_case(case: Case, ctx: Ctx, finished: Path, capsys) -> None:
    """Run `case` on a fresh copy of the `finished` run: exit code, first message, stdout, and no
    file of the run folder changed but the ones the case allows."""
    shutil.copytree(finished, ctx.run)
    ctx.out.mkdir()
    if case.setup:
        case.setup(ctx)
    before = file_digests(ctx.run)
    try:
        code = main(case.argv(ctx))
    except SystemExit as err:  # argparse refuses a value before any command runs
        code = err.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == case.code, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert re.search(case.first, first_message(err)), f"first message: {first_message(err)!r}\nstderr: {err}"
    if case.stdout:
        assert re.search(case.stdout, out), out
    after = file_digests(ctx.run)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert changed <= set(case.changes), f"changed: {sorted(changed - set(case.changes))}"
    if case.check:
        case.check(ctx)
