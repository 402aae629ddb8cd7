"""The README's two commands are the contract with a newcomer: keep them true."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_readme_has_the_two_make_commands_and_the_makefile_provides_them():
    commands = readme_commands()
    assert commands == ["make demo", "make test"]
    assert {"demo", "test", "setup", "model"} <= makefile_targets()


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in script.splitlines()


@pytest.mark.parametrize("target", ["demo", "test"])
def test_make_dry_run_resolves(target):
    out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
@pytest.mark.timeout(3900)  # the demo itself has an hour (below); the suite's 1200 s is for every other test
def test_make_demo_runs():
    out = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_make_test_runs_one_worker_per_core_under_omp_num_threads_1():
    """CI exports OMP_NUM_THREADS=1, which plain `nproc` takes as the core count."""
    out = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True,
                         env=os.environ | {"OMP_NUM_THREADS": "1"})
    cores = len(os.sched_getaffinity(0))
    assert f"pytest -q -n {0 if cores < 2 else min(cores, 4)} " in out.stdout, out.stdout
