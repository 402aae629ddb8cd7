"""Command-line flags built from config dataclasses (salmon_lib.arguments), and the steer/chat
commands that use them."""

import argparse
import dataclasses
from typing import Literal

import pytest

from salmon_lib.arguments import add_arguments, options_from_args
from salmon_lib.cli import main
from salmon_lib.config import Config, ConfigError
from salmon_lib.evaluate.cli_options import ChatOptions, SteerOptions
from salmon_lib.options import SamplingOptions


@dataclasses.dataclass(kw_only=True)
class Tool(SamplingOptions, Config):
    path: str  # where it reads, 100% required
    mode: Literal["fast", "slow"] = "fast"  # how it runs
    limit: int | None = None  # at most this many
    tags: list[str] = dataclasses.field(default_factory=lambda: ["x"])  # repeat to add
    dry: bool = False  # say what it would do


def parser_for(cls) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(p, cls)
    return p


def test_flags_have_the_fields_names_types_defaults_and_comments():
    p = parser_for(Tool)
    opts = options_from_args(Tool, p.parse_args(["--path", "a", "--max-new-tokens", "7", "--tags", "u",
                                                 "--tags", "v", "--dry", "--mode", "slow"]), "tool")
    assert opts == Tool(path="a", max_new_tokens=7, tags=["u", "v"], dry=True, mode="slow")
    assert options_from_args(Tool, p.parse_args(["--path", "a"]), "tool") == Tool(path="a")
    helps = {a.dest: a.help for a in p._actions}
    assert helps["path"] == "where it reads, 100%% required"  # argparse prints %% as %
    assert helps["temperature"] == "sampling temperature (0: greedy)"
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        p.parse_args(["--path", "a", "--mode", "medium"])
    with pytest.raises(SystemExit):
        p.parse_args([])  # --path is required


def test_a_bad_value_fails_with_the_field_name_as_in_a_preset():
    args = parser_for(Tool).parse_args(["--path", "a", "--top-p", "1.5"])
    with pytest.raises(ConfigError, match=r"tool.top_p: must be in \(0, 1\]"):
        options_from_args(Tool, args, "tool")


@pytest.mark.parametrize("cls", [ChatOptions, SteerOptions])
def test_steer_and_chat_share_the_stage_vocabulary(cls):
    p = parser_for(cls)
    flags = {s for a in p._actions for s in a.option_strings}
    assert {"--temperature", "--top-p", "--max-new-tokens", "--backend", "--run", "--model", "--seed"} <= flags
    assert {f.name for f in dataclasses.fields(SamplingOptions)} <= {f.name for f in dataclasses.fields(cls)}


def test_steer_and_chat_refuse_a_bad_sampling_value_before_loading_anything(tmp_path, capsys):
    assert main(["chat", "--run", str(tmp_path), "--temperature", "-1"]) == 2
    assert "chat.temperature: must be >= 0" in capsys.readouterr().err
    assert main(["steer", "--run", str(tmp_path), "--principles", "Be brief.", "--prompt", "Hi", "--n", "0"]) == 2
    assert "steer.n: must be at least 1" in capsys.readouterr().err
