"""Presets and -p overrides: validation before any kernel starts, precedence, shipped presets."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from salmon_lib.config import ConfigError, StageConfig, field_comments
from salmon_lib.launch import Distributed
from salmon_lib.runner.notebooks import notebook_problems, parameters_source, write_parameters
from salmon_lib.runner.plan import select
from salmon_lib.runner.presets import PRESET_DIR, load_preset, parse_overrides, resolve
from salmon_lib.stages import PROJECT_ROOT, STAGES, Stage
from tests.notebooks.runner_stages import STAGES as TEST_STAGES

PRESET = """\
common:
  model: small
  seed: 3
stages:
  make:
    n: 7
  double:
    factor: 5
    model: big
"""


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_precedence_common_then_section_then_overrides(tmp_path):
    preset = load_preset(write(tmp_path, PRESET))
    cfgs, warnings = resolve(preset, TEST_STAGES, parse_overrides(["double.factor=9", "common.seed=4"]), "runs/x")
    assert warnings == []
    assert (cfgs["make"].n, cfgs["make"].model, cfgs["make"].seed, cfgs["make"].run_dir) == (
        7,
        "small",
        4,
        str(PROJECT_ROOT / "runs/x"),
    )
    assert (cfgs["double"].factor, cfgs["double"].model, cfgs["double"].seed) == (9, "big", 4)


def test_override_values_are_yaml_literals():
    o = parse_overrides(["a.lr=1e-5", 'a.s="3"', "a.n=3", "a.l=[x, 2]", "a.b=false", "a.z=null"])["a"]
    assert {k: v for k, (v, _) in o.items()} == {"lr": 1e-5, "s": "3", "n": 3, "l": ["x", 2], "b": False, "z": None}
    with pytest.raises(ConfigError, match="-p oops: expected STAGE.KEY=VALUE"):
        parse_overrides(["oops"])


@pytest.mark.parametrize(
    "text, match",
    [
        (PRESET.replace("n: 7", "n: seven"), r"p.yaml:6: stages.make.n: expected int, got 'seven'"),
        (
            PRESET.replace("n: 7", "nn: 7"),
            r"p.yaml:6: stages.make.nn: unknown parameter for MakeConfig; "
            r"known: delay, fail, model, n, pause, run_dir, seed",
        ),
        (PRESET + "  shuffle: {}\n", r"p.yaml:10: unknown stage 'shuffle' \(stages: make, double\)"),
        (PRESET.replace("seed: 3", "seed: 3.5"), r"p.yaml:3: common.seed: expected int, got 3.5"),
        (PRESET.replace("seed: 3", "run_dir: elsewhere"), r"p.yaml:3: run_dir is set by the runner"),
        (PRESET + "extra: 1\n", r"p.yaml:10: unknown section 'extra'"),
        ("common: [1, 2]\n", r"p.yaml:1: expected a mapping"),
        ("common:\n  seed: [\n", r"p.yaml:3: not valid YAML"),
    ],
)
def test_preset_errors_name_file_line_and_field(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        resolve(load_preset(write(tmp_path, text)), TEST_STAGES)


@pytest.mark.parametrize("override, match", [
    ("make.nn=1", r"-p make.nn=1: unknown parameter 'nn' for MakeConfig; known: delay, fail, model, n, pause"),
    ("make.n=1.5", r"-p make.n=1.5: expected int, got 1.5"),
    ("shuffle.n=1", r"-p shuffle.n=1: unknown stage 'shuffle'"),
    ("common.sede=1", r"-p common.sede=1: no registered stage has a parameter 'sede'"),
    ("make.run_dir=x", r"-p make.run_dir=x: run_dir is set by the runner"),
])
def test_override_errors_name_the_argument(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        resolve(load_preset(write(tmp_path, PRESET)), TEST_STAGES, parse_overrides([override]))


def test_unused_common_key_is_a_warning(tmp_path):
    _, warnings = resolve(
        load_preset(write(tmp_path, PRESET.replace("seed: 3", "seed: 3\n  temprature: 1"))), TEST_STAGES
    )
    assert warnings == [f"{tmp_path / 'p.yaml'}:4: common key 'temprature' is not a parameter of any registered stage"]


def test_select_from_to_only():
    names = lambda sel: [s.name for s in sel]  # noqa: E731
    assert names(select(TEST_STAGES, start="double")) == ["double"]
    assert names(select(TEST_STAGES, stop="make")) == ["make"]
    assert names(select(TEST_STAGES, only=["double"])) == ["double"]
    with pytest.raises(ConfigError, match="unknown stage 'dbl'"):
        select(TEST_STAGES, only=["dbl"])
    with pytest.raises(ConfigError, match="comes after"):
        select(TEST_STAGES, start="double", stop="make")


SHIPPED = sorted(PRESET_DIR.glob("*.yaml"))


def test_the_four_presets_ship():
    assert {p.stem for p in SHIPPED} >= {"tiny", "demo", "7b-1gpu", "70b-multi-gpu"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_preset_validates_against_the_registry(path, tmp_path):
    preset = load_preset(path)
    configs, _ = resolve(preset, STAGES)
    assert set(configs) == {s.name for s in STAGES}
    for name in preset.stages:  # every section names a registered stage and its params validated
        assert name in configs
    # the check is not vacuous while the registry is small: a section naming no stage fails it
    data = yaml.safe_load(path.read_text())
    data["stages"] = {**(data.get("stages") or {}), "no_such_stage": {}}
    with pytest.raises(ConfigError, match="unknown stage 'no_such_stage'"):
        resolve(load_preset(write(tmp_path, yaml.safe_dump(data))), STAGES)
    assert preset.common.get("seed") == 0 and "model" in preset.common and "chat_format" in preset.common
    assert preset.common.get("distributed") in Distributed.__args__


@pytest.mark.parametrize("stage", STAGES + TEST_STAGES, ids=lambda s: s.name)
def test_notebook_parameters_match_the_config(stage):
    assert notebook_problems(stage) == []


def test_notebook_check_catches_drift(tmp_path):
    nb = json.loads((PROJECT_ROOT / "tests/notebooks/00_make.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = "".join(cell["source"]).replace("n = 5  # how many records to write", "count = 5\nn = 'five'  # x")
    path = tmp_path / "00_make.ipynb"
    path.write_text(json.dumps(nb))
    problems = notebook_problems(Stage("make", str(path), config=TEST_STAGES[0].config))
    assert f"{path}: parameter 'count' is not a field of MakeConfig" in problems
    assert f"{path}: parameter 'count' has no intent comment" in problems


@pytest.mark.parametrize("old, new", [
    ("n = 5  # how many records to write", "n = 5  # how many records"),  # a comment
    ("n = 5  # how many records to write", "n = 6  # how many records to write"),  # a value
    ("n = 5  # how many records to write", "count = 5  # how many records to write"),  # a name
], ids=["comment", "value", "name"])
def test_generated_parameters_cell_catches_any_difference_and_write_restores_it(tmp_path, old, new):
    path = tmp_path / "00_make.ipynb"
    path.write_text((PROJECT_ROOT / "tests/notebooks/00_make.ipynb").read_text().replace(old, new))
    stage = Stage("make", str(path), config=TEST_STAGES[0].config)
    problems = notebook_problems(stage)
    assert any("differs from the one generated from MakeConfig" in p and new in p for p in problems), problems
    assert write_parameters(stage)
    assert notebook_problems(stage) == [] and not write_parameters(stage)


def test_comments_come_from_beside_or_above_each_field_and_a_redeclared_field_wins():
    @dataclasses.dataclass
    class Base(StageConfig):
        a: int = 1  # base a
        # base b, said
        # over two lines
        b: str = "x"

    @dataclasses.dataclass
    class Child(Base):
        c: list[str] = dataclasses.field(default_factory=lambda: ["y"])  # own c
        a: int = 2  # child a

    assert field_comments(Child)["b"] == "base b, said over two lines"
    assert parameters_source(Child).splitlines()[2:] == [
        'c = ["y"]  # own c', "a = 2  # child a", 'b = "x"  # base b, said over two lines']


def test_notebooks_command_checks_every_stage_notebook():
    out = subprocess.run([sys.executable, "-m", "salmon_lib", "notebooks", "--check"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{len(STAGES)} of {len(STAGES)} notebooks match their configs"


def test_registry_config_classes_import_without_torch():
    code = ("import sys; from salmon_lib.stages import STAGES; [s.config_class() for s in STAGES]; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_registry_entry_is_named():
    with pytest.raises(ConfigError, match="stage 'x': cannot import config class 'salmon_lib.nothing:X'"):
        Stage("x", "nb.ipynb", config="salmon_lib.nothing:X").config_class()
    with pytest.raises(ConfigError, match="is not a StageConfig subclass"):
        Stage("x", "nb.ipynb", config="salmon_lib.models:ModelConfig").config_class()


def test_cli_reports_config_errors_before_any_kernel(tmp_path):
    preset = write(tmp_path, PRESET)
    out = subprocess.run(
        [sys.executable, "-m", "salmon_lib", "run", "--preset", str(preset), "--run", str(tmp_path / "run"),
         "--registry", "tests.notebooks.runner_stages:STAGES", "-p", "make.n=lots"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert "-p make.n=lots: expected int, got 'lots'" in out.stderr
    assert not (tmp_path / "run" / "manifest.json").exists()
    assert not Path(tmp_path / "run" / "notebooks").exists()
