"""`python -m salmon_lib COMMAND`: each command lives in its own module, which provides
`add_cli(subparsers)` registering a parser whose `func(args) -> int` runs it."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that contribute a subcommand; a new command is one line here.
COMMAND_MODULES = [
    "salmon_lib.smoke",
    "salmon_lib.principles.cli",
    "salmon_lib.runner.cli",
    "salmon_lib.reward.score",
    "salmon_lib.evaluate.steer",
    "salmon_lib.evaluate.chat",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salmon_lib", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
