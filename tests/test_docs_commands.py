"""Every shell command the documentation shows still works as written: README.md, RESULTS.md,
benchmarks/README.md and docs/**/*.md. A command is taken from each ```bash block (`\\` joins
lines, `#` starts a comment) and checked without doing its work: the package's commands are parsed
by the CLI's own parser (a misspelt flag or a missing argument fails), `run` is dry-run (presets,
`-p` overrides and stage names validated), make targets go through `make -n`, benchmark scripts
parse their flags without running, pytest commands name existing test files. A command of any
other kind fails the test, so a new kind of command needs a checker here."""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from salmon_lib.cli import build_parser, main
from salmon_lib.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", ROOT / "RESULTS.md", ROOT / "benchmarks" / "README.md",
             *sorted((ROOT / "docs").rglob("*.md"))]
PACKAGE_PREFIXES = (["salmon"], ["python", "-m", "salmon_lib"], [".venv/bin/python", "-m", "salmon_lib"])
STAGE_FLAGS = ("--from", "--to", "--only")


def shell_commands(path: Path) -> list[str]:
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def documented_commands() -> list[tuple[str, str]]:
    return [(str(path.relative_to(ROOT)), cmd) for path in DOC_FILES for cmd in shell_commands(path)]


def _strip_env(words: list[str]) -> list[str]:
    """`OMP_NUM_THREADS=1 CI=true cmd ...` -> `cmd ...`."""
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return words


def _package_args(words: list[str]) -> list[str] | None:
    for prefix in PACKAGE_PREFIXES:
        if words[:len(prefix)] == prefix:
            return words[len(prefix):]
    return None


class _Parsed(Exception):
    pass


_DRY_RUNS_PASSED: set[tuple[str, ...]] = set()


def check_runner_dry_run(args: list[str], tmp_path: Path, capsys) -> None:
    """`run ...` as a dry run into an empty folder. --from/--only/--to need a run that has the
    earlier stages' outputs, so their stage names are checked and the rest is dry-run in full."""
    names = {s.name for s in STAGES}
    kept, i = [], 0
    while i < len(args):
        if args[i] in STAGE_FLAGS:
            assert args[i + 1] in names, f"{args[i]} {args[i + 1]}: not a stage ({', '.join(sorted(names))})"
            i += 2
        elif args[i] == "--run":
            i += 2
        elif args[i] == "--dry-run":
            i += 1
        else:
            kept.append(args[i])
            i += 1
    key = tuple(kept)
    kept += ["--run", str(tmp_path / "run")]
    if key not in _DRY_RUNS_PASSED:  # many commands share a preset and overrides: one dry run each
        rc = main([*kept, "--dry-run"])
        assert rc == 0, capsys.readouterr().err
        assert not (tmp_path / "run").exists()
        _DRY_RUNS_PASSED.add(key)


def check_package_command(args: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        raise AssertionError(f"the CLI's parser refuses it: {capsys.readouterr().err.strip()}") from None
    if parsed.command == "run":
        check_runner_dry_run(args, tmp_path, capsys)
    with pytest.raises(SystemExit) as exc:  # the command's own --help, as a reader would try first
        build_parser().parse_args([parsed.command, "--help"])
    assert exc.value.code == 0


def check_script(script: Path, args: list[str], monkeypatch, capsys) -> None:
    """A benchmark script's flags, parsed by its own parser, which then stops it before any work."""
    assert script.is_file(), f"{script} does not exist"

    def parse_then_stop(self, argv=None, namespace=None):
        parsed, extra = self.parse_known_args(argv, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        raise _Parsed(parsed)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.chdir(ROOT)
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit:
        raise AssertionError(f"{script.name} refuses its flags: {capsys.readouterr().err.strip()}") from None
    except _Parsed:
        return
    raise AssertionError(f"{script.name} never parsed its command line")


def check_make(args: list[str]) -> None:
    out = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("where,command", [pytest.param(w, c, id=f"{w}: {c[:70]}") for w, c in documented_commands()])
def test_documented_command_runs(where, command, tmp_path, capsys, monkeypatch):
    words = _strip_env(shlex.split(command))
    package_args = _package_args(words)
    if package_args is not None:
        check_package_command(package_args, tmp_path, capsys, monkeypatch)
    elif words[0] == "make":
        check_make(words[1:])
    elif words[0] in ("python", ".venv/bin/python") and words[1].startswith("benchmarks/"):
        check_script(ROOT / words[1], words[2:], monkeypatch, capsys)
    elif words[0] in ("python", ".venv/bin/python") and words[1:3] == ["-m", "pytest"]:
        paths = [w.split("::")[0] for w in words[3:] if w.startswith("tests/")]
        assert paths and all((ROOT / p).exists() for p in paths), f"no such test file among {paths}"
    elif words[0] == ".venv/bin/jupyter" and words[1] == "lab":
        assert (ROOT / words[2]).is_dir(), f"{words[2]}: no such folder"
        assert (Path(sys.executable).parent / "jupyter-lab").exists(), "JupyterLab is not installed in the venv"
    elif words[0] == ".ci/run":
        assert (ROOT / ".ci" / "run").stat().st_mode & 0o111, ".ci/run is not executable"
    else:
        pytest.fail(f"{where}: no checker for this kind of command: {command}")


def test_the_docs_show_commands_of_every_kind():
    """The extraction finds the documented commands (an empty list would pass the test above)."""
    commands = [c for _, c in documented_commands()]
    assert "make demo" in commands and "make test" in commands
    assert any(c.startswith("salmon run ") for c in commands)
    assert any(c.startswith("python benchmarks/") for c in commands)
    assert {w for w, _ in documented_commands()} >= {"README.md", "RESULTS.md", "benchmarks/README.md"}


def test_a_misspelt_flag_or_unknown_stage_fails_the_checks(tmp_path, capsys, monkeypatch):
    with pytest.raises(AssertionError, match="refuses"):
        check_package_command(["status", "--runn", "demo"], tmp_path, capsys, monkeypatch)
    with pytest.raises(AssertionError, match="not a stage"):
        check_package_command(["run", "--preset", "tiny", "--from", "prefs"], tmp_path, capsys, monkeypatch)
    with pytest.raises(AssertionError):
        check_package_command(["run", "--preset", "tiny", "-p", "rl.no_such_key=1"], tmp_path, capsys, monkeypatch)
    with pytest.raises(AssertionError, match="refuses its flags"):
        check_script(ROOT / "benchmarks" / "generation.py", ["--jsn", "x.json"], monkeypatch, capsys)
