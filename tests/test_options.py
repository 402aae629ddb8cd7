"""One option vocabulary: the shared groups of salmon_lib.options are the only place their fields
are declared and checked; a stage config composes the groups and redeclares a field only to give it
another default."""

import dataclasses
import re

import pytest

from salmon_lib import options
from salmon_lib.config import ConfigError
from salmon_lib.evaluate.config import EvaluateConfig
from salmon_lib.rl.config import RLConfig
from salmon_lib.stages import STAGES

GROUPS = [c for c in vars(options).values()
          if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == options.__name__]

# salmon_lib/reward is being reworked in issue 28 by another hand; this list only shrinks: an entry
# that is fixed fails the test until it is deleted here.
KNOWN = {("RewardConfig", "epochs"), ("RewardConfig", "max_steps"), ("RewardConfig", "batch_size"),
         ("RewardConfig", "generation_processes")}


def group_defaults() -> dict[str, list[tuple[type, object]]]:
    """{field: [(a group that declares it, its default there)]}."""
    out: dict[str, list[tuple[type, object]]] = {}
    for group in GROUPS:
        for name in vars(group).get("__annotations__", {}):
            f = next(f for f in dataclasses.fields(group) if f.name == name)
            out.setdefault(name, []).append((group, f.default))
    return out


def vocabulary_problems(cls: type) -> set[tuple[str, str]]:
    shared = group_defaults()
    found = set()
    for klass in cls.__mro__:
        if klass in GROUPS or not dataclasses.is_dataclass(klass):
            continue
        for name in vars(klass).get("__annotations__", {}):
            if name not in shared:
                continue
            inherited = [default for group, default in shared[name] if issubclass(cls, group)]
            own = next(f for f in dataclasses.fields(cls) if f.name == name)
            if not inherited or own.default == inherited[0]:
                found.add((klass.__name__, name))
    return found


def test_the_groups_declare_each_field_once():
    # but batch_size: prompts per call in generation, examples per step in training (presets use both)
    names = [n for g in GROUPS for n in vars(g).get("__annotations__", {}) if n != "batch_size"]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_stage_config_takes_shared_fields_from_their_group(stage):
    assert vocabulary_problems(stage.config_class()) - KNOWN == set()


def test_the_known_exceptions_still_exist():
    found = set().union(*(vocabulary_problems(s.config_class()) for s in STAGES))
    assert KNOWN <= found, f"fixed, delete from KNOWN: {sorted(KNOWN - found)}"


def test_a_field_redeclared_with_the_groups_default_is_found():
    @dataclasses.dataclass
    class Copy(options.SamplingOptions):
        temperature: float = 0.7  # same default as the group

    @dataclasses.dataclass
    class Loose(options.SamplingOptions):
        batch_size: int = 3  # a GenerationOptions field without the group

    assert vocabulary_problems(Copy) == {("Copy", "temperature")}
    assert vocabulary_problems(Loose) == {("Loose", "batch_size")}


@pytest.mark.parametrize("cls, data, message", [
    (RLConfig, {"top_p": 1.5}, "top_p: must be in (0, 1]"),
    (RLConfig, {"lr_scheduler": "cosine_with_min_lr"}, "lr_scheduler: expected one of"),
    (RLConfig, {"warmup_ratio": 1.0}, "warmup_ratio: must be in [0, 1)"),
    (RLConfig, {"learning_rate": 0.0}, "learning_rate: must be > 0"),
    (EvaluateConfig, {"max_new_tokens": 0}, "max_new_tokens: must be at least 1"),
    (EvaluateConfig, {"generation_processes": 0}, "generation_processes: must be at least 1"),
])
def test_the_groups_checks_run_for_every_stage(cls, data, message):
    with pytest.raises(ConfigError, match=re.escape(f"{cls.__name__}.{message}")):
        cls.from_dict(data)


def test_redeclared_defaults_and_stricter_checks_stay_the_stages():
    rl, ev = RLConfig(), EvaluateConfig()
    assert (rl.learning_rate, rl.max_steps, rl.top_p) == (2e-5, 20, 1.0)
    assert (ev.top_p, ev.temperature, ev.backend) == (1.0, 0.7, "auto")
    with pytest.raises(ConfigError, match="temperature: RL samples"):
        RLConfig.from_dict({"temperature": 0.0})
