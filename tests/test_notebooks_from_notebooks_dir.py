"""Every stage notebook opened in JupyterLab, whose kernel starts in notebooks/: its cells up to
the first heavy step must run there as they do from the project root (a relative file parameter
such as "principles/self_align.yaml" must be found from notebooks/ too, not only from the root)."""

import json

import pytest

from salmon_lib.stages import PROJECT_ROOT, STAGES

# Code cells after the parameters cell that do no heavy work (no model load, no generation or
# training); every notebook has at least its setup cell, which builds and checks the config.
LIGHT_CELLS = {"01_self_align.ipynb": 2}


def light_cells(stage) -> list[str]:
    path = stage.notebook_path()
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    start = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    n = LIGHT_CELLS.get(path.name, 1)
    return ["".join(c["source"]) for c in cells[start:start + 1 + n]]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_notebook_setup_runs_with_notebooks_as_working_directory(stage, tmp_path, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT / "notebooks")
    params, *setup = light_cells(stage)
    namespace: dict = {}
    exec(compile(params, "parameters", "exec"), namespace)
    # what a user does in JupyterLab: point the notebook at a run directory (and a small model)
    exec(compile(f"run_dir = {str(tmp_path / 'run')!r}\nmodel = 'tiny'", "injected", "exec"), namespace)
    for i, source in enumerate(setup):
        exec(compile(source, f"{stage.notebook_path().name} cell {i + 2}", "exec"), namespace)
    assert namespace["cfg"].run_dir == str(tmp_path / "run")
