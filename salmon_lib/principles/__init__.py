"""Principles as data: the Self-Align rules and exemplars, the judge/RM principles and the RL pool.

Every principle, rule and exemplar lives in a YAML file under `principles/` (schema in
principles/README.md), so a user aligns a model to their own domain by writing a file, not code.
Files are validated when loaded: a typo'd key, a missing definition, a zero weight or an exemplar
citing a rule that does not exist is reported with the file, line, entry and field, because a
silently wrong principle set only shows up much later as a reward model that learned the wrong thing.
"""

from salmon_lib.principles._reader import PrincipleError
from salmon_lib.principles.self_align import (
    Exemplar,
    ExemplarTurn,
    Rule,
    SelfAlignSet,
    load_self_align,
    parse_citations,
)
from salmon_lib.principles.sets import (
    DEFAULT_BOOST_FACTOR,
    HHH_TYPES,
    Intervention,
    Principle,
    PrincipleSet,
    load_principles,
    subset_size_probs,
)

__all__ = [
    "DEFAULT_BOOST_FACTOR",
    "HHH_TYPES",
    "Exemplar",
    "ExemplarTurn",
    "Intervention",
    "Principle",
    "PrincipleError",
    "PrincipleSet",
    "Rule",
    "SelfAlignSet",
    "load_principles",
    "load_self_align",
    "parse_citations",
    "subset_size_probs",
]
