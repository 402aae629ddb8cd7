"""Every registered stage has the one shape the runner and the tests rely on."""

import dataclasses
import importlib
import inspect

import pytest

from salmon_lib.stages import STAGES


def artifact_names(stage) -> set[str]:
    return {name.rstrip("?").rstrip("/") for name in stage.inputs + stage.outputs}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_no_parameter_renames_an_artifact(stage):
    """The manifest hashes the declared artifacts by their names: a parameter pointing the stage at
    another file or folder of the run would make it read what the manifest never hashed."""
    names = artifact_names(stage)
    for f in dataclasses.fields(stage.config_class()):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        values = default if isinstance(default, list) else [default]
        renaming = [v for v in values if isinstance(v, str) and v.rstrip("/") in names]
        assert not renaming, f"{stage.name}.{f.name} = {default!r} names a declared artifact"


@pytest.mark.parametrize("stage, key, replacement", [
    ("preferences", "sft_adapter", "use_sft"),
    ("reward_model", "preferences", "<run_dir>/preferences.jsonl"),
])
def test_a_former_parameter_names_what_replaced_it(stage, key, replacement, tmp_path):
    from salmon_lib.config import ConfigError
    from salmon_lib.runner.presets import load_preset, parse_overrides, resolve

    cls = next(s for s in STAGES if s.name == stage).config_class()
    with pytest.raises(ConfigError, match=f"{key} is no longer a parameter of {cls.__name__}: .*{replacement}"):
        cls.from_dict({key: "x"})
    with pytest.raises(ConfigError, match=f"-p {stage}.{key}=x: {key} is no longer a parameter .*{replacement}"):
        resolve(load_preset("tiny"), STAGES, parse_overrides([f"{stage}.{key}=x"]))
    preset = tmp_path / "p.yaml"
    preset.write_text(f"stages:\n  {stage}:\n    {key}: x\n")
    with pytest.raises(ConfigError, match=f"p.yaml:3: stages.{stage}: {key} is no longer a parameter"):
        resolve(load_preset(preset), STAGES)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_package_has_its_config_and_run(stage):
    """`<package>.config:<Config>` is what stages.py names, `<package>.stage.run(cfg)` runs the stage."""
    module, _, _ = stage.config.partition(":")
    package, _, leaf = module.rpartition(".")
    assert leaf == "config", f"{stage.name}: the config class lives in {module}, not {package}.config"
    run = importlib.import_module(f"{package}.stage").run
    params = list(inspect.signature(run).parameters.values())
    assert params[0].name == "cfg" and all(p.default is not p.empty for p in params[1:])
    assert inspect.signature(run).return_annotation == "dict"


def test_shared_option_groups_have_one_definition():
    from salmon_lib.options import (
        EngineOptions,
        GenerationOptions,
        LoraOptions,
        OptimisationOptions,
        SamplingOptions,
        TrainingOptions,
    )

    configs = {s.name: s.config_class() for s in STAGES}
    assert {n for n, c in configs.items() if issubclass(c, TrainingOptions)} == {"engrave", "reward_model"}
    assert {n for n, c in configs.items() if issubclass(c, OptimisationOptions)} == {"engrave", "reward_model", "rl"}
    assert {n for n, c in configs.items() if issubclass(c, LoraOptions)} == {"engrave", "reward_model"}
    generating = {"prompts", "self_align", "preferences", "evaluate"}
    assert {n for n, c in configs.items() if issubclass(c, GenerationOptions)} == generating
    assert {n for n, c in configs.items() if issubclass(c, SamplingOptions)} == generating | {"rl"}
    assert {n for n, c in configs.items() if issubclass(c, EngineOptions)} == generating | {"engrave"}
    for cls in configs.values():  # every stage that trains spells these the same way
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {"warmup", "qlora", "max_train_steps"}


@pytest.mark.parametrize("stage, param, message", [
    ("reward_model", "warmup=0.1", "warmup is no longer a parameter of RewardConfig: renamed to warmup_ratio"),
    ("engrave", "warmup=0.1", "warmup is no longer a parameter of EngraveConfig: renamed to warmup_ratio"),
    ("engrave", "method=qlora", "'qlora' is no longer a value of EngraveConfig.method: write method: lora with "
                                "quantization: 4bit"),
    ("engrave", "max_steps=0", r"-p engrave.max_steps=0: must be -1 \(use epochs\) or a positive number, got 0"),
    ("reward_model", "max_steps=0", r"max_steps=0: must be -1 \(use epochs\) or a positive number, got 0"),
    ("engrave", "method=full", None),
])
def test_renamed_training_options_name_their_replacement(stage, param, message):
    from salmon_lib.config import ConfigError
    from salmon_lib.runner.presets import load_preset, parse_overrides, resolve

    overrides = parse_overrides(
        [f"{stage}.{param}"] + ([f"{stage}.quantization=4bit"] if param == "method=full" else [])
    )
    with pytest.raises(ConfigError, match=message or "quantization=4bit: 4bit trains a LoRA adapter"):
        resolve(load_preset("tiny"), STAGES, overrides)
