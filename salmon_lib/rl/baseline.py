"""The SFT policy's reward at the start (`rl_baseline.json`): one answer to each of the first
`baseline_prompts` training prompts, scored under the same principle draw as training uses, summed
up per prompt type. The RM term of the reward is normalised against it, and every arm of stage 06
shares it, so their rewards are on one scale. It is measured again only when its signature (SFT
adapter, reward, principles, prompts and sampling settings) changes.

An arm whose settings differ from stage 05's (another seed, cap or temperature) keeps its baseline
in `rl_arms/baseline-<digest>.json`: overwriting stage 05's file would make the finished stage stale.
"""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_write_json, read_json
from .checkpoint import signature_digest, step_seed
from .shaping import RewardFunction, Shaping, baseline_stats

BASELINE_FILE = "rl_baseline.json"
BASELINE_ROUND = -1  # the principle-draw round of the baseline answers (training rounds count from 0)


def baseline_digest(cfg, inputs: dict, draw, records: list[dict]) -> str:
    """What the baseline depends on: `inputs` (SFT, reward), the stage's principle draw, the first
    `baseline_prompts` training prompts and the sampling settings."""
    return signature_digest({
        "inputs": inputs, "principles": draw.signature(), "prompts": [r["id"] for r in records[:cfg.baseline_prompts]],
        "settings": {k: getattr(cfg, k) for k in ("seed", "max_new_tokens", "temperature", "top_p", "model",
                                                  "quantization", "dtype")}})


def _stored(path: Path, digest: str) -> dict | None:
    if path.is_file():
        old = read_json(path)
        if old.get("signature") == digest:
            return old
    return None


def load_or_measure(cfg, ctx, sampler, reward, inputs: dict, arm: str | None = None) -> dict:
    """The baseline for `ctx`'s prompts and principles: stage 05's `rl_baseline.json` when it still
    holds, else (an arm) its own file under rl_arms/, else measured and written there."""
    run = Path(cfg.run_dir)
    records = ctx.records[:cfg.baseline_prompts]
    digest = baseline_digest(cfg, inputs, ctx.draw, records)
    path = run / BASELINE_FILE if arm is None else run / "rl_arms" / f"baseline-{digest[:12]}.json"
    for candidate in {run / BASELINE_FILE, path}:
        old = _stored(candidate, digest)
        if old is not None:
            return old
    if not records:  # baseline_prompts 0 (allowed without normalise_rm): nothing to normalise against
        return {"overall": None, "by_type": {}, "n": 0, "mean_tokens": None, "finished": None,
                "reward": inputs.get("reward"), "principles": ctx.draw.describe(), "signature": digest}
    completions = sampler.sample([ctx.spec.prompt(r["prompt"]) for r in records], 1, cfg.max_new_tokens,
                                 cfg.temperature, cfg.top_p, seed=step_seed(cfg.seed, BASELINE_ROUND, "rollout"),
                                 tag="baseline")
    samples = ctx.samples(records, completions, BASELINE_ROUND)
    raw = RewardFunction(reward, Shaping(normalise_rm=False), batch_size=cfg.score_batch_size).raw_scores(samples)
    baseline = {
        **baseline_stats(raw, [s.question_type for s in samples]),
        "n": len(raw),
        "mean_tokens": sum(s.tokens for s in samples) / len(samples),
        "finished": sum(s.finished for s in samples) / len(samples),
        "reward": inputs.get("reward"),
        "principles": ctx.draw.describe(),
        "signature": digest,
    }
    atomic_write_json(path, baseline)
    return baseline
