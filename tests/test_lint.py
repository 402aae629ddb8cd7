"""The linter the project is held to: ruff with pyproject.toml's [tool.ruff] settings."""

import subprocess

import pytest

from salmon_lib.paths import PROJECT_ROOT


def test_ruff_reports_nothing():
    pytest.importorskip("ruff", reason="ruff is not installed here: pip install -c constraints.txt -r requirements.txt")
    from ruff.__main__ import find_ruff_bin

    out = subprocess.run([find_ruff_bin(), "check", "--no-cache", "--output-format", "concise", "."],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
