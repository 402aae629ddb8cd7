"""`python -m salmon_lib run ...`, `... status ...` and `... notebooks --check|--write`."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from ..config import ConfigError
from ..io import DataError
from ..stages import Stage


def run_dir_of(run: str) -> Path:
    """A bare name means outputs/<name> (relative to the current folder); anything with a slash is a path."""
    return Path(run) if ("/" in run or run.startswith(".")) else Path("outputs") / run


def load_registry(spec: str) -> list[Stage]:
    module, _, attr = spec.partition(":")
    try:
        stages = getattr(importlib.import_module(module), attr or "STAGES")
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"--registry {spec}: cannot import it ({err})") from None
    if not all(isinstance(s, Stage) for s in stages):
        raise ConfigError(f"--registry {spec}: expected a list of salmon_lib.stages.Stage")
    return list(stages)


def _run(args) -> int:
    from .kernel import RunLocked
    from .pipeline import StageFailed, run_pipeline

    run = args.run or Path(args.preset).stem
    try:
        summary = run_pipeline(
            args.preset, run_dir_of(run), stages=load_registry(args.registry), start=args.start, stop=args.stop,
            only=args.only, overrides=args.param, progress=not args.no_progress, dry_run=args.dry_run,
            accept_changed=args.accept_changed,
        )
    except (ConfigError, DataError, RunLocked) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"error: {err} (see `python -m salmon_lib status --run {run}`)", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"dry run: parameters of every stage are valid; {run_dir_of(run)} left untouched")
        return 0
    ran = sum(1 for _, action, _ in summary if action == "ran")
    total = sum(seconds for _, _, seconds in summary)
    print(f"done: {ran} stage(s) ran, {len(summary) - ran} skipped, {total:.1f} s in stages; run dir {run_dir_of(run)}")
    return 0


def _status(args) -> int:
    from .status import format_status, stage_status

    run_dir = run_dir_of(args.run)
    if run_dir.exists() and not run_dir.is_dir():
        print(f"error: {run_dir} is a file, not a run folder", file=sys.stderr)
        return 2
    if not (run_dir / "manifest.json").is_file():
        print(f"error: {run_dir} has no manifest.json (nothing ran there yet)", file=sys.stderr)
        return 2
    try:
        rows = stage_status(run_dir, load_registry(args.registry))
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_status(rows))
    # 0 only when every stage finished and nothing is stale: scripts can use it as "is this run complete?"
    return 0 if all(r["status"] == "finished" and not r["stale"] for r in rows) else 1


def _notebooks(args) -> int:
    import logging

    from .notebooks import notebook_problems, write_parameters
    from .stage_docs import page_drift, page_path, write_page

    logging.getLogger("papermill").setLevel(logging.WARNING)  # one line per notebook is enough

    try:
        stages = load_registry(args.registry)
        if args.write:
            for stage in stages:
                changed = write_parameters(stage)
                print(f"{stage.notebook_path()}: {'parameters cell rewritten' if changed else 'up to date'}")
                if write_page(stage):
                    print(f"{page_path(stage)}: parameter table rewritten")
        bad = 0
        for stage in stages:
            problems = notebook_problems(stage) + [p for p in [page_drift(stage)] if p]
            for problem in problems:
                print(problem, file=sys.stderr)
            bad += bool(problems)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.write:
        print(f"{len(stages) - bad} of {len(stages)} notebooks match their configs")
    return 1 if bad else 0


def add_cli(sub) -> None:
    p = sub.add_parser("run", help="run a preset's stages through papermill (skips finished stages)")
    p.add_argument("--preset", required=True, help="preset name (configs/NAME.yaml) or a YAML path")
    p.add_argument("--run", help="run name (outputs/RUN) or folder; default: the preset's name")
    p.add_argument("--from", dest="start", metavar="STAGE", help="first stage to run")
    p.add_argument("--to", dest="stop", metavar="STAGE", help="last stage to run")
    p.add_argument("--only", action="append", metavar="STAGE", help="run only this stage (repeatable)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override a parameter; VALUE is a YAML literal; common.KEY=VALUE sets it for every stage")
    p.add_argument("--registry", default="salmon_lib.stages:STAGES", help="stage list as module:attribute")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    p.add_argument("--dry-run", action="store_true", help="validate and say what would run; start nothing")
    p.add_argument("--accept-changed", action="store_true",
                   help="use outputs edited since their stage wrote them as they are, instead of rerunning the stage")
    p.set_defaults(func=_run)
    p = sub.add_parser("status", help="what ran in a run directory, what is stale, timings")
    p.add_argument("--run", required=True, help="run name (outputs/RUN) or folder")
    p.add_argument("--registry", default="salmon_lib.stages:STAGES", help="stage list as module:attribute")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per stage: status, wall/CPU seconds, tokens generated, examples, examples/min")
    p.set_defaults(func=_status)
    p = sub.add_parser("notebooks", help="check or rewrite each stage notebook's parameters cell (and the parameter "
                                         "table of its page under docs/stages/) from its config")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="say what differs, exit 1 if anything does (default)")
    mode.add_argument("--write", action="store_true",
                      help="rewrite every parameters cell and docs table from its config class")
    p.add_argument("--registry", default="salmon_lib.stages:STAGES", help="stage list as module:attribute")
    p.set_defaults(func=_notebooks)
