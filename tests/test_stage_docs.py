"""Every stage has its page under docs/stages/ with the parameter table generated from its config,
and the links between README.md, RESULTS.md and the docs lead somewhere."""

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from salmon_lib.runner import stage_docs
from salmon_lib.runner.stage_docs import END, page_drift, page_path, parameters_markdown, write_page
from salmon_lib.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", ROOT / "RESULTS.md", ROOT / "benchmarks" / "README.md",
            *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_has_a_page_with_the_generated_parameter_table(stage):
    path = page_path(stage)
    assert path.is_file(), f"{stage.name}: no page at {path}"
    assert page_drift(stage) is None
    fields = [line.split("`")[1] for line in parameters_markdown(stage.config_class()).splitlines()
              if line.startswith("| `")]
    assert set(fields) == {f.name for f in dataclasses.fields(stage.config_class()) if f.init}


def test_a_hand_edited_table_is_found_and_rewritten(tmp_path, monkeypatch):
    stage = STAGES[0]
    monkeypatch.setattr(stage_docs, "DOCS_DIR", tmp_path)
    shutil.copy(ROOT / "docs" / "stages" / page_path(stage).name, tmp_path)
    page = tmp_path / page_path(stage).name
    original = page.read_text()
    page.write_text(original.replace("| `max_prompts` | `0` |", "| `max_prompts` | `100` |"))
    assert "differs from the one generated" in page_drift(stage)
    assert write_page(stage) and page.read_text() == original and page_drift(stage) is None
    page.write_text(original.replace(END, ""))
    assert "needs the markers" in page_drift(stage)


def test_the_table_escapes_pipes_in_intent_comments():
    text = parameters_markdown(STAGES[0].config_class())
    sources = next(line for line in text.splitlines() if line.startswith("| `sources`"))
    assert "sharegpt\\|openorca" in sources and sources.count(" | ") == 2


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: link to {target} leads nowhere"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{path.name}: no heading #{anchor} in {dest.name}"


def test_results_has_one_dated_section_per_measurement_group():
    headings = re.findall(r"^## (.+)$", (ROOT / "RESULTS.md").read_text(encoding="utf-8"), re.M)
    assert headings and all(re.match(r"\d{4}-\d{2}-\d{2} \S", h) for h in headings), headings


def test_the_readme_is_short_and_names_no_tracker_items():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for path in MARKDOWN:
        body = path.read_text(encoding="utf-8")
        assert not re.search(r"\bissue \d+|the issue's|(?:^|\s)#\d+\b", body, re.I | re.M), path


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_the_readme_pipeline_map_names_what_each_stage_reads_and_writes(stage):
    number = page_path(stage).stem.split("_")[0]
    row = next((line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
                if line.startswith(f"| [{number} {stage.name}]")), None)
    assert row, f"README.md's pipeline map has no row for stage {number} {stage.name}"
    _, _, reads, writes = row.split(" | ")
    for name in stage.outputs:
        assert f"`{name.rstrip('?')}`" in writes, f"{stage.name} writes {name}; the map's row does not say so"
    for name in stage.inputs:
        required = not name.endswith("?")
        assert not required or f"`{name}`" in reads, f"{stage.name} reads {name}; the map's row does not say so"
