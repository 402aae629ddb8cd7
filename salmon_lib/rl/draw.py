"""Which principles the reward model reads for an answer, chosen at RL time.

From a principle file (default principles/rl.yaml), SALMON's draw: `num_principles` principles by
weight without replacement, weights multiplied for principles boosted by the prompt's type, and
the interventions that apply to that type always shown first. From an inline list, the listed texts
for every answer (how stage 06's arms differ only in principle text).

The draw is keyed by (seed, round, prompt id) through SHA-256, never Python's `hash()` (salted per
process), so a resumed or repeated run draws the same principles; every answer to one prompt in
one round (a GRPO/RLOO group, the N answers DPO ranks) shares one draw, so the group compares like
with like.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Sequence

from ..paths import resolve_file


@dataclasses.dataclass(frozen=True)
class Drawn:
    principles: tuple[str, ...]  # names of the drawn principles (inline: the texts), recorded with the rollout
    texts: tuple[str, ...]  # what the reward model reads, interventions first
    interventions: tuple[str, ...] = ()  # names of the interventions shown before them


class PrincipleDraw:
    def __init__(self, source: str | Sequence[str], num_principles: int = 3, interventions: bool = True,
                 seed: int = 0):
        from ..principles import load_principles

        self.seed, self.k, self.use_interventions = seed, num_principles, interventions
        if isinstance(source, str):
            self.path = resolve_file("principles", source)
            self.set = load_principles(self.path)
            self.inline: tuple[str, ...] = ()
            self.digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        else:
            self.path, self.set = None, None
            self.inline = tuple(" ".join(t.split()) for t in source)
            self.digest = hashlib.sha256("\n".join(self.inline).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        """What the stats and policy_info.json record about the principles."""
        if self.set is None:
            return {"inline": list(self.inline), "sha256": self.digest}
        return {"file": str(self.path), "sha256": self.digest, "num_principles": self.k,
                "interventions": self.use_interventions}

    def signature(self) -> dict:
        """What the draw depends on: the text (hash), never where the file happens to live."""
        return {k: v for k, v in self.describe().items() if k != "file"}

    def draw(self, prompt_id: str, round_: int, prompt_type: str | None = None) -> Drawn:
        if self.set is None:
            return Drawn(self.inline, self.inline)
        key = hashlib.sha256(f"{self.seed}\x1f{round_}\x1f{prompt_id}".encode()).digest()
        rng = random.Random(int.from_bytes(key[:8], "big"))
        # p_continue=1 with the "clip" cap gives exactly k principles: SALMON's fixed 3.
        chosen = self.set.sample(rng, max_k=self.k, p_continue=1.0, p_negate=0.0, prompt_type=prompt_type)
        ivs = self.set.interventions_for(prompt_type) if self.use_interventions else []
        return Drawn(tuple(p.name for p, _ in chosen),
                     tuple(iv.text for iv in ivs) + tuple(p.definition for p, _ in chosen),
                     tuple(iv.name for iv in ivs))
