"""`python -m salmon_lib steer`: try a principle in seconds, before any RL.

The run's SFT model writes N candidate answers to one prompt; the reward model scores each under
the given principles and the candidates are printed best first. That is best-of-N reranking, the
no-training preview of what RL under those principles would push towards. With `--guidance-scale`
> 1 the candidates are sampled the way stage 05's guided context distillation samples (principles
in the system prompt, guided away from the contrastive reward's contrast of each, or from the
`--contrast` principles, as stage 06's `arm_contrast: other_set` arms are), which is the per-token
form of the policy that reward's RL would reach.

    python -m salmon_lib steer --run outputs/demo --principles "The response is one sentence." \
        --prompt "Why is the sky blue?"
    python -m salmon_lib steer --run outputs/demo --principles principles/concise.yaml --prompt "..." --n 8 --json
    python -m salmon_lib steer --run outputs/demo --principles principles/concise.yaml --prompt "..." \
        --guidance-scale 6 --contrast principles/comprehensive.yaml
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from ..options import GUIDANCE_PLAUSIBILITY

log = logging.getLogger(__name__)


def principle_texts(values: Sequence[str]) -> tuple[list[str], list]:
    """(texts, loaded principle files): each value is a principle file (its interventions, then
    every principle's definition) or a principle text."""
    from ..paths import resolve_file
    from ..principles import load_principles

    out: list[str] = []
    sets = []
    for value in values:
        if value.endswith((".yaml", ".yml")):
            pset = load_principles(resolve_file("--principles", value))
            sets.append(pset)
            out += [iv.text for iv in pset.interventions] + [p.text() for p in pset.principles]
        elif value.strip():
            out.append(" ".join(value.split()))
    if not out:
        raise ValueError("give at least one principle (a text or a principle file)")
    return out, sets


def steer(run_dir: str | Path, principles: Sequence[str], prompt: str, n: int = 4, reward: str | None = None,
          model: str | None = None, temperature: float = 0.7, max_new_tokens: int = 256, seed: int = 0,
          backend: str = "hf", principle_files: Sequence = (), top_p: float = 1.0,
          guidance_scale: float = 1.0, guidance_plausibility: float = GUIDANCE_PLAUSIBILITY,
          contrast: Sequence[str] = ()) -> list[dict]:
    """SFT's `n` answers to `prompt`, each `{response, finished, score}` under `principles`, best
    first (an answer cut at `max_new_tokens` is scored as unfinished).
    `principle_files`: loaded principle files the texts come from (a contrastive reward learns
    their negations from them). `guidance_scale` > 1: guided candidates (the module's docstring),
    drawn among the tokens within `guidance_plausibility` of the most likely one, away from the
    `contrast` texts (default: the contrastive reward's contrast of each principle)."""
    from ..generation import make_generator
    from ..models import ModelConfig
    from ..reward import load_reward
    from .policies import find_policy
    from .runinfo import base_model_of

    run = Path(run_dir)
    sft = find_policy(run, "sft")
    rm = load_reward(reward or run / "rm")
    for pset in principle_files:
        rm.learn_principles(pset)
    rendered, guided = sft.prompt(prompt), {}
    if contrast and guidance_scale == 1:
        raise ValueError("--contrast is what guided candidates are sampled away from; give --guidance-scale > 1")
    if guidance_scale != 1:
        if not contrast and not hasattr(rm, "contrast_texts"):
            raise ValueError(f"--guidance-scale guides away from each principle's contrast, which only a contrastive "
                             f"reward knows; {reward or run / 'rm'} is a {type(rm).__name__} (or name the "
                             f"principles to guide away from with --contrast)")
        if backend != "hf":
            raise ValueError(f"--guidance-scale samples with the hf backend, not {backend}")
        rendered = sft.spec.guided_prompt(prompt, principles)
        away = list(contrast) or rm.contrast_texts(principles)
        guided = {"contrast_prompts": [sft.spec.guided_prompt(prompt, away)],
                  "guidance_scale": guidance_scale, "guidance_plausibility": guidance_plausibility}
    with make_generator(ModelConfig(spec=model or base_model_of(run)), backend) as gen:
        comps = gen.generate([rendered], n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             stop=sft.spec.format.stop, seed=seed, adapter=sft.adapter, **guided)[0]
    answers = [(c.text.strip(), c.finish_reason == "stop") for c in comps]
    scores = rm.score([(prompt, a, list(principles), done) for a, done in answers])
    ranked = sorted(zip(answers, scores), key=lambda x: -x[1])
    return [{"response": a, "finished": done, "score": float(s)} for (a, done), s in ranked]


def _run_cli(args) -> int:
    from ..arguments import options_from_args
    from ..io import DataError
    from ..models import ModelLoadError
    from .cli_options import SteerOptions

    opts = options_from_args(SteerOptions, args, "steer")
    try:
        principles, files = principle_texts(opts.principles)
        contrast = principle_texts(opts.contrast)[0] if opts.contrast else []
        ranked = steer(opts.run, principles, opts.prompt, opts.n, opts.reward, opts.model, opts.temperature,
                       opts.max_new_tokens, opts.seed, opts.backend, files, top_p=opts.top_p,
                       guidance_scale=opts.guidance_scale, guidance_plausibility=opts.guidance_plausibility,
                       contrast=contrast)
    except (DataError, ModelLoadError, ValueError) as err:
        log.error("%s", err)
        return 2
    if opts.json:
        json.dump({"best": ranked[0], "candidates": ranked}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    print("Principles:\n" + "\n".join(f"- {p}" for p in principles))
    for i, c in enumerate(ranked, 1):
        cut = "" if c["finished"] else "  (cut at --max-new-tokens)"
        print(f"\n#{i}  score {c['score']:+.3f}{'  (best)' if i == 1 else ''}{cut}\n{c['response']}")
    return 0


def add_cli(sub) -> None:
    from ..arguments import add_arguments
    from .cli_options import SteerOptions

    p = sub.add_parser("steer", help="rerank the SFT model's candidate answers under your principles (no training)")
    add_arguments(p, SteerOptions)
    p.set_defaults(func=_run_cli)
