"""notebooks/00_prompts.ipynb under the runner with the tiny preset."""

import json

import nbformat
import pytest

from salmon_lib.io import read_jsonl
from salmon_lib.runner.pipeline import run_pipeline


@pytest.mark.slow  # ~25 s: a kernel start plus the tiny model generating
def test_prompts_notebook_on_the_tiny_preset(tmp_path):
    run_dir = tmp_path / "tiny"
    summary = run_pipeline("tiny", run_dir, only=["prompts"], progress=False, log=lambda m: None)
    assert [(s, a) for s, a, _ in summary] == [("prompts", "ran")]
    stats = json.loads((run_dir / "prompts_stats.json").read_text())
    records = read_jsonl(run_dir / "prompts.jsonl")
    assert len(records) == stats["total"] == 24 and {"seed"} <= set(stats["by_source"])
    assert stats["generation"]["bootstrap"]["generate calls"] <= 2
    assert (run_dir / "figures" / "prompts_filters.png").is_file()
    executed = next(run_dir.rglob("00_prompts*.ipynb"))
    text = "".join(str(o.get("text", "")) for c in nbformat.read(executed, 4).cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "24 prompts from" in text


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read("notebooks/00_prompts.ipynb", 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert code[0].metadata.get("tags") == ["parameters"]


def test_notebook_parameters_are_the_config_defaults():
    import ast
    import dataclasses

    from salmon_lib.prompts import PromptsConfig

    cell = nbformat.read("notebooks/00_prompts.ipynb", 4).cells[1].source
    values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell).body}
    defaults = {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(PromptsConfig)}
    assert values == defaults
