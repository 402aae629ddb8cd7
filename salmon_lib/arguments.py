"""Command-line flags built from a config dataclass, so that a tool speaks the vocabulary of the
stage configs: the same names (`max_new_tokens` is `--max-new-tokens`), types, defaults, checks
and, as help, the same intent comments.

    add_arguments(parser, SteerOptions)
    opts = options_from_args(SteerOptions, args, "steer")   # typed and checked like a preset

A field without a default is a required flag (declare the class `kw_only=True` so it may follow
fields with defaults); a Literal gives the choices; a bool with default False is a switch; a list
is a repeatable flag. Parsing only collects strings: `options_from_args` builds the instance through
`Config.from_dict`, so a bad value fails with the field's name, as it would in a preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, Union

from .config import C, field_comments


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar(tp: Any) -> tuple[Any, dict[str, Any]]:
    """(argparse type, extra keywords) of a field annotation; None's arm of an Optional is dropped."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(arms) != 1:
            raise TypeError(f"{tp}: a flag takes one type")
        return _scalar(arms[0])
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        return type(choices[0]), {"choices": list(choices)}
    if tp in (int, float, str):
        return tp, {}
    raise TypeError(f"{tp}: no flag for this type")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of the dataclass `cls`, its help the field's intent comment."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        tp, help_text = hints[f.name], comments.get(f.name)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text and help_text.replace("%", "%%")}
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if tp is bool:
            if kwargs.get("default") is not False:
                raise TypeError(f"{cls.__name__}.{f.name}: a switch must default to False")
            parser.add_argument(flag(f.name), action="store_true", **kwargs)
            continue
        if typing.get_origin(tp) is list:
            item, extra = _scalar(typing.get_args(tp)[0])
            kwargs.update(extra, type=item, action="append")
            kwargs["default"] = None  # argparse appends to a default list instead of replacing it
        else:
            item, extra = _scalar(tp)
            kwargs.update(extra, type=item)
        parser.add_argument(flag(f.name), **kwargs)


def options_from_args(cls: type[C], args: argparse.Namespace, where: str) -> C:
    """The dataclass `cls` from parsed flags, typed and checked as `Config.from_dict` does."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    lists = {f.name for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING}
    return cls.from_dict({k: v for k, v in values.items() if not (k in lists and v is None)}, where)
