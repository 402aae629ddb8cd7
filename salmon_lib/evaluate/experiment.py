"""The controllability experiment, fixed before it runs: does the principle text alone move the policy?

Stage 06's config decides everything in advance: the primary endpoint (`controllability_measure`,
e.g. answer tokens), the direction the first set's arm should move it against the second's
(`controllability_direction`), the prompts (`endpoint_prompts`, none of them trained on by any arm),
the answers per prompt (`endpoint_samples`, averaged per prompt before pairing), their cap
(`endpoint_max_new_tokens`, long enough that most answers finish), the engine's weights
(`endpoint_dtype`) and the `seeds`. For every seed
the arms are trained from SFT with stage 05's code (same prompts and budget, only the principle
text differs) and answer the same prompts with the same sampling seed; the effect is the paired
difference per prompt with its t-interval (primary), BCa and percentile intervals. The pooled
estimate averages each prompt's difference over the seeds; the across-seeds interval treats the
seeds' effects as the sample (training noise included, few degrees of freedom).

"Moved in the named direction" is said of a seed only when its t-interval excludes zero on the named
side; an interval on the other side is reported as moving against it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import DataError
from .prompts import EvalPrompt, heldout_ids, pool_by_id
from .stats import describe_effect, paired_effect


def seed_list(cfg) -> list[int]:
    return list(cfg.seeds) or [cfg.seed]


def arm_name(set_name: str, seed: int, seeds: Sequence[int]) -> str:
    """The first seed's arm is rl_arms/<set>/, which the rest of stage 06 compares with every other
    policy; later seeds' are rl_arms/<set>.seed<k>/ (policies.REPLICATE), the experiment's alone."""
    return set_name if seed == seeds[0] else f"{set_name}.seed{seed}"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    measure: str
    direction: str  # "lower" / "higher": where the first set's arm should lie against the second's
    prompts: int
    samples: int
    max_new_tokens: int
    dtype: str = "float32"  # the answering engine's weights, resolved for this machine

    @classmethod
    def of(cls, cfg) -> "Endpoint":
        from ..mixed_precision import sampling_dtype

        return cls(cfg.controllability_measure, cfg.controllability_direction, cfg.endpoint_prompts,
                   cfg.endpoint_samples, cfg.endpoint_max_new_tokens or cfg.max_new_tokens,
                   sampling_dtype(cfg.endpoint_dtype, option="endpoint_dtype"))


def endpoint_prompts(run_dir: str | Path, n: int) -> tuple[list[EvalPrompt], dict]:
    """`n` prompts no arm trained on: stage 05's held-out slice first, then prompts outside its
    training list (those stages 01 and 03 answered: SFT saw them, which both arms share)."""
    from ..io import read_json

    run = Path(run_dir)
    pool = pool_by_id(run)
    heldout, source = heldout_ids(run, pool)
    trained: set[str] = set()
    split = run / "rl_prompts.json"
    if split.is_file():
        trained = {str(i) for i in read_json(split).get("train", [])}
    extra = [i for i in pool if i not in trained and i not in heldout]
    ids = (heldout + extra)[:n] if n else heldout + extra
    if len(ids) < 2:
        raise DataError(f"{run}: {len(ids)} prompt(s) left that no arm trained on; the experiment needs at least 2")
    prompts = [EvalPrompt(i, pool[i]["prompt"], pool[i]["question_type"], source) for i in ids]
    used = min(len(heldout), len(ids))
    return prompts, {"n": len(ids), "heldout": used, "not_rl_trained": len(ids) - used, "asked": n}


def prompt_means(samples: Sequence[Sequence[dict]], prompts: Sequence[EvalPrompt], measure: str) -> list[float | None]:
    """Per prompt, the endpoint averaged over its answers (None where it applies to none)."""
    from .behaviour import answer_measures

    out = []
    for q, answers in zip(prompts, samples):
        vals = [answer_measures(q.prompt, a["text"], a["num_tokens"], a["finished"])[measure] for a in answers]
        vals = [v for v in vals if v is not None]
        out.append(float(np.mean(vals)) if vals else None)
    return out


def across_seeds(effects: Sequence[float], confidence: float) -> dict | None:
    """t-interval over the seeds' effects: each seed is one replicate of training."""
    from scipy import stats

    xs = [e for e in effects if e is not None]
    if len(xs) < 2:
        return None
    mean, sd = float(np.mean(xs)), float(np.std(xs, ddof=1))
    ci = [mean, mean] if sd == 0 else [float(v) for v in stats.t.interval(
        confidence, len(xs) - 1, loc=mean, scale=sd / math.sqrt(len(xs)))]
    return {"n_seeds": len(xs), "mean": mean, "ci_t": ci, "sd": sd}


def analyse(values: Mapping[int, Mapping[str, Sequence[float | None]]], a: str, b: str, endpoint: Endpoint,
            label: str, n_boot: int, confidence: float, reference: Sequence[float | None] | None = None) -> dict:
    """`values[seed][set]`: the endpoint per prompt. The primary comparison, a's arm minus b's, per
    seed, pooled over seeds (each prompt's difference averaged over them) and across seeds."""
    ci = dict(n_boot=n_boot, confidence=confidence)
    per_seed = {s: paired_effect(v[a], v[b], endpoint.direction, seed=s, **ci) for s, v in values.items()}
    n = len(next(iter(values.values()))[a])
    pooled = paired_effect([_mean_over([values[s][a][i] for s in values]) for i in range(n)],
                           [_mean_over([values[s][b][i] for s in values]) for i in range(n)],
                           endpoint.direction, seed=0, **ci)
    what = f"{a} arm minus {b} arm, {label}"
    verdict = [describe_effect(f"{what}, seed {s}", r) for s, r in per_seed.items()]
    if len(values) > 1:
        verdict.append(describe_effect(f"{what}, pooled over {len(values)} seeds", pooled))
    out = {"a": a, "b": b, "per_seed": {str(s): r for s, r in per_seed.items()}, "pooled": pooled,
           "across_seeds": across_seeds([r["difference"] for r in per_seed.values()], confidence),
           "moved_in_every_seed": all(r["moved"] == "named" for r in per_seed.values()),
           "values": {str(s): {a: list(v[a]), b: list(v[b])} for s, v in values.items()}, "verdict": verdict}
    if reference is not None:
        out["sft"] = {"mean": _mean_over(reference), "values": list(reference)}
    return out


def _mean_over(xs: Sequence[float | None]) -> float | None:
    keep = [x for x in xs if x is not None]
    return float(np.mean(keep)) if keep else None


def run_endpoint(cfg, arms: Mapping[int, Mapping[str, str]], a: str, b: str, progress: bool = True) -> dict:
    """Answer the endpoint prompts with every seed's arms of sets `a` and `b` (and SFT once),
    measure, analyse. `arms[seed][set]`: that seed's arm name under rl_arms/."""
    from ..io import RecordLog
    from .policies import ANSWERS, Sampling, answer, arm_policy, discover, open_generator
    from .report import MEASURE_LABELS

    endpoint = Endpoint.of(cfg)
    prompts, where = endpoint_prompts(cfg.run_dir, endpoint.prompts)
    sft = next(p for p in discover(cfg.run_dir, include_base=False) if p.name == "sft")
    policies = {(s, name): arm_policy(cfg.run_dir, by_set[name]) for s, by_set in arms.items() for name in (a, b)}
    cache = RecordLog(Path(cfg.run_dir) / ANSWERS)
    values: dict[int, dict[str, list]] = {}
    # one call per policy: every engine gets all of its prompts at once; on a CPU one vLLM engine per
    # process takes each policy's adapter merged into its weights (2.6x HF's tokens/s, RESULTS.md)
    with open_generator(cfg.model, cfg.backend, [sft, *policies.values()], cfg.batch_size, progress,
                        processes=cfg.generation_processes, merge_adapters=True, dtype=endpoint.dtype) as gen:
        def measured(policy, seed: int) -> list:
            sampling = Sampling(cfg.temperature, cfg.top_p, endpoint.max_new_tokens, seed)
            return prompt_means(answer(gen, policy, prompts, sampling, cfg.model, cache, n=endpoint.samples,
                                       batch_size=len(prompts), tag=f"endpoint-{endpoint.dtype}"),
                                prompts, endpoint.measure)

        reference = measured(sft, next(iter(arms)))
        for s in arms:
            values[s] = {name: measured(policies[s, name], s) for name in (a, b)}
    out = analyse(values, a, b, endpoint, MEASURE_LABELS[endpoint.measure], cfg.bootstrap, cfg.confidence, reference)
    out["endpoint"] = dataclasses.asdict(endpoint)
    out["prompts"] = where
    out["arms"] = {str(s): dict(by_set) for s, by_set in arms.items()}
    return out
