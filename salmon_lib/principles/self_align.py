"""The Self-Align rules and exemplars: loading, validation, rule citations and the prompt they make.

The exemplars teach a base model to think before answering ("internal thoughts") and to name the
rules that apply by number and name. Those citations are parsed, not declared separately, so the
file cannot say one thing in the text and another in a field; the same parser reads the citations
out of generated thoughts in stage 01.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from salmon_lib.principles._reader import PrincipleError, Reader, entry_label

PLACEHOLDERS = ("assistant_name", "knowledge_cutoff")
# "rules 3 (helpful), 7 (candor)": a number followed by a parenthesised name, after the word "rule".
_CITATION = re.compile(r"\b(\d{1,3})\s*\(([^()\n]{1,60})\)")
_RULE_WORD = re.compile(r"\brules?\b", re.IGNORECASE)
# "{assistant_nmae}"-style typos of a placeholder; only checked in texts that hold no code.
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# Lines that would end a generated turn early (see SelfAlignSet.stop), so exemplars may not contain them.
_TURN_BREAK = re.compile(r"^(User:|=== )", re.MULTILINE)


class Rule(NamedTuple):
    number: int
    name: str
    text: str


@dataclass(frozen=True)
class ExemplarTurn:
    """Texts keep their placeholders; `SelfAlignSet.fill` gives them as the prompt shows them."""

    user: str
    thoughts: str  # the assistant's internal thoughts, naming the rules that apply
    answer: str
    cited_rules: tuple[int, ...]  # rule numbers cited in `thoughts`, in order of first mention


@dataclass(frozen=True)
class Exemplar:
    name: str
    turns: tuple[ExemplarTurn, ...]


def parse_citations(thoughts: str) -> list[tuple[int, str]]:
    """(number, name as written) for every "N (name)" after the first mention of "rule"."""
    found = _RULE_WORD.search(thoughts)
    if not found:
        return []
    return [(int(m.group(1)), m.group(2).strip()) for m in _CITATION.finditer(thoughts, found.end())]


@dataclass(frozen=True)
class SelfAlignSet:
    assistant_name: str  # default name filled into {assistant_name}
    knowledge_cutoff: str  # default text filled into {knowledge_cutoff}
    overview: str
    examples_intro: str
    rules: tuple[Rule, ...]
    exemplars: tuple[Exemplar, ...]
    path: str | None = None

    def rule(self, number: int) -> Rule:
        for r in self.rules:
            if r.number == number:
                return r
        raise PrincipleError(f"{self.path}: no rule number {number}; rules are 1..{len(self.rules)}")

    def exemplar(self, name: str) -> Exemplar:
        for ex in self.exemplars:
            if ex.name == name:
                return ex
        known = ", ".join(ex.name for ex in self.exemplars)
        raise PrincipleError(f"{self.path}: no exemplar named {name!r}; known: {known}")

    def cited_rules(self, thoughts: str) -> list[int]:
        """Existing rule numbers cited in `thoughts`, deduplicated, in order of first mention.
        Citations of rules that do not exist are ignored (generated thoughts may invent some)."""
        known = {r.number for r in self.rules}
        out: list[int] = []
        for number, _ in parse_citations(thoughts):
            if number in known and number not in out:
                out.append(number)
        return out

    def fill(self, text: str, assistant_name: str | None = None, knowledge_cutoff: str | None = None) -> str:
        """Replace the placeholders. Plain replacement, not str.format, so code with braces is safe."""
        return text.replace("{assistant_name}", assistant_name or self.assistant_name).replace(
            "{knowledge_cutoff}", knowledge_cutoff or self.knowledge_cutoff
        )

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings for generation after `render_prompt`: the next user turn or block heading."""
        return ("\nUser:", "\n=== ")

    def render_prompt(
        self,
        instruction: str | None = None,
        assistant_name: str | None = None,
        knowledge_cutoff: str | None = None,
        exemplars: Sequence[str] | None = None,
    ) -> str:
        """The Self-Align prompt: overview, numbered rules and exemplar transcripts. With an
        `instruction`, it ends in an open "<name> (internal thoughts):" turn for the model to
        complete; the text before the instruction is identical for every query (a shared prefix).
        `exemplars` names the exemplars to include, in that order (default: all), since the full
        prompt is about 3k tokens, which matters for small models on a CPU."""
        name = assistant_name or self.assistant_name
        parts = [f"# {name}\n\n## Rules\n{self.overview}\n"]
        parts += [f"{r.number} ({r.name}). {r.text}" for r in self.rules]
        parts.append(f"\n## Examples\n{self.examples_intro}\n")
        chosen = self.exemplars if exemplars is None else [self.exemplar(n) for n in exemplars]
        for i, ex in enumerate(chosen, 1):
            parts.append(f"=== Example {i} ===")
            for turn in ex.turns:
                parts.append(
                    f"User: {turn.user}\n\n{name} (internal thoughts): {turn.thoughts}\n\n{name}: {turn.answer}\n"
                )
        text = self.fill("\n".join(parts), name, knowledge_cutoff)
        if instruction is not None:
            text += f"\n=== Conversation ===\nUser: {instruction}\n\n{name} (internal thoughts):"
        return text

    def split_completion(self, completion: str, assistant_name: str | None = None) -> tuple[str, str | None]:
        """Split a completion of `render_prompt(instruction)` into (thoughts, answer); the answer is
        None when the model never reached the "<name>:" line."""
        marker = f"\n{assistant_name or self.assistant_name}:"
        thoughts, sep, answer = completion.partition(marker)
        return thoughts.strip(), (answer.strip() if sep else None)


_TOP_FIELDS = ("assistant_name", "knowledge_cutoff", "overview", "examples_intro", "rules", "exemplars")


def load_self_align(path: str | Path) -> SelfAlignSet:
    """Load and validate a Self-Align file (principles/self_align.yaml or a user's own)."""
    r = Reader(path)
    data = dict(r.mapping(r.data, [], "top level", _TOP_FIELDS))
    if isinstance(data.get("knowledge_cutoff"), int):  # `knowledge_cutoff: 2024` without quotes
        data["knowledge_cutoff"] = str(data["knowledge_cutoff"])

    def prose(entry: dict, keys: list, where: str, name: str) -> str:
        text = r.get(entry, keys, where, name, "text")
        for m in _PLACEHOLDER.finditer(text):
            if m.group(1) not in PLACEHOLDERS:
                raise r.error([*keys, name], f"{where}: field {name!r} has unknown placeholder {m.group(0)}; "
                              f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        return text

    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(r.entries(data, "rules", "top level")):
        keys, where = ["rules", i], entry_label("rules", i, entry)
        r.mapping(entry, keys, where, ("number", "name", "text"))
        number = r.get(entry, keys, where, "number", "int")
        if number != i + 1:
            raise r.error([*keys, "number"], f"{where}: rules must be numbered 1, 2, 3... in order; "
                          f"expected {i + 1}, got {number}")
        name = r.get(entry, keys, where, "name", "text")
        r.unique(name, seen, keys, where)
        rules.append(Rule(number, name, prose(entry, keys, where, "text")))
    by_number = {rule.number: rule for rule in rules}

    exemplars: list[Exemplar] = []
    seen = {}
    for i, entry in enumerate(r.entries(data, "exemplars", "top level")):
        keys, where = ["exemplars", i], entry_label("exemplars", i, entry)
        r.mapping(entry, keys, where, ("name", "turns"))
        name = r.get(entry, keys, where, "name", "text")
        r.unique(name, seen, keys, where)
        turns = []
        for j, turn in enumerate(r.entries(entry, "turns", where)):
            tkeys, twhere = [*keys, "turns", j], f"{where} turns[{j}]"
            r.mapping(turn, tkeys, twhere, ("user", "thoughts", "answer"))
            texts = {f: r.get(turn, tkeys, twhere, f, "text") for f in ("user", "answer")}
            texts["thoughts"] = prose(turn, tkeys, twhere, "thoughts")
            for f, text in texts.items():
                if _TURN_BREAK.search(text):
                    raise r.error([*tkeys, f], f"{twhere}: field {f!r} has a line starting with 'User:' or "
                                  "'=== ', which would end the generated turn early")
            citations = parse_citations(texts["thoughts"])
            if not citations:
                raise r.error([*tkeys, "thoughts"], f"{twhere}: field 'thoughts' cites no rule; name them as "
                              "'rules 3 (helpful), 7 (candor)'")
            for number, cited_name in citations:
                if number not in by_number:
                    raise r.error([*tkeys, "thoughts"], f"{twhere}: field 'thoughts' cites rule {number}, "
                                  f"which does not exist (rules are 1..{len(rules)})")
                if cited_name.lower() != by_number[number].name.lower():
                    raise r.error([*tkeys, "thoughts"], f"{twhere}: field 'thoughts' cites rule {number} as "
                                  f"{cited_name!r}, but rule {number} is {by_number[number].name!r}")
            cited = tuple(dict.fromkeys(number for number, _ in citations))
            turns.append(ExemplarTurn(texts["user"], texts["thoughts"], texts["answer"], cited))
        exemplars.append(Exemplar(name, tuple(turns)))

    return SelfAlignSet(
        assistant_name=r.get(data, [], "top level", "assistant_name", "text"),
        knowledge_cutoff=r.get(data, [], "top level", "knowledge_cutoff", "text"),
        overview=prose(data, [], "top level", "overview"),
        examples_intro=prose(data, [], "top level", "examples_intro"),
        rules=tuple(rules),
        exemplars=tuple(exemplars),
        path=str(r.path),
    )
