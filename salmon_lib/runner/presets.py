"""Presets (`configs/*.yaml`) and `-p stage.key=value` overrides, validated into stage configs.

A preset has two sections: `common` (keys handed to every stage whose config declares them:
model, seed, chat_format, ...) and `stages` (one mapping of parameters per stage). Precedence is
common < the stage's own section < `-p` overrides (`-p common.key=v` overrides a common key).
Every stage is validated before any kernel starts, and an error names the preset file and line,
or the `-p` argument, it came from. The runner's own keys (`deadlines.DEADLINE_KEYS`: how long it
waits on a stage's kernel) go in the same places but reach no notebook (`resolve_deadlines`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..config import ConfigError, StageConfig, YamlLoader, check_renamed
from ..io import read_text
from ..stages import PROJECT_ROOT, Stage
from .deadlines import DEADLINE_KEYS, Deadlines

PRESET_DIR = PROJECT_ROOT / "configs"
SECTIONS = ("common", "stages")
RUNNER_KEYS = ("run_dir",)  # set by the runner from --run, never by a preset


@dataclasses.dataclass
class Preset:
    path: Path
    common: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    lines: dict[str, int]  # "common", "common.key", "stages.name", "stages.name.key" -> 1-based line

    def at(self, key: str) -> str:
        """`file:line` of a dotted key (or of the nearest enclosing section)."""
        while key and key not in self.lines:
            key = key.rpartition(".")[0]
        return f"{self.path}:{self.lines.get(key, 1)}"


def find_preset(name_or_path: str | Path) -> Path:
    """A preset name (`tiny`) means configs/tiny.yaml in the project; anything else is a path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, expected a preset file")
        if not path.is_file():
            raise ConfigError(f"{path}: preset file not found")
        return path
    path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))) or "none"
        raise ConfigError(f"no preset named {str(name_or_path)!r} (known: {known}; or give a .yaml path)")
    try:  # messages read better as configs/tiny.yaml:12 than as an absolute path
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _key_lines(node: yaml.Node, prefix: str, lines: dict[str, int], depth: int) -> None:
    if not isinstance(node, yaml.MappingNode) or depth == 0:
        return
    for key_node, value_node in node.value:
        key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
        lines[key] = key_node.start_mark.line + 1
        _key_lines(value_node, key, lines, depth - 1)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def load_preset(name_or_path: str | Path) -> Preset:
    path = find_preset(name_or_path)
    text = read_text(path, "preset file", error=ConfigError)
    try:
        data = yaml.load(text, Loader=YamlLoader)
        root = yaml.compose(text, Loader=YamlLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    lines: dict[str, int] = {}
    if root is not None:
        _key_lines(root, "", lines, depth=3)
    preset = Preset(path, {}, {}, lines)
    data = _mapping(data, str(path))
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{preset.at(key)}: unknown section {key!r} (expected: {', '.join(SECTIONS)})")
    preset.common = _mapping(data.get("common"), preset.at("common"))
    for name, params in _mapping(data.get("stages"), preset.at("stages")).items():
        preset.stages[str(name)] = _mapping(params, preset.at(f"stages.{name}"))
    return preset


def parse_overrides(items: list[str]) -> dict[str, dict[str, tuple[Any, str]]]:
    """`["rl.lr=1e-5", "common.seed=3"]` -> {"rl": {"lr": (1e-05, "-p rl.lr=1e-5")}, ...}.

    Values are YAML literals (`3` is an int, `[a, b]` a list, `"3"` a string); each keeps the
    argument it came from for error messages.
    """
    out: dict[str, dict[str, tuple[Any, str]]] = {}
    for item in items:
        target, eq, text = item.partition("=")
        stage, dot, key = target.strip().partition(".")
        if not eq or not dot or not stage or not key:
            raise ConfigError(f"-p {item}: expected STAGE.KEY=VALUE (or common.KEY=VALUE)")
        try:
            value = yaml.load(text, Loader=YamlLoader) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"-p {item}: value is not a YAML literal ({err})") from None
        out.setdefault(stage, {})[key] = (value, f"-p {item}")
    return out


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _validate(cls: type, data: dict[str, Any], where: str, key_where: dict[str, str]) -> StageConfig:
    """`cls.from_dict`; an error about key k is re-pointed at `key_where[k]` (its file:line or -p)."""
    try:
        return cls.from_dict(data, where)
    except ConfigError as err:
        msg = str(err)
        for key, prefix in key_where.items():
            if msg.startswith(f"{where}.{key}:") or msg.startswith(f"{where}.{key}["):
                raise ConfigError(prefix + msg[len(where) + 1 + len(key):]) from None
        raise


def resolve(
    preset: Preset, stages: list[Stage], overrides: Mapping[str, Mapping[str, tuple[Any, str]]] | None = None,
    run_dir: str = "outputs/scratch",
) -> tuple[dict[str, StageConfig], list[str]]:
    """Validate every registered stage's parameters; return ({stage: config}, warnings)."""
    overrides = dict(overrides or {})
    known = {s.name: s for s in stages}
    names = ", ".join(known) or "none registered"
    for name in preset.stages:
        if name not in known:
            raise ConfigError(f"{preset.at(f'stages.{name}')}: unknown stage {name!r} (stages: {names})")
    for name, items in overrides.items():
        if name != "common" and name not in known:
            raise ConfigError(f"{next(iter(items.values()))[1]}: unknown stage {name!r} (stages: {names}, common)")
    for key in RUNNER_KEYS:
        for section, params in [("common", preset.common), *((f"stages.{n}", p) for n, p in preset.stages.items())]:
            if key in params:
                raise ConfigError(f"{preset.at(f'{section}.{key}')}: {key} is set by the runner (use --run)")
        for items in overrides.values():
            if key in items:
                raise ConfigError(f"{items[key][1]}: {key} is set by the runner (use --run)")

    classes = {s.name: s.config_class() for s in stages}
    declared = (set().union(*map(_fields, classes.values())) if classes else set()) | set(DEADLINE_KEYS)
    warnings = [
        f"{preset.at(f'common.{key}')}: common key {key!r} is not a parameter of any registered stage"
        for key in preset.common if key not in declared
    ]
    common_over = overrides.get("common", {})
    for key, (_, arg) in common_over.items():
        if key not in declared:
            raise ConfigError(f"{arg}: no registered stage has a parameter {key!r}")

    configs: dict[str, StageConfig] = {}
    for stage in stages:
        cls, fields = classes[stage.name], _fields(classes[stage.name])
        section = preset.stages.get(stage.name, {})
        for key in section:
            if key not in fields and key not in DEADLINE_KEYS:
                check_renamed(cls, [key], f"{preset.at(f'stages.{stage.name}.{key}')}: stages.{stage.name}")
                raise ConfigError(f"{preset.at(f'stages.{stage.name}.{key}')}: stages.{stage.name}.{key}: unknown "
                                  f"parameter for {cls.__name__}; known: {', '.join(sorted(fields))}")
        data = {k: v for k, v in preset.common.items() if k in fields}
        data.update({k: v for k, v in section.items() if k not in DEADLINE_KEYS})
        data["run_dir"] = run_dir
        key_where = {k: f"{preset.at(f'common.{k}')}: common.{k}" for k in preset.common}
        key_where.update({k: f"{preset.at(f'stages.{stage.name}.{k}')}: stages.{stage.name}.{k}" for k in section})
        _validate(cls, data, f"{preset.at(f'stages.{stage.name}')} stages.{stage.name}", key_where)
        mine = overrides.get(stage.name, {})
        extra = {k: v for k, v in common_over.items() if k in fields}
        extra.update({k: v for k, v in mine.items() if k not in DEADLINE_KEYS})
        for key, (_, arg) in mine.items():
            if key not in fields and key not in DEADLINE_KEYS:
                check_renamed(cls, [key], arg)
                raise ConfigError(
                    f"{arg}: unknown parameter {key!r} for {cls.__name__}; known: {', '.join(sorted(fields))}"
                )
        data.update({k: v for k, (v, _) in extra.items()})
        configs[stage.name] = _validate(
            cls, data, f"-p overrides of stage {stage.name}", {k: arg for k, (_, arg) in extra.items()}
        )
    return configs, warnings


def resolve_deadlines(
    preset: Preset, stages: list[Stage], overrides: Mapping[str, Mapping[str, tuple[Any, str]]] | None = None,
) -> dict[str, Deadlines]:
    """{stage: Deadlines}, with the precedence of stage parameters on top of the stage's own
    `cell_timeout_s`; call after `resolve`, which refuses unknown stages and keys."""
    overrides = dict(overrides or {})
    out = {}
    for stage in stages:
        data: dict[str, Any] = {"cell_timeout_s": stage.cell_timeout_s}
        key_where: dict[str, str] = {}
        for section, params in (("common", preset.common), (f"stages.{stage.name}", preset.stages.get(stage.name, {}))):
            for key in DEADLINE_KEYS:
                if key in params:
                    data[key] = params[key]
                    key_where[key] = f"{preset.at(f'{section}.{key}')}: {section}.{key}"
        for name in ("common", stage.name):
            for key, (value, arg) in overrides.get(name, {}).items():
                if key in DEADLINE_KEYS:
                    data[key], key_where[key] = value, arg
        out[stage.name] = _validate(Deadlines, data, f"deadlines of stage {stage.name}", key_where)
    return out
