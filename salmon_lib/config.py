"""Typed configuration: one dataclass per stage, built from YAML or notebook parameters.

Papermill only warns about parameters a notebook does not declare, and YAML happily carries a
typo'd key or a quoted number. Every config goes through `from_dict`, which refuses unknown keys
and values of the wrong type with a message naming the key and where it came from.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import math
import re
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, TypeVar, Union

import yaml

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type."""


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1 wants `1.0e-5`, users write `1e-5`)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints widen to float, lists to tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            try:
                return _coerce(value, arm, where)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected None, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: expected one of {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r} ({type(value).__name__})")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r} ({type(value).__name__})")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {
            _coerce(k, key_tp, f"{where} key"): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if tp is float:
        # bool is an int subclass; `True` for a learning rate is a mistake, not a number.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value}")
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def renamed_keys(cls: type) -> dict[str, str]:
    """{former parameter: what to write instead} of a config class and its bases."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get("renamed", {}))
    return out


def check_renamed(cls: type, keys: Any, where: str) -> None:
    """Refuse former parameters among `keys`, naming what replaced each."""
    moved = renamed_keys(cls)
    old = sorted(k for k in keys if k in moved)
    if old:
        raise ConfigError(f"{where}: " + "; ".join(
            f"{k} is no longer a parameter of {cls.__name__}: {moved[k]}" for k in old))


def signed_fields(cls: type) -> set[str]:
    """The numeric fields of a config class (and its bases) that may be negative: those listed in
    `signed`, and those whose default is negative (a penalty, or -1 for "unset")."""
    listed = {name for klass in cls.__mro__ for name in vars(klass).get("signed", ())}
    negative = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, (int, float))
                and not isinstance(f.default, bool) and f.default < 0}
    return listed | negative


def _check_signs(cls: type, values: Mapping[str, Any], where: str) -> None:
    """Counts, sizes, rates and probabilities are never negative: refuse a negative number in any
    field that may not be (`signed_fields`), so every stage, and every new one, gets the check."""
    allowed = signed_fields(cls)
    for name, value in values.items():
        if (isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0
                and name not in allowed):
            raise ConfigError(f"{where}.{name}: must be >= 0, got {value}")


def _at_field(err: ConfigError, fields: Mapping[str, Any], where: str) -> ConfigError:
    """A check's "name: problem" as "where.name: problem", so that the runner can point it at the
    preset line or `-p` argument that set `name`."""
    msg = str(err)
    name = next((n for n in sorted(fields, key=len, reverse=True) if msg.startswith(f"{n}: ")), None)
    return ConfigError(f"{where}.{msg}" if name else f"{where}: {msg}")


def _check_renamed_values(cls: type, data: Mapping[str, Any], where: str) -> None:
    """Refuse former values (`renamed` keys of the form "key=value"), naming what replaced each."""
    moved = renamed_keys(cls)
    for key, value in data.items():
        hint = moved.get(f"{key}={value}") if isinstance(value, str) else None
        if hint:
            raise ConfigError(f"{where}.{key}: {value!r} is no longer a value of {cls.__name__}.{key}: {hint}")


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        check_renamed(cls, unknown, where)
        raise ConfigError(
            f"{where}: unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(fields))}"
        )
    _check_renamed_values(cls, data, where)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{where}.{name}" if where else name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required parameter {name!r} for {cls.__name__}")
    _check_signs(cls, kwargs, where)
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as err:
            raise _at_field(err, fields, where) from None
    return obj


def _class_comments(cls: type) -> dict[str, str]:
    """{field: comment} for the fields declared in `cls`'s own body: the comment ending the field's
    last line, else the comment lines right above it."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = comments.get(node.end_lineno)
        if text is None:
            above, n = [], node.lineno - 1
            while n >= 1 and n in comments and lines[n - 1].lstrip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            text = " ".join(above) or None
        if text:
            out[node.target.id] = text
    return out


def field_comments(cls: type) -> dict[str, str]:
    """{field: intent comment} over `cls` and its dataclass bases (a redeclared field's wins)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and klass is not object:
            out.update(_class_comments(klass))
    return out


@dataclasses.dataclass
class Config:
    """Base for every config. Subclasses are plain dataclasses with a short intent comment on
    each field; override `check` for constraints between fields (raise ConfigError, and call
    `super().check()` so that the checks of option mixins run too).

    `renamed` maps a former parameter ("key") or value ("key=value") to what replaced it, so that
    an old preset, notebook or `-p` argument stops with that message rather than a bare refusal.
    Numbers are finite, and never negative unless the field is listed in `signed` or its default
    is negative.
    """

    renamed: ClassVar[dict[str, str]] = {}
    # numeric fields that may be negative besides those with a negative default (all others: >= 0)
    signed: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str = "") -> C:
        return _build(cls, data or {}, where or cls.__name__)

    @classmethod
    def from_yaml(cls: type[C], path: str | Path, section: str | None = None) -> C:
        from .io import read_text

        path = Path(path)
        try:
            data = yaml.safe_load(read_text(path, "config file", error=ConfigError)) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        where = str(path)
        if section is not None:
            if not isinstance(data, Mapping) or section not in data:
                raise ConfigError(f"{path}: no section {section!r}")
            data, where = data[section], f"{path}:{section}"
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of parameters")
        return cls.from_dict(data, where)

    @classmethod
    def from_namespace(cls: type[C], namespace: Mapping[str, Any], where: str = "notebook parameters") -> C:
        """Build from a notebook's globals: the parameters cell plus what papermill injected.

        Any public, non-module, non-callable global that is not a field is reported as unknown,
        which is how a misspelt `-p` parameter is caught instead of silently ignored.
        """
        ignore = {"In", "Out", "get_ipython", "exit", "quit", "open"}
        data = {
            k: v
            for k, v in namespace.items()
            if not k.startswith("_")
            and k not in ignore
            and not isinstance(v, types.ModuleType)
            and not callable(v)
        }
        return cls.from_dict(data, where)

    def check(self) -> None:
        """Cross-field constraints; raise ConfigError. Default: none."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StageConfig(Config):
    """Base for a pipeline stage's config: every stage reads and writes one run directory.

    `file_params` names the parameters that hold file paths: `check` resolves each non-empty one
    (`salmon_lib.paths.resolve_file`), and stage code reads them through `file(name)`, so a
    relative path works from the project root and from notebooks/ alike. `file_checks` maps some of
    them to the "module:function" that reads such a file, so a malformed one (a principle file
    with a typo, a file that is not UTF-8) stops the runner before any kernel starts.
    `model_params` name model specs, checked without loading anything (`models.model_spec_problem`).
    """

    file_params: ClassVar[tuple[str, ...]] = ()
    file_checks: ClassVar[dict[str, str]] = {}
    model_params: ClassVar[tuple[str, ...]] = ("model",)

    run_dir: str = "outputs/scratch"  # the run directory this stage reads its inputs from and writes to
    seed: int = 0  # every random choice of the stage derives from this

    def __post_init__(self) -> None:
        from .paths import resolve_run_dir

        self.run_dir = resolve_run_dir(self.run_dir)

    def check(self) -> None:
        super().check()
        for name in self.file_params:
            value = getattr(self, name)
            for item in value if isinstance(value, list) else [value]:
                if item:
                    path = self.file(name, item)
                    if name in self.file_checks:
                        _check_file(name, path, self.file_checks[name])
        for name in self.model_params:
            spec = getattr(self, name, None)
            if isinstance(spec, str):
                from .models import model_spec_problem

                problem = model_spec_problem(spec)
                if problem:
                    raise ConfigError(f"{name}: {problem}")

    def file(self, name: str, value: str | None = None) -> Path:
        """The absolute path of file parameter `name` (or of `value`, one item of a list parameter)."""
        from .paths import resolve_file

        return resolve_file(name, getattr(self, name) if value is None else value)


def _check_file(name: str, path: Path, reader: str) -> None:
    """Read `path` with `reader` ("module:function"); its complaint becomes a ConfigError on `name`."""
    import importlib

    from .io import DataError

    module, _, attr = reader.partition(":")
    try:
        getattr(importlib.import_module(module), attr)(path)
    except (ConfigError, DataError) as err:
        raise ConfigError(f"{name}: {err}") from None
