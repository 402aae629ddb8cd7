"""The Self-Align prompt, rendered in the project's chat format.

Layout (one conversation in `salmon_lib.chat_format`'s format):
- a system turn: the overview, the numbered rules "N (name). text", and the examples' intro;
- each exemplar opened by a short system turn marking a fresh conversation, then its user turns and
  assistant turns "<name> (internal thoughts): ...\n\n<name>: <answer>";
- a last system turn opening the real conversation, the user's query, and an assistant turn
  pre-filled with "<name> (internal thoughts):" for the model to continue.

Because the exemplar answers close with the format's end-of-turn marker, the model learns to end its
answer the same way, and the format's stop strings (the end of the turn / the next user turn) stop
generation right there. Generation runs in two steps: the thoughts, up to their paragraph break, then
the answer after an answer label written for the model. A small model otherwise often runs its
thoughts straight into an answer and never writes the label, which loses the sample. Everything up
to the query is identical for every query: `render` returns `prefix + tail`, and the generator can
compute that prefix once.
"""

from __future__ import annotations

import dataclasses

from ..chat_format import ChatFormat, get_format


def thoughts_label(name: str) -> str:
    return f"{name} (internal thoughts):"


def answer_label(name: str) -> str:
    return f"{name}:"


def assistant_content(name: str, thoughts: str, answer: str) -> str:
    return f"{thoughts_label(name)} {thoughts}\n\n{answer_label(name)} {answer}"


@dataclasses.dataclass(frozen=True)
class SelfAlignPrompt:
    """A rendered Self-Align prompt for one chat format and assistant name."""

    fmt: ChatFormat
    name: str
    prefix: str  # everything before the query: shared by every prompt of the stage
    exemplar_answers: tuple[str, ...]  # the filled-in exemplar answers (for the leakage filter)

    def render(self, query: str) -> str:
        tail = self.fmt.render([{"role": "user", "content": query}], prefill=thoughts_label(self.name))
        return self.prefix + tail

    @property
    def stop(self) -> tuple[str, ...]:
        """Where an answer ends: the end of the turn, or any marker of a new turn the model writes
        itself (a small model imitating the exemplars goes on with "User:" or its next thoughts).
        Stopping there keeps the answer before it, where a filter could only drop the record."""
        # a marker holding a stop string already stops there
        extra = (m for m in turn_markers(self.fmt, self.name) if not any(s in m for s in self.fmt.stop))
        return self.fmt.stop + tuple(extra)

    @property
    def thoughts_stop(self) -> tuple[str, ...]:
        """Where the thoughts end: their paragraph break (every exemplar's thoughts are one paragraph),
        an answer label the model wrote itself, or the end of the turn."""
        return ("\n\n", f"\n{answer_label(self.name)}") + self.fmt.stop

    def with_answer_label(self, rendered: str, thoughts: str) -> str:
        """The prompt for the answer: the query's prompt, the generated thoughts, the answer label."""
        return f"{rendered}{thoughts.rstrip()}\n\n{answer_label(self.name)}"


def turn_markers(fmt: ChatFormat, name: str) -> tuple[str, ...]:
    """Strings that mean the model opened a new turn inside its answer."""
    role_markers = {t.split("{content}")[0].strip() for t in (fmt.system, fmt.user)} | {fmt.assistant.strip()}
    return tuple(sorted(m for m in role_markers if m)) + (thoughts_label(name), f"\n{answer_label(name)}", "\nUser:")


def build_prompt(sa, chat_format: str = "chatml", assistant_name: str | None = None,
                 knowledge_cutoff: str | None = None, max_exemplars: int | None = None) -> SelfAlignPrompt:
    """Render a `SelfAlignSet` (salmon_lib.principles) into a reusable prompt; `max_exemplars`
    keeps only the first few exemplars (a shorter prompt for a small model on a CPU)."""
    fmt = get_format(chat_format)
    name = assistant_name or sa.assistant_name

    def fill(text: str) -> str:
        return sa.fill(text, name, knowledge_cutoff)

    rules = "\n".join(f"{r.number} ({r.name}). {fill(r.text)}" for r in sa.rules)
    system = f"# {name}\n\n## Rules\n{fill(sa.overview)}\n\n{rules}\n\n## Examples\n{fill(sa.examples_intro)}"
    messages = [{"role": "system", "content": system}]
    answers = []
    exemplars = sa.exemplars[:max_exemplars] if max_exemplars is not None else sa.exemplars
    total = len(exemplars)
    for i, ex in enumerate(exemplars, 1):
        messages.append({"role": "system", "content": f"Example conversation {i} of {total} (a new user)."})
        for turn in ex.turns:
            answer = fill(turn.answer)
            answers.append(answer)
            messages.append({"role": "user", "content": fill(turn.user)})
            messages.append({"role": "assistant", "content": assistant_content(name, fill(turn.thoughts), answer)})
    messages.append({"role": "system", "content": "A new conversation with a real user begins."})
    prefix = fmt.render(messages, add_generation_prompt=False)
    return SelfAlignPrompt(fmt=fmt, name=name, prefix=prefix, exemplar_answers=tuple(answers))
