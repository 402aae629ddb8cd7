"""`salmon COMMAND` (or `python -m salmon_lib COMMAND`): each command lives in its own module, which
provides `add_cli(subparsers)` registering a parser whose `func(args) -> int` runs it."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

# Modules that contribute a subcommand; a new command is one line here.
COMMAND_MODULES = [
    "salmon_lib.smoke",
    "salmon_lib.principles.cli",
    "salmon_lib.runner.cli",
    "salmon_lib.reward.score",
    "salmon_lib.evaluate.steer",
    "salmon_lib.evaluate.chat_session",
]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; parsing a command line with it checks its flags without running it."""
    parser = argparse.ArgumentParser(
        prog=prog or _prog(), description="SALMON Workbench: the pipeline's runner and the tools around a run.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(sub)
    return parser


def _prog() -> str:
    """`salmon` when started as the console command, `python -m salmon_lib` otherwise."""
    name = Path(sys.argv[0]).name
    return name if name and name not in ("__main__.py", "-c", "-m") else "python -m salmon_lib"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from .config import ConfigError
    from .io import DataError
    from .models import ModelLoadError

    # Commands report the errors they expect themselves; these are the ones a bad file, folder or
    # model can still raise from deeper down: one line naming it, never a traceback (-v shows it).
    try:
        return args.func(args)
    except (ConfigError, DataError, ModelLoadError, OSError) as err:
        if args.verbose:
            raise
        print(f"error: {_describe(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _describe(err: Exception) -> str:
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
