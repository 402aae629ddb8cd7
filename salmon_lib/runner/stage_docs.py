"""The parameter table of a stage's page, `docs/stages/NN_<stage>.md`, generated from its config
class like the notebook's parameters cell (`notebooks`), so the page cannot drift from the code:

    python -m salmon_lib notebooks --write     # also rewrites the table between the two markers
    python -m salmon_lib notebooks --check     # also says which page's table differs

The rest of the page (what the stage does, its outputs, how it differs from the papers) is prose.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..io import atomic_write_text
from ..paths import PROJECT_ROOT
from ..stages import Stage
from .notebooks import cell_fields, default_value, field_comments, literal

BEGIN = "<!-- parameters: generated from the config class by `python -m salmon_lib notebooks --write` -->"
END = "<!-- end of generated parameters -->"
DOCS_DIR = PROJECT_ROOT / "docs" / "stages"


def page_path(stage: Stage) -> Path:
    """docs/stages/<notebook stem>.md, e.g. docs/stages/05_rl.md."""
    return DOCS_DIR / f"{stage.notebook_path().stem}.md"


def _group(cls: type, name: str) -> type:
    """The class whose option group a field belongs to: the first base declaring it, else `cls`
    (a field the stage redeclares for another default stays in its group, as in the cell)."""
    for klass in cls.__mro__[1:]:
        if dataclasses.is_dataclass(klass) and name in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def parameters_markdown(cls: type) -> str:
    """One table per option group, in the order of the notebook's parameters cell."""
    comments = field_comments(cls)
    groups: dict[type, list[str]] = {}
    for f in cell_fields(cls):
        row = f"| `{f.name}` | `{_cell(literal(default_value(f)))}` | {_cell(comments.get(f.name, ''))} |"
        groups.setdefault(_group(cls, f.name), []).append(row)
    parts = []
    for klass, rows in groups.items():
        if klass is cls:
            title = f"`{cls.__name__}` (`{cls.__module__}`)"
        else:
            title = f"from `{klass.__module__}.{klass.__name__}`"
        parts.append("\n".join([f"**{title}**", "", "| parameter | default | what it sets |", "|---|---|---|",
                                *rows]))
    return "\n\n".join(parts)


def _split(text: str, path: Path) -> tuple[str, str, str]:
    head, sep, rest = text.partition(BEGIN)
    body, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise ValueError(f"{path}: needs the markers {BEGIN!r} and {END!r} around its parameter table")
    return head, body, tail


def page_drift(stage: Stage) -> str | None:
    """Why the page's table is not the generated one (None when it is, or when the page does not exist)."""
    path = page_path(stage)
    if not path.is_file():
        return None
    try:
        _, body, _ = _split(path.read_text(encoding="utf-8"), path)
    except ValueError as err:
        return str(err)
    if body.strip() != parameters_markdown(stage.config_class()):
        return (f"{path}: the parameter table differs from the one generated from "
                f"{stage.config_class().__name__} (python -m salmon_lib notebooks --write)")
    return None


def write_page(stage: Stage) -> bool:
    """Rewrite the page's table from the config; returns whether anything changed (False without a page)."""
    path = page_path(stage)
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    head, _, tail = _split(text, path)
    new = f"{head}{BEGIN}\n{parameters_markdown(stage.config_class())}\n{END}{tail}"
    if new == text:
        return False
    atomic_write_text(path, new)
    return True
