"""YAML reading for principle files: every error names the file, the line, the entry and the field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from salmon_lib.config import ConfigError
from salmon_lib.io import read_text


class PrincipleError(ConfigError):
    """A principle or self-align file is malformed, or a principle was asked for that does not exist."""


class Reader:
    """Reads one YAML file and builds errors that name the file, the line and the entry's field."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        text = read_text(self.path, error=PrincipleError)
        try:
            self.node = yaml.compose(text)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise PrincipleError(f"{self.path}{line}: not valid YAML: {err}") from None

    def line(self, keys: Sequence[str | int]) -> int | None:
        """1-based line of the node at `keys` (or of its closest existing parent)."""
        node, best = self.node, None
        for key in keys:
            if node is None:
                break
            best = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                node = None
        return node.start_mark.line + 1 if node is not None else best

    def error(self, keys: Sequence[str | int], message: str) -> PrincipleError:
        line = self.line(keys)
        return PrincipleError(f"{self.path}{f':{line}' if line else ''}: {message}")

    def mapping(self, value: Any, keys: Sequence[str | int], where: str, known: Sequence[str]) -> Mapping:
        if not isinstance(value, Mapping):
            raise self.error(keys, f"{where}: expected a mapping, got {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise self.error(
                [*keys, unknown[0]],
                f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}",
            )
        return value

    def entries(self, data: Mapping, key: str, where: str, required: bool = True) -> list:
        value = data.get(key)
        if value is None and not required:
            return []
        if not isinstance(value, list) or not value:
            raise self.error([key], f"{where}: field {key!r} must be a non-empty list")
        return value

    def unique(self, name: str, seen: dict[str, int], keys: Sequence[str | int], where: str) -> None:
        """Refuse a name already in `seen` (case-insensitively: "Concise" and "concise" would be
        indistinguishable to a reader), then record it with the entry's index."""
        section, index = keys[-2], keys[-1]
        if name.lower() in seen:
            first = f"{section}[{seen[name.lower()]}]"
            raise self.error([*keys, "name"], f"{where}: duplicate name {name!r} (also {first})")
        seen[name.lower()] = index

    def get(self, entry: Mapping, keys: Sequence[str | int], where: str, name: str, kind: str, default: Any = ...):
        """Field `name` of `entry`, checked against `kind`; `default` (when given) makes it optional."""
        fkeys = [*keys, name]
        if name not in entry or entry[name] is None:
            if default is not ...:
                return default
            raise self.error(keys, f"{where}: missing field {name!r}")
        value = entry[name]
        bad = None
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                bad = "a non-empty string"
        elif kind == "positive":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                bad = "a finite number > 0"
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                bad = "an integer"
        elif kind == "bool":
            if not isinstance(value, bool):
                bad = "true or false"
        elif kind == "names":
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                bad = "a list of non-empty strings"
        if bad:
            raise self.error(fkeys, f"{where}: field {name!r} must be {bad}, got {value!r}")
        return value.strip() if kind == "text" else float(value) if kind == "positive" else value


def entry_label(section: str, index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, Mapping) else None
    return f"{section}[{index}]" + (f" {name!r}" if isinstance(name, str) else "")


