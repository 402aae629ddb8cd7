"""Reward per principle: every answer scored by the reward model under each principle alone, under
stage 05's RL-time draw, and under each controllability set.

The reward model reads the bare instruction and the answer, never the chat prompt. All principle
columns of one answer are scored in one `score` call, so the reward model runs the long (answer,
instruction) prefix once and only the short principle suffixes once per column. A column that
draws principles (the RL-time pool, a principle file of the controllability experiment) draws
once per prompt, seeded by the prompt id, so every policy is scored under the same principles for
the same prompt and the comparison stays paired.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..paths import resolve_file
from ..principles import load_principles
from ..rl.draw import PrincipleDraw
from .prompts import EvalPrompt
from .runinfo import recorded_params

RL_DRAW = "RL-time draw"


@dataclasses.dataclass(frozen=True)
class PrincipleSource:
    """Principles drawn per prompt exactly as stage 05 draws them (its `PrincipleDraw`): from a file,
    the interventions and `num_principles` principles by weight; from an inline list, all its texts."""

    name: str
    draw: PrincipleDraw

    @classmethod
    def from_spec(cls, name: str, spec: str | Sequence[str], rl: Mapping) -> "PrincipleSource":
        """`rl`: stage 05's draw settings (num_principles, interventions, seed)."""
        return cls(name, PrincipleDraw(spec if isinstance(spec, str) else list(spec), rl["num_principles"],
                                       rl["interventions"], rl["seed"]))

    def for_prompt(self, prompt: EvalPrompt) -> list[str]:
        return list(self.draw.draw(prompt.id, 0, prompt.question_type).texts)

    def train_arg(self) -> str | list[str]:
        """What stage 05's `train_arm` takes, and what the report shows: the file, or the texts."""
        return str(self.draw.path) if self.draw.path is not None else list(self.draw.inline)


def draw_settings(run_dir: str | Path, seed: int) -> dict:
    """How stage 05 drew principles in this run (its parameters in run.yaml), else its defaults."""
    from ..rl.config import RLConfig

    recorded, defaults = recorded_params(run_dir, "rl"), RLConfig()
    return {"principles": recorded.get("principles", defaults.principles),
            "num_principles": recorded.get("num_principles", defaults.num_principles),
            "interventions": recorded.get("interventions", defaults.interventions),
            "seed": recorded.get("seed", seed)}


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


def score_table(reward, answers: Mapping[str, Sequence[tuple[str, bool]]], prompts: Sequence[EvalPrompt],
                columns: Mapping[str, Column], batch_size: int = 16,
                progress: bool = False) -> dict[str, dict[str, list[float]]]:
    """{policy: {column: [score per prompt]}} for each policy's answers (one (text, finished) per
    prompt; an answer cut at the token limit is scored as unfinished)."""
    principles = {c: [fn(p) for p in prompts] for c, fn in columns.items()}
    # Two policies often give the same answer (greedy-like short ones): it is scored once, so equal
    # answers get equal scores rather than ones that differ by batch padding's rounding.
    index: dict[tuple, int] = {}
    where = []
    for policy, texts in answers.items():
        for i, (p, (text, finished)) in enumerate(zip(prompts, texts)):
            for c in columns:
                key = (p.prompt, text, tuple(principles[c][i]), finished)
                where.append((policy, c, index.setdefault(key, len(index))))
    scores = reward.score([(p, t, list(ps), f) for p, t, ps, f in index], batch_size=batch_size, progress=progress)
    out: dict[str, dict[str, list[float]]] = {pol: {c: [] for c in columns} for pol in answers}
    for policy, c, k in where:
        out[policy][c].append(float(scores[k]))
    return out


def fixed(texts: Sequence[str]) -> Column:
    return lambda _prompt: list(texts)
