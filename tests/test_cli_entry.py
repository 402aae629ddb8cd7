"""The package's commands answer both as the console command `salmon` (installed from
pyproject.toml's [project.scripts]) and as `python -m salmon_lib`."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"run", "status", "notebooks", "steer", "chat", "score", "principles", "smoke", "prepare"}


def test_the_salmon_console_command_points_at_the_cli(monkeypatch, capsys):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["salmon"].partition(":")
    entry = getattr(importlib.import_module(module), attr)
    monkeypatch.setattr(sys, "argv", ["/some/venv/bin/salmon", "--help"])
    with pytest.raises(SystemExit) as exc:  # what the installed `salmon` script runs: sys.exit(entry())
        entry()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: salmon ")
    assert COMMANDS <= set(out.split("{", 1)[1].split("}", 1)[0].split(","))


def test_python_dash_m_salmon_lib_still_works():
    out = subprocess.run([sys.executable, "-m", "salmon_lib", "run", "--help"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m salmon_lib run ")
