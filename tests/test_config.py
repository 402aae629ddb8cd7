import dataclasses
import re
from typing import Literal

import pytest

from salmon_lib.config import Config, ConfigError
from salmon_lib.models import ModelConfig


@dataclasses.dataclass
class Inner(Config):
    k: int = 1


@dataclasses.dataclass
class Sample(Config):
    lr: float = 1e-4
    steps: int = 10
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    tags: list[str] = dataclasses.field(default_factory=list)
    limit: int | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)

    def check(self):
        if self.steps < 0:
            raise ConfigError("steps must be >= 0")


def test_valid_values_and_int_widens_to_float():
    cfg = Sample.from_dict({"lr": 1, "steps": 3, "tags": ["a"], "limit": None, "inner": {"k": 2}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.inner == Inner(k=2)
    assert Sample.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stpes": 3}, "unknown parameter(s) stpes"),
        ({"steps": "3"}, "Sample.steps: expected int, got '3'"),
        ({"steps": True}, "expected int"),
        ({"lr": "fast"}, "Sample.lr: expected float"),
        ({"mode": "c"}, "expected one of 'a' | 'b'"),
        ({"tags": "a"}, "expected a list"),
        ({"tags": [1]}, "Sample.tags[0]: expected str"),
        ({"inner": {"j": 1}}, "unknown parameter(s) j"),
        ({"steps": -1}, "Sample.steps: must be >= 0"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        Sample.from_dict(data)
    assert message in str(err.value)


def test_from_yaml_names_file_and_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  spec: tiny\n  quantization: 2bit\n")
    with pytest.raises(ConfigError, match=r"c.yaml:model.quantization: expected one of"):
        ModelConfig.from_yaml(path, section="model")
    with pytest.raises(ConfigError, match="not found"):
        ModelConfig.from_yaml(tmp_path / "missing.yaml")
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ModelConfig.from_yaml(path)


def test_from_namespace_catches_injected_typos():
    import os

    namespace = {"spec": "tiny", "seed": 2, "os": os, "In": [], "_hidden": 1, "print_fn": print}
    assert ModelConfig.from_namespace(namespace).seed == 2
    namespace["sede"] = 3
    with pytest.raises(ConfigError, match="unknown parameter.*sede"):
        ModelConfig.from_namespace(namespace)


def test_relative_run_dir_means_the_project_outputs_whatever_the_cwd(tmp_path, monkeypatch):
    from pathlib import Path

    from salmon_lib.config import StageConfig

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root / "notebooks")
    assert StageConfig.from_dict({"run_dir": "outputs/x"}).run_dir == str(root / "outputs" / "x")
    assert StageConfig.from_dict({"run_dir": str(tmp_path)}).run_dir == str(tmp_path)


def test_numbers_are_finite_and_only_signed_fields_go_negative():
    @dataclasses.dataclass
    class Knobs(Config):
        signed = ("offset",)

        count: int = 3  # how many
        rate: float = 0.1  # how fast
        offset: float = 0.0  # may go either way
        penalty: float = -6.0  # a negative default: negative values are meant

    assert Knobs.from_dict({"offset": -2.0, "penalty": -1.0, "count": 0}).offset == -2.0
    for data, message in (({"count": -1}, "Knobs.count: must be >= 0, got -1"),
                          ({"rate": float("nan")}, "Knobs.rate: expected a finite number, got nan"),
                          ({"penalty": float("-inf")}, "Knobs.penalty: expected a finite number, got -inf")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            Knobs.from_dict(data)
