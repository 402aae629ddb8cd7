"""`python -m salmon_lib principles FILE...`: validate principle files and preview what they produce.

Meant for users writing their own set: it reports the first problem with file, line and field, or
prints a summary, a few sampled subsets as the reward model would see them, or the Self-Align prompt.
"""

from __future__ import annotations

import random
import sys

import yaml

from salmon_lib.principles._reader import PrincipleError
from salmon_lib.principles.self_align import load_self_align
from salmon_lib.principles.sets import load_principles


def _is_self_align(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError):
        return False  # let the loader report it with its own message
    return isinstance(data, dict) and "rules" in data


def _show_set(path: str, args) -> None:
    ps = load_principles(path)
    sampled = sum(p.sampled for p in ps.principles)
    print(f"{path}: {len(ps.principles)} principles ({sampled} sampled), {len(ps.interventions)} interventions, "
          f"prompt types: {', '.join(ps.prompt_types) or 'none'}")
    for p in ps.principles:
        notes = [f"weight {p.weight:g}"]
        notes += [f"x{p.boost_factor:g} on {', '.join(p.boost_types)}"] if p.boost_types else []
        notes += ["negatable"] if p.negative_definition else []
        notes += [f"hhh: {p.hhh_type}"] if p.hhh_type else []
        notes += [] if p.sampled else ["not sampled"]
        print(f"  {p.name:<28} {'; '.join(notes)}")
    rng = random.Random(args.seed)
    for i in range(args.sample):
        selection = ps.sample(rng, args.max_k, args.p_continue, args.p_negate, args.prompt_type)
        print(f"\nsample {i + 1} ({', '.join(p.name + (' [negated]' if neg else '') for p, neg in selection)}):")
        print(ps.render_bullets(selection, ps.interventions_for(args.prompt_type)))


def _show_self_align(path: str, args) -> None:
    sa = load_self_align(path)
    turns = sum(len(ex.turns) for ex in sa.exemplars)
    cited = sorted({n for ex in sa.exemplars for t in ex.turns for n in t.cited_rules})
    unused = sorted({r.number for r in sa.rules} - set(cited))
    print(f"{path}: {len(sa.rules)} rules, {len(sa.exemplars)} exemplars ({turns} turns), "
          f"rules never cited by an exemplar: {unused or 'none'}, prompt {len(sa.render_prompt())} characters")
    if args.show_prompt:
        print("\n" + sa.render_prompt(args.show_prompt))


def _run(args) -> int:
    for path in args.files:
        try:
            (_show_self_align if _is_self_align(path) else _show_set)(path, args)
        except PrincipleError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("principles", help="validate and preview principle / Self-Align YAML files")
    p.add_argument("files", nargs="+", help="YAML files (a file with 'rules' is read as a Self-Align file)")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="show N sampled principle subsets")
    p.add_argument("--max-k", type=int, default=3, help="largest subset size when sampling")
    p.add_argument("--p-continue", type=float, default=1.0, help="chance of adding one more principle")
    p.add_argument("--p-negate", type=float, default=0.0, help="chance of negating each drawn principle")
    p.add_argument("--prompt-type", default=None, help="prompt type for boosts and interventions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-prompt", metavar="INSTRUCTION", help="print the Self-Align prompt for this instruction")
    p.set_defaults(func=_run)
