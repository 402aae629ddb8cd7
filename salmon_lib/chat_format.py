"""The chat format, defined once and used by every stage that renders a conversation.

A mismatch between the format a model was fine-tuned on and the one it is later prompted,
judged or rewarded with is the most common silent defect in the original code bases, so no
stage builds turn markers by hand: they all call `ChatFormat.render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ChatFormat:
    name: str
    system: str  # template of a system turn, with {content}
    user: str  # template of a user turn, with {content}
    assistant: str  # what opens an assistant turn; generation starts right after it
    end: str  # what closes an assistant turn
    stop: tuple[str, ...]  # strings at which a generated assistant turn is over

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = True, prefill: str = "") -> str:
        """Render `[{role, content}, ...]`; with `add_generation_prompt` the text ends inside an open
        assistant turn that starts with `prefill` (the judge pre-fills "Output (")."""
        parts = []
        for i, m in enumerate(messages):
            role, content = m.get("role"), m.get("content")
            if not isinstance(content, str):
                raise ValueError(f"message {i}: content must be a string, got {type(content).__name__}")
            if role == "system":
                parts.append(self.system.format(content=content))
            elif role == "user":
                parts.append(self.user.format(content=content))
            elif role == "assistant":
                parts.append(self.assistant + content + self.end)
            else:
                raise ValueError(f"message {i}: unknown role {role!r} (expected system, user or assistant)")
        if add_generation_prompt:
            parts.append(self.assistant + prefill)
        return "".join(parts)

    def prompt(self, user: str, system: str | None = None, prefill: str = "") -> str:
        """A single-turn prompt ending in an open assistant turn."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return self.render(messages, prefill=prefill)


FORMATS = {
    # SmolLM2 and many instruction-tuned models; the markers are single special tokens there.
    "chatml": ChatFormat(
        name="chatml",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        assistant="<|im_start|>assistant\n",
        end="<|im_end|>\n",
        stop=("<|im_end|>", "<|im_start|>"),
    ),
    # Plain-text markers for base models without chat tokens (the Dromedary style).
    "plain": ChatFormat(
        name="plain",
        system="### System:\n{content}\n\n",
        user="### User:\n{content}\n\n",
        assistant="### Assistant:\n",
        end="\n\n",
        stop=("\n### User:", "\n### System:", "\n### Assistant:"),
    ),
}


def get_format(name: str) -> ChatFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown chat format {name!r}; known: {', '.join(FORMATS)}") from None
