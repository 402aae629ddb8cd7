"""One path resolver for every file parameter: absolute, else the working directory, else the project root."""

from pathlib import Path

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.paths import PROJECT_ROOT, candidates, find_file, resolve_file
from salmon_lib.stages import STAGES


def test_working_directory_first_then_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_file("principles", "principles/judge.yaml") == PROJECT_ROOT / "principles/judge.yaml"
    (tmp_path / "principles").mkdir()
    (tmp_path / "principles/judge.yaml").write_text("mine")
    assert resolve_file("principles", "principles/judge.yaml") == tmp_path / "principles/judge.yaml"
    assert resolve_file("principles", tmp_path / "principles/judge.yaml") == tmp_path / "principles/judge.yaml"


def test_missing_file_names_the_parameter_and_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        resolve_file("seed_file", "nope.yaml")
    assert str(err.value) == (f"seed_file: nope.yaml: file not found (tried {tmp_path / 'nope.yaml'}, "
                              f"{PROJECT_ROOT / 'nope.yaml'})")
    assert find_file("/no/such/file") is None and candidates("/no/such/file") == [Path("/no/such/file")]


def test_data_beside_the_project_is_found_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = f"{PROJECT_ROOT.name}/pyproject.toml"  # seen from the project's parent folder
    assert find_file(name) is None
    assert find_file(name, beside_project=True) == PROJECT_ROOT / "pyproject.toml"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_file_parameter_resolves_from_notebooks(stage, monkeypatch):
    """JupyterLab's kernel starts in notebooks/: every default file parameter must still be found."""
    monkeypatch.chdir(PROJECT_ROOT / "notebooks")
    cfg = stage.config_class().from_dict({})
    for name in cfg.file_params:
        value = getattr(cfg, name)
        for item in (value if isinstance(value, list) else [value]):
            if item:
                assert cfg.file(name, item).is_file()


def test_a_missing_file_parameter_stops_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cls = next(s for s in STAGES if s.name == "self_align").config_class()
    with pytest.raises(ConfigError, match=r"principles: principles/nope.yaml: file not found \(tried "):
        cls.from_dict({"principles": "principles/nope.yaml"})
