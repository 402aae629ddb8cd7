"""Measures read from a policy's own token probabilities: KL to SFT, and HHH accuracy by likelihood.

KL(policy || SFT) is estimated along each policy's own sampled answers, summing the exact
per-position KL of their next-token distributions (`generation/token_kl.py`: unbiased for the
tempered sequence KL and never negative). It needs full distributions, which only the HF backend
returns: the answering generator computes it when it is HF, a HF generator on the side otherwise.

HHH (Dromedary's evaluation, in the policy's own terms): for each pair, the policy reads the
conversation prompted as it was trained and the answer it assigns the higher mean log-probability
per token is its pick; accuracy is reported per category.
"""

from __future__ import annotations

import logging
from typing import Sequence

log = logging.getLogger(__name__)


def policy_kls(gen, model: str, policies: Sequence, answers: dict[str, list[dict]], prompts: Sequence[str],
               reference: str, temperature: float, processes: int = 1,
               progress: bool = False) -> dict[str, list[float]]:
    """{policy name: KL(policy || reference adapter) per answer, in nats}, every policy's answers
    (`{token_ids}` per prompt) read under its own prompt; the reference policy itself gets zeros."""
    from contextlib import nullcontext

    from ..generation import make_generator
    from ..models import ModelConfig

    side = nullcontext(gen) if gen.backend == "hf" else make_generator(
        ModelConfig(spec=model), "hf", processes=processes, progress=progress)
    out = {}
    with side as hf:
        for pol in policies:
            if pol.adapter == reference:
                out[pol.name] = [0.0] * len(prompts)
                continue
            out[pol.name] = hf.token_kl([pol.prompt(q) for q in prompts], [s["token_ids"] for s in answers[pol.name]],
                                        reference, temperature, adapter=pol.adapter)
    return out


def hhh_correct(gen, items: Sequence[dict], render, adapter: str | None) -> list[float]:
    """1.0 where the policy gives the preferred answer the higher mean log-prob per token, else 0.0
    (0.5 on an exact tie). `render(user)` is the policy's prompt; items from `salmon_lib.hhh_data.load_hhh`."""
    prompts = [render(it["prompt"]) for it in items for _ in (0, 1)]
    answers = [a for it in items for a in (it["chosen"], it["rejected"])]
    sums = gen.sequence_logprobs(prompts, answers, adapter=adapter)
    lengths = [max(1, len(ids)) for ids in gen.encode_pieces(answers)]
    means = [s / n for s, n in zip(sums, lengths)]
    return [1.0 if means[2 * k] > means[2 * k + 1] else 0.5 if means[2 * k] == means[2 * k + 1] else 0.0
            for k in range(len(items))]
