"""A stage notebook's `parameters` cell, generated from its config class, and the checks on it.

The cell holds one line per field, `name = default  # intent comment`, in the dataclass's field
order, with the comment written beside (or just above) the field in the class source. Generating
it keeps notebook and config from drifting apart:

    python -m salmon_lib notebooks --check     # exit 1 and say what differs
    python -m salmon_lib notebooks --write     # rewrite every stage notebook's parameters cell
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

from ..config import ConfigError, field_comments
from ..stages import Stage

PARAMETERS_TAG = "parameters"


def default_value(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def literal(value: Any) -> str:
    """A Python literal for a default value, strings in double quotes as in the code."""
    if isinstance(value, str):
        text = repr(value)
        if text.startswith("'") and '"' not in value:
            text = '"' + text[1:-1].replace("\\'", "'") + '"'
        return text
    if isinstance(value, list):
        return "[" + ", ".join(map(literal, value)) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(literal, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def cell_fields(cls: type) -> list[dataclasses.Field]:
    """The fields in cell order: run_dir and seed, the ones the class adds, then each option
    mixin's group in the order the class lists its bases (a field the class redeclares for another
    default stays in its group)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    declared_by = [vars(k).get("__annotations__", {}) for k in cls.__mro__ if dataclasses.is_dataclass(k)]
    inherited = set().union(*map(set, declared_by[1:]))
    order = ["run_dir", "seed", *(n for n in declared_by[0] if n not in inherited)]
    for names in declared_by[1:]:
        order += [n for n in names if n not in order]
    return [fields[n] for n in order if n in fields]


def parameters_source(cls: type) -> str:
    """The parameters cell for config class `cls`."""
    comments = field_comments(cls)
    lines = []
    for f in cell_fields(cls):
        if f.name not in comments:
            raise ConfigError(f"{cls.__name__}.{f.name}: no intent comment in the class source")
        lines.append(f"{f.name} = {literal(default_value(f))}  # {comments[f.name]}")
    return "\n".join(lines)


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def parameters_cell(nb: dict) -> dict | None:
    return next((c for c in nb["cells"] if c["cell_type"] == "code"
                 and PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])), None)


def cell_drift(stage: Stage) -> list[str]:
    """How the notebook's parameters cell differs from the generated one (unified diff lines)."""
    path = stage.notebook_path()
    cell = parameters_cell(_read(path))
    have = "".join(cell["source"]).splitlines() if cell else []
    want = parameters_source(stage.config_class()).splitlines()
    return [line for line in difflib.unified_diff(have, want, "notebook", "generated", lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("---", "+++"))]


def write_parameters(stage: Stage) -> bool:
    """Rewrite the notebook's parameters cell from its config; returns whether anything changed."""
    path = stage.notebook_path()
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    cell = parameters_cell(nb)
    if cell is None:
        raise ConfigError(f"{path}: no cell tagged {PARAMETERS_TAG!r}")
    cell["source"] = parameters_source(stage.config_class()).splitlines(keepends=True)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def _declared(stage: Stage) -> tuple[Path, type, dict | None, list[str]]:
    """(path, config class, papermill's view of the parameters cell or None, the problems that
    would stop the stage's kernel anyway: no notebook, a parameter the config refuses)."""
    import papermill

    path = stage.notebook_path()
    cls = stage.config_class()
    if not path.is_file():
        return path, cls, None, [f"{path}: notebook not found"]
    declared = papermill.inspect_notebook(str(path)) or None
    if declared is None:
        return path, cls, None, []
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    return path, cls, declared, [f"{path}: parameter {n!r} is not a field of {cls.__name__}"
                                 for n in declared if n not in fields]


def fatal_problems(stage: Stage) -> list[str]:
    """The problems that would stop the stage's kernel anyway: checked before any kernel starts."""
    return _declared(stage)[3]


def notebook_problems(stage: Stage) -> list[str]:
    """How the notebook's `parameters` cell disagrees with the stage's config class.

    The cell must hold exactly the config's fields, each a literal with an intent comment, its
    values must validate (they are what an interactive user runs with), and it must be the cell
    generated from the config (`python -m salmon_lib notebooks --write`).
    """
    path, cls, declared, problems = _declared(stage)
    if declared is None:
        return problems or [f"{path}: no cell tagged {PARAMETERS_TAG!r}"]
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    problems += [f"{path}: {cls.__name__} field {n!r} is missing from the parameters cell"
                 for n in sorted(fields - set(declared))]
    values = {}
    for name, p in declared.items():
        if not p.get("help"):
            problems.append(f"{path}: parameter {name!r} has no intent comment")
        try:
            values[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            problems.append(f"{path}: parameter {name!r} = {p['default']} is not a literal")
    if not problems:
        try:
            cls.from_dict(values, f"{path} parameters cell")
        except ConfigError as err:
            problems.append(str(err))
    drift = cell_drift(stage)
    if drift:
        problems.append(f"{path}: the parameters cell differs from the one generated from {cls.__name__} "
                        f"(python -m salmon_lib notebooks --write): " + " | ".join(drift))
    return problems
