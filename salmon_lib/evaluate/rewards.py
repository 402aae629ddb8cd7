"""Reward per principle: every answer scored by the reward model under each principle alone, under
the RL-time draw, and under each controllability set.

The reward model reads the bare instruction and the answer, never the chat prompt. All principle
columns of one answer are scored in one `score` call, so the reward model runs the long (answer,
instruction) prefix once and only the short principle suffixes once per column. A column that
draws principles (the RL-time pool, a principle file of the controllability experiment) draws
once per prompt, seeded by the prompt id, so every policy is scored under the same principles for
the same prompt and the comparison stays paired.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..paths import resolve_file
from ..principles import PrincipleSet, load_principles
from .prompts import EvalPrompt

RL_DRAW = "RL-time draw"
# SALMON's RL reward shows the interventions and three principles drawn by weight (boosted by the
# prompt's type), none negated; stage 05 draws the same way.
DRAW_SIZE = 3


def rl_draw(pset: PrincipleSet, prompt: EvalPrompt, seed: int) -> list[str]:
    """The interventions that apply to the prompt's type, then a seeded weighted draw of principles."""
    digest = hashlib.sha256(f"{seed}|{prompt.id}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    chosen = pset.sample(rng, max_k=DRAW_SIZE, p_continue=1.0, p_negate=0.0, prompt_type=prompt.question_type)
    return [iv.text for iv in pset.interventions_for(prompt.question_type)] + [p.text(neg) for p, neg in chosen]


@dataclasses.dataclass(frozen=True)
class PrincipleSource:
    """A principle file (drawn per prompt like stage 05) or an inline list of texts (all shown)."""

    name: str
    pset: PrincipleSet | None = None
    texts: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, name: str, spec: str | Sequence[str]) -> "PrincipleSource":
        if isinstance(spec, str):
            return cls(name, pset=load_principles(resolve_file(f"controllability.{name}", spec)))
        return cls(name, texts=tuple(" ".join(t.split()) for t in spec))

    def for_prompt(self, prompt: EvalPrompt, seed: int) -> list[str]:
        return rl_draw(self.pset, prompt, seed) if self.pset is not None else list(self.texts)

    def train_arg(self) -> str | list[str]:
        """What stage 05's `train_arm` takes: the file's path, or the list of texts."""
        return str(Path(self.pset.path).resolve()) if self.pset is not None else list(self.texts)


def principle_columns(files: Sequence[str]) -> dict[str, str]:
    """{label: definition} of every principle of the files, one text once; a name that two files
    define differently is labelled with its file's stem."""
    out: dict[str, str] = {}
    texts = set()
    for f in files:
        pset = load_principles(resolve_file("reward_principles", f))
        for p in pset.principles:
            text = p.text()
            if text in texts:
                continue
            label = p.name if p.name not in out else f"{p.name} ({Path(f).stem})"
            out[label] = text
            texts.add(text)
    return out


Column = Callable[[EvalPrompt], list[str]]


def score_table(reward, answers: Mapping[str, Sequence[str]], prompts: Sequence[EvalPrompt],
                columns: Mapping[str, Column], batch_size: int = 16,
                progress: bool = False) -> dict[str, dict[str, list[float]]]:
    """{policy: {column: [score per prompt]}} for each policy's answers (one per prompt)."""
    principles = {c: [fn(p) for p in prompts] for c, fn in columns.items()}
    # Two policies often give the same answer (greedy-like short ones): it is scored once, so equal
    # answers get equal scores rather than ones that differ by batch padding's rounding.
    index: dict[tuple, int] = {}
    where = []
    for policy, texts in answers.items():
        for i, (p, text) in enumerate(zip(prompts, texts)):
            for c in columns:
                key = (p.prompt, text, tuple(principles[c][i]))
                where.append((policy, c, index.setdefault(key, len(index))))
    scores = reward.score([(p, t, list(ps)) for p, t, ps in index], batch_size=batch_size, progress=progress)
    out: dict[str, dict[str, list[float]]] = {pol: {c: [] for c in columns} for pol in answers}
    for policy, c, k in where:
        out[policy][c].append(float(scores[k]))
    return out


def fixed(texts: Sequence[str]) -> Column:
    return lambda _prompt: list(texts)
