"""Principle sets (judge, reward model, RL): loading, validation, sampling and rendering.

Sampling follows SALMON: a subset size from a geometric distribution capped at `max_k`, principles
drawn by weight without replacement (weights multiplied for principles boosted by the prompt's
type), each negated with probability `p_negate` where it has a negative definition.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

from salmon_lib.hhh_data import HHH_TYPES
from salmon_lib.principles._reader import PrincipleError, Reader, entry_label

DEFAULT_BOOST_FACTOR = 100.0


@dataclass(frozen=True)
class Principle:
    name: str  # shown to the judge ("Name: definition"); RM bullets show only the text
    definition: str  # the behaviour this principle asks for
    negative_definition: str | None = None  # the opposite behaviour, shown when the principle is negated
    weight: float = 1.0  # relative chance of being drawn by `PrincipleSet.sample`
    boost_types: tuple[str, ...] = ()  # prompt types for which the weight is multiplied by boost_factor
    hhh_type: str | None = None  # which HHH-eval category this principle judges (helpful/harmless/honest/other)
    boost_factor: float = DEFAULT_BOOST_FACTOR  # weight multiplier on boosted prompt types
    sampled: bool = True  # False: listed and judged, but never drawn into sampled subsets

    def __post_init__(self):
        object.__setattr__(self, "boost_types", tuple(self.boost_types))

    def text(self, negated: bool = False) -> str:
        """The definition, or the negative definition when `negated`."""
        if not negated:
            return self.definition
        if self.negative_definition is None:
            raise PrincipleError(f"principle {self.name!r} has no negative definition, so it cannot be negated")
        return self.negative_definition

    def effective_weight(self, prompt_type: str | None = None) -> float:
        return self.weight * (self.boost_factor if prompt_type in self.boost_types else 1.0)


@dataclass(frozen=True)
class Intervention:
    """A rule shown to the reward model with every RL-time principle set, e.g. a reward-hacking counter."""

    name: str
    text: str  # the rule as the reward model reads it
    counters: str = ""  # the failure it guards against (documentation for users and plots)
    applies_to: tuple[str, ...] = ()  # prompt types it is shown for; empty: every prompt

    def applies(self, prompt_type: str | None) -> bool:
        return not self.applies_to or prompt_type in self.applies_to


def subset_size_probs(max_k: int, p_continue: float, cap: Literal["clip", "redraw"] = "clip") -> list[float]:
    """P(k) for k = 1..max_k: start with one principle, add another with probability `p_continue`.

    "clip" stops adding at `max_k` (so p_continue=1 always gives max_k; the RL stage's fixed 3);
    "redraw" rejects sizes above `max_k` as SALMON's aggregation does (renormalised geometric law;
    uniform when p_continue=1).
    """
    if not isinstance(max_k, int) or isinstance(max_k, bool) or max_k < 1:
        raise ValueError(f"max_k must be an integer >= 1, got {max_k!r}")
    if not 0.0 <= p_continue <= 1.0:
        raise ValueError(f"p_continue must be in [0, 1], got {p_continue!r}")
    geometric = [(1.0 - p_continue) * p_continue ** (k - 1) for k in range(1, max_k + 1)]
    if cap == "clip":
        return geometric[:-1] + [p_continue ** (max_k - 1)]
    if cap == "redraw":
        total = sum(geometric)
        return [g / total for g in geometric] if total > 0 else [1.0 / max_k] * max_k
    raise ValueError(f"cap must be 'clip' or 'redraw', got {cap!r}")


@dataclass(frozen=True)
class PrincipleSet:
    name: str
    principles: tuple[Principle, ...]
    interventions: tuple[Intervention, ...] = ()
    prompt_types: dict[str, str] = field(default_factory=dict)  # declared prompt types -> description
    description: str = ""
    path: str | None = None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.principles]

    def by_name(self, name: str) -> Principle:
        for p in self.principles:
            if p.name == name:
                return p
        raise PrincipleError(f"{self.path or self.name}: no principle named {name!r}; known: {', '.join(self.names)}")

    def for_hhh_type(self, hhh_type: str) -> Principle:
        """The principle the HHH evaluation uses for pairs of this type: the first one listed with it."""
        if hhh_type not in HHH_TYPES:
            raise PrincipleError(f"unknown HHH type {hhh_type!r}; known: {', '.join(HHH_TYPES)}")
        for p in self.principles:
            if p.hhh_type == hhh_type:
                return p
        raise PrincipleError(f"{self.path or self.name}: no principle has hhh_type {hhh_type!r}")

    def interventions_for(self, prompt_type: str | None = None) -> list[Intervention]:
        return [iv for iv in self.interventions if iv.applies(prompt_type)]

    def sample(
        self,
        rng: random.Random,
        max_k: int,
        p_continue: float,
        p_negate: float,
        prompt_type: str | None = None,
        cap: Literal["clip", "redraw"] = "clip",
    ) -> list[tuple[Principle, bool]]:
        """Draw a subset of the `sampled` principles: its size from `subset_size_probs` (with max_k
        lowered to the pool size), its members by effective weight without replacement, and each
        member negated with probability `p_negate` if it has a negative definition."""
        if not isinstance(max_k, int) or isinstance(max_k, bool) or max_k < 1:
            raise ValueError(f"max_k must be an integer >= 1, got {max_k!r}")
        if not 0.0 <= p_negate <= 1.0:
            raise ValueError(f"p_negate must be in [0, 1], got {p_negate!r}")
        pool = [p for p in self.principles if p.sampled]
        if not pool:
            raise PrincipleError(f"{self.path or self.name}: no principle can be sampled (all have sampled=False)")
        k_max = min(max_k, len(pool))
        k = rng.choices(range(1, k_max + 1), weights=subset_size_probs(k_max, p_continue, cap))[0]
        weights = [p.effective_weight(prompt_type) for p in pool]
        chosen = []
        for _ in range(k):
            x, i = rng.random() * sum(weights), 0
            # Walk the cumulative weights; the final guard absorbs floating-point round-off.
            while i < len(weights) - 1 and x >= weights[i]:
                x -= weights[i]
                i += 1
            chosen.append(pool.pop(i))
            weights.pop(i)
        return [(p, p.negative_definition is not None and rng.random() < p_negate) for p in chosen]

    @staticmethod
    def render_bullets(
        selection: Sequence[tuple[Principle, bool]],
        interventions: Sequence[Intervention] = (),
        with_names: bool = False,
    ) -> str:
        """One "- text" line per intervention, then per selected principle (its negative definition
        when negated); `with_names` prefixes principles with "Name: " as the judge shows them."""
        lines = [f"- {iv.text}" for iv in interventions]
        for p, negated in selection:
            lines.append(f"- {p.name}: {p.text(negated)}" if with_names else f"- {p.text(negated)}")
        return "\n".join(lines)


_SET_FIELDS = ("name", "description", "boost_factor", "prompt_types", "principles", "interventions")
_PRINCIPLE_FIELDS = (
    "name", "definition", "negative_definition", "weight", "boost_types", "boost_factor", "hhh_type", "sampled"
)
_INTERVENTION_FIELDS = ("name", "text", "counters", "applies_to")


def load_principles(path: str | Path) -> PrincipleSet:
    """Load and validate a principle set (judge.yaml, rl.yaml or a user's own file)."""
    r = Reader(path)
    data = r.mapping(r.data, [], "top level", _SET_FIELDS)
    set_factor = r.get(data, [], "top level", "boost_factor", "positive", DEFAULT_BOOST_FACTOR)
    prompt_types = data.get("prompt_types") or {}
    if not isinstance(prompt_types, Mapping) or not all(isinstance(v, str) for v in prompt_types.values()):
        raise r.error(["prompt_types"], "top level: field 'prompt_types' must map each type name to a description")
    prompt_types = {str(k): v for k, v in prompt_types.items()}

    def check_types(types: list[str], keys: list, where: str, fname: str) -> tuple[str, ...]:
        for t in types:
            if t not in prompt_types:
                known = ", ".join(prompt_types) or "none declared"
                raise r.error([*keys, fname], f"{where}: field {fname!r}: prompt type {t!r} is not declared "
                              f"under prompt_types (declared: {known})")
        return tuple(types)

    principles, seen = [], {}
    for i, entry in enumerate(r.entries(data, "principles", "top level")):
        keys, where = ["principles", i], entry_label("principles", i, entry)
        r.mapping(entry, keys, where, _PRINCIPLE_FIELDS)
        name = r.get(entry, keys, where, "name", "text")
        r.unique(name, seen, keys, where)
        hhh_type = r.get(entry, keys, where, "hhh_type", "text", None)
        if hhh_type is not None and hhh_type not in HHH_TYPES:
            raise r.error([*keys, "hhh_type"], f"{where}: field 'hhh_type' must be one of {', '.join(HHH_TYPES)}, "
                          f"got {hhh_type!r}")
        principles.append(Principle(
            name=name,
            definition=r.get(entry, keys, where, "definition", "text"),
            negative_definition=r.get(entry, keys, where, "negative_definition", "text", None),
            weight=r.get(entry, keys, where, "weight", "positive", 1.0),
            boost_types=check_types(r.get(entry, keys, where, "boost_types", "names", []), keys, where, "boost_types"),
            hhh_type=hhh_type,
            boost_factor=r.get(entry, keys, where, "boost_factor", "positive", set_factor),
            sampled=r.get(entry, keys, where, "sampled", "bool", True),
        ))
    if not any(p.sampled for p in principles):
        raise r.error(["principles"], "top level: every principle has sampled: false, so nothing can be sampled")

    interventions, seen = [], {}
    for i, entry in enumerate(r.entries(data, "interventions", "top level", required=False)):
        keys, where = ["interventions", i], entry_label("interventions", i, entry)
        r.mapping(entry, keys, where, _INTERVENTION_FIELDS)
        name = r.get(entry, keys, where, "name", "text")
        r.unique(name, seen, keys, where)
        applies_to = entry.get("applies_to", "all")
        if applies_to != "all":
            applies_to = r.get(entry, keys, where, "applies_to", "names")
            if not applies_to:
                raise r.error([*keys, "applies_to"], f"{where}: field 'applies_to' must be 'all' or a non-empty "
                              "list of prompt types")
        interventions.append(Intervention(
            name=name,
            text=r.get(entry, keys, where, "text", "text"),
            counters=r.get(entry, keys, where, "counters", "text", ""),
            applies_to=() if applies_to == "all" else check_types(applies_to, keys, where, "applies_to"),
        ))
    return PrincipleSet(
        name=r.get(data, [], "top level", "name", "text", r.path.stem),
        principles=tuple(principles),
        interventions=tuple(interventions),
        prompt_types=prompt_types,
        description=r.get(data, [], "top level", "description", "text", ""),
        path=str(r.path),
    )
