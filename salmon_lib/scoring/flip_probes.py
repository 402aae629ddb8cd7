"""Principle-flip probes: pairs of replies where one obeys a principle and the other violates it.

A principle-following score should prefer the obeying reply under the principle and the violating
one under its negation. Stage 03 measures its judge with them, stage 04 its reward, both through
`flip_summary`; the probes ship in `data/flip_probes.yaml` and can be read in the wording of a
principle file (`with_judge_wording`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import DataError, read_yaml

DATA = Path(__file__).parent / "data"


def read_flip_probes(path: str | Path | None = None) -> dict:
    """{kind: {principle, negation, probes: [{prompt, obeys, violates}]}}, checked field by field."""
    path = Path(path) if path else DATA / "flip_probes.yaml"
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("kinds"), dict):
        raise DataError(f"{path}: expected a mapping with a 'kinds' mapping")
    for kind, spec in data["kinds"].items():
        where = f"{path}: kinds.{kind}"
        if not isinstance(spec, dict) or not all(isinstance(spec.get(k), str) for k in ("principle", "negation")):
            raise DataError(f"{where}: needs string fields 'principle' and 'negation'")
        if not isinstance(spec.get("judge_principle", ""), str):
            raise DataError(f"{where}: 'judge_principle' should be a principle name")
        if not isinstance(spec.get("probes"), list) or not spec["probes"]:
            raise DataError(f"{where}: needs a non-empty 'probes' list")
        for i, probe in enumerate(spec["probes"]):
            if not isinstance(probe, dict) or not all(
                isinstance(probe.get(k), str) for k in ("prompt", "obeys", "violates")
            ):
                raise DataError(f"{where}.probes[{i}]: needs string fields prompt, obeys and violates")
    return data["kinds"]


def with_judge_wording(kinds: dict, principles_path: str | Path) -> dict:
    """The same probes under the definitions of the principle file (`judge_principle` per kind)."""
    from ..principles import load_principles

    ps = load_principles(principles_path)
    out = {}
    for kind, spec in kinds.items():
        name = spec.get("judge_principle")
        if name:
            p = ps.by_name(name)
            if p.negative_definition:
                out[kind] = dict(spec, principle=p.text(), negation=p.text(negated=True))
    return out


def flip_summary(c: dict, pos: Sequence[float] = (), neg: Sequence[float] = ()) -> dict:
    n = c["n"]
    out = {"n": n,
           "obeying_wins_under_principle": c["principle"] / n,  # direction 1
           "violating_wins_under_negation": c["negation"] / n,  # direction 2
           "flip_rate": c["flip"] / n,  # both: the preference reverses the right way round
           "wrong_way_rate": c["wrong_way"] / n}  # it reverses the wrong way round (not a flip)
    if pos:
        out["mean_margin_principle"] = sum(pos) / len(pos)
        out["mean_margin_negation"] = sum(neg) / len(neg)
    return out
