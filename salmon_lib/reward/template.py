"""The reward model's input, defined once: training, scoring, evaluation and RL all build it here.

Layout (SALMON's order, in this project's words): the response comes first, then the instruction,
then the principles as bullet lines, then a fixed closing line whose last token carries the scalar.
Everything up to the principle bullets depends only on (instruction, response), so at scoring
time that prefix is run once and its KV cache reused for every principle set (`score.py`).

Each piece is tokenized on its own and the token ids are concatenated. Tokenizing the whole string
at once could merge tokens across a piece boundary, and then the shared prefix would not be a
prefix of the full input; concatenating ids makes the prefix/suffix split exact by construction,
and lets the instruction and response be truncated in tokens without re-decoding.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from ..io import DataError, atomic_write_json, read_json

TEMPLATE_FILE = "template.json"


@dataclasses.dataclass(frozen=True)
class RMTemplate:
    intro: str = (
        "You are reviewing one reply written by an AI assistant. First comes the reply, then the request "
        "it answers, then the criteria it should be judged by.\n\n"
    )
    response_header: str = "[Reply]\n"
    instruction_header: str = "\n\n[Request]\n"
    criteria_header: str = "\n\n[Criteria]\n"
    bullet: str = "- {text}\n"
    # Shown when no principle is given (human-preference pre-training, the "no principle" evaluation).
    no_criteria: str = "- No particular criteria: judge the reply as a whole.\n"
    closing: str = "\n[Verdict]\nHow well the reply meets every criterion above:"
    max_prompt_tokens: int = 256  # the instruction keeps its last tokens (the question sits at the end)
    max_response_tokens: int = 768  # the response keeps its first tokens
    version: int = 1

    def principle_block(self, principles: Sequence[str]) -> str:
        if not principles:
            return self.no_criteria
        return "".join(self.bullet.format(text=" ".join(p.split())) for p in principles)

    def render(self, prompt: str, response: str, principles: Sequence[str]) -> str:
        """The untruncated input as text, for reading; the model sees `encode`'s ids."""
        return (self.intro + self.response_header + response + self.instruction_header + prompt
                + self.criteria_header + self.principle_block(principles) + self.closing)

    def encode_prefix(self, tok, prompt: str, response: str) -> tuple[list[int], bool]:
        """Ids of everything before the principles, and whether anything was truncated."""
        resp = _ids(tok, response)
        instr = _ids(tok, prompt)
        cut = len(resp) > self.max_response_tokens or len(instr) > self.max_prompt_tokens
        resp = resp[: self.max_response_tokens]
        instr = instr[len(instr) - self.max_prompt_tokens:] if len(instr) > self.max_prompt_tokens else instr
        bos = [tok.bos_token_id] if _adds_bos(tok) else []
        ids = (bos + _ids(tok, self.intro + self.response_header) + resp + _ids(tok, self.instruction_header)
               + instr + _ids(tok, self.criteria_header))
        return ids, cut

    def encode_suffix(self, tok, principles: Sequence[str]) -> list[int]:
        return _ids(tok, self.principle_block(principles) + self.closing)

    def encode(self, tok, prompt: str, response: str, principles: Sequence[str]) -> list[int]:
        return self.encode_prefix(tok, prompt, response)[0] + self.encode_suffix(tok, principles)

    def check(self, tok) -> None:
        """The scalar is read at the last token; if that token were the pad token, a trainer that
        finds "the last non-pad token" would read a different position than the scorer does."""
        last = _ids(tok, self.closing)[-1:]
        if not last or last[0] == tok.pad_token_id:
            raise ValueError("the template's closing line must end in a token other than the pad token")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, folder: str | Path) -> None:
        atomic_write_json(Path(folder) / TEMPLATE_FILE, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "RMTemplate":
        """The template a reward model was trained with (saved beside its adapter)."""
        path = Path(folder) / TEMPLATE_FILE
        if not path.is_file():
            raise DataError(f"{path}: missing; {folder} is not a reward model saved by this project")
        data = read_json(path, "reward model template")
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object of template fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"{path}: unknown template field(s) {', '.join(unknown)} (saved by a newer version?)")
        return cls(**data)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"] if text else []


def _adds_bos(tok) -> bool:
    """Whether the tokenizer puts a BOS token in front on its own (Llama-2 does, SmolLM2 does not):
    keep whatever the base model was pre-trained with."""
    if tok.bos_token_id is None:
        return False
    return tok("a", add_special_tokens=True)["input_ids"][:1] == [tok.bos_token_id]
