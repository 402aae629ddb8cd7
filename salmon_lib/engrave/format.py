"""What the engraved model is trained on, and the record of it that later stages read.

Engraving removes the rules and exemplars from the prompt: the model sees a short system prompt, the
user's message and its own earlier answer. Which system prompt is used alternates between variants
(a bare overview, and the overview followed by one self-introduction exchange), so the model does
not depend on one exact wording. RL and evaluation must prompt the model exactly the same way, so
the chat format, the system variants and the turn terminator are saved beside the adapter
(`chat_format.json`) and read back with `load_chat_spec`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from ..chat_format import ChatFormat, get_format
from ..io import DataError, atomic_write_json, read_json

SPEC_FILE = "chat_format.json"

SYSTEM_VARIANTS = ("concise", "standard")
# introduces the principles a guided prompt adds to the system message (principle-context distillation)
GUIDE_HEADER = "In this conversation, write every reply so that it follows these principles:"


def system_overview(name: str, creator: str) -> str:
    return (
        f"You are {name}, an AI assistant built by {creator}. You talk with one user at a time and aim to be "
        "useful, honest and harmless: you answer clearly, say when you are unsure or do not know, and decline "
        "to help with anything dangerous or unethical. Your knowledge comes from training data with a cut-off "
        "date, and you cannot browse the web or see the current time."
    )


def introduction(name: str, creator: str) -> tuple[str, str]:
    """The self-introduction exchange that the `standard` variant puts before the user's message."""
    return (
        "Hi! Could you tell me a little about yourself first?",
        f"Hello! I am {name}, an AI assistant made by {creator}. I can answer questions, explain ideas, help "
        "with writing and code, and think problems through step by step. I try to be accurate and to say so "
        "when I am not sure. What can I do for you?",
    )


@dataclasses.dataclass(frozen=True)
class ChatSpec:
    """Everything needed to prompt the engraved model the way it was trained."""

    chat_format: str  # name of the format in salmon_lib.chat_format
    assistant_name: str
    assistant_creator: str
    system_variants: tuple[str, ...]  # cycled by example index in training
    completion_end: str  # appended to every training answer: what a finished answer ends with

    @property
    def format(self) -> ChatFormat:
        return get_format(self.chat_format)

    def messages(self, user: str, variant: str) -> list[dict]:
        if variant not in SYSTEM_VARIANTS:
            raise ValueError(f"unknown system variant {variant!r}; known: {', '.join(SYSTEM_VARIANTS)}")
        msgs = [{"role": "system", "content": system_overview(self.assistant_name, self.assistant_creator)}]
        if variant == "standard":
            ask, answer = introduction(self.assistant_name, self.assistant_creator)
            msgs += [{"role": "user", "content": ask}, {"role": "assistant", "content": answer}]
        return msgs + [{"role": "user", "content": user}]

    def prompt(self, user: str, variant: str | None = None) -> str:
        """The generation prompt for `user`; later stages use the first (concise) variant by default."""
        return self.format.render(self.messages(user, variant or self.system_variants[0]))

    def guided_prompt(self, user: str, principles: Sequence[str]) -> str:
        """The generation prompt with `principles` added to the system message: what principle-context
        distillation samples from before it trains on the answers under the plain prompt."""
        msgs = self.messages(user, self.system_variants[0])
        rules = "\n".join(f"- {' '.join(p.split())}" for p in principles)
        msgs[0] = {**msgs[0], "content": f"{msgs[0]['content']}\n\n{GUIDE_HEADER}\n{rules}"}
        return self.format.render(msgs)

    def example(self, index: int, user: str, response: str, finished: bool = True) -> dict:
        """One prompt-completion training record; the variant alternates with the index. An answer
        cut at a token limit (`finished` false) gets no turn end: it never decided to stop there."""
        variant = self.system_variants[index % len(self.system_variants)]
        end = self.completion_end if finished else ""
        return {"prompt": self.prompt(user, variant), "completion": response + end}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_chat_spec(chat_format: str, eos_token: str | None, assistant_name: str, assistant_creator: str,
                   system_variants: Sequence[str] = SYSTEM_VARIANTS) -> ChatSpec:
    """A finished answer ends with the format's turn end. When that end *is* the tokenizer's EOS
    (ChatML's <|im_end|>), it is cut there, so TRL does not append a second EOS after its newline;
    otherwise TRL appends the EOS after the format's end, and generation stops on either."""
    fmt = get_format(chat_format)
    end = fmt.end
    if eos_token and end.rstrip().endswith(eos_token):
        end = end.rstrip()
    for v in system_variants:
        if v not in SYSTEM_VARIANTS:
            raise ValueError(f"unknown system variant {v!r}; known: {', '.join(SYSTEM_VARIANTS)}")
    return ChatSpec(chat_format, assistant_name, assistant_creator, tuple(system_variants), end)


def save_chat_spec(spec: ChatSpec, folder: str | Path) -> Path:
    path = Path(folder) / SPEC_FILE
    atomic_write_json(path, {**spec.to_dict(), "example_prompt": spec.prompt("<user message>")})
    return path


def load_chat_spec(folder: str | Path) -> ChatSpec:
    """Read the spec an engraved model was trained with (`sft/chat_format.json`)."""
    path = Path(folder) / SPEC_FILE
    data = read_json(path)
    fields = {f.name for f in dataclasses.fields(ChatSpec)}
    missing = sorted(fields - set(data))
    if missing:
        raise DataError(f"{path}: missing field(s) {', '.join(missing)}")
    try:
        get_format(data["chat_format"])
    except ValueError as err:
        raise DataError(f"{path}: field 'chat_format': {err}") from None
    return ChatSpec(**{k: (tuple(v) if k == "system_variants" else v) for k, v in data.items() if k in fields})


def chat_spec_for(model_folder: str | Path, chat_format: str | None = None) -> ChatSpec:
    """The spec a trained model (stage 02's `sft/`, or a policy folder) must be prompted with: every
    stage that prompts a trained model renders with `chat_spec_for(folder).prompt(user)`.
    `chat_format` is what a config asks for: None takes the trained one, and any other format than
    the trained one is an error naming both (a model prompted in another format than it was
    trained on answers worse, without any error)."""
    from ..config import ConfigError

    spec = load_chat_spec(model_folder)
    if chat_format is not None and chat_format != spec.chat_format:
        raise ConfigError(f"chat_format: {chat_format!r} was asked for, but {Path(model_folder) / SPEC_FILE} says "
                          f"the model was trained with {spec.chat_format!r}; leave chat_format unset (None) to prompt "
                          "it as it was trained")
    return spec
