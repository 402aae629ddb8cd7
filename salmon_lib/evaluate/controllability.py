"""The controllability experiment: does changing only the principle text change the policy?

For each principle set an RL arm is trained by stage 05's own code (`train_arm`: same seed, budget
and prompts, only the principles differ), and a no-training preview picks SFT's best of N answers
under each set with the reward model.
- The behaviour the sets target (e.g. length for concise vs comprehensive), for both: the paired
  difference between the rows' answers to the same prompts, with its interval and effect size.
- The arms' policy x set matrix of mean reward: each arm should score highest under its own set
  (the diagonal), tested per set as a paired difference against every other arm. The preview has
  no such test: each pick is the best under its own set by construction, so its diagonal cannot
  come out negative. Its reward is audited instead (`candidate_audit`): over all of SFT's
  candidates, does the reward's preference for one set over the other follow the targeted measure?
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..config import ConfigError
from ..cpu_threads import threads_per_worker
from .runinfo import recorded_params
from .stats import paired_difference, win_rate

log = logging.getLogger(__name__)

SET_PREFIX = "set:"
ARM_PREFIX = "arm:"


def arm_config(run_dir: str, overrides: Mapping[str, Any], fallback: Mapping[str, Any]):
    """Stage 05's config for the arms: the parameters the runner recorded for this run's stage 05
    (`run.yaml`), else stage 05's defaults plus `fallback` (e.g. the model), then `overrides`."""
    from ..stages import STAGES

    stage = next((s for s in STAGES if s.name == "rl"), None)
    if stage is None:
        raise ConfigError("controllability_arms: stage 05 (rl) is not registered in salmon_lib/stages.py, so no arm "
                          "can be trained; set controllability_arms: false to run the no-training preview only")
    cls = stage.config_class()
    fields = set(cls.__dataclass_fields__)
    recorded = recorded_params(run_dir, "rl")
    params = dict(recorded) if recorded else {k: v for k, v in fallback.items() if k in fields}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"arm_overrides: unknown stage 05 parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(fields))}")
    params.update(overrides)
    params["run_dir"] = run_dir
    where = f"stage 05 parameters from {Path(run_dir) / 'run.yaml'}" if recorded else "stage 05 defaults"
    return cls.from_dict(params, where=f"controllability arms ({where})")


def train_arms(rl_cfg, jobs: Mapping[str, str | list[str]], progress: bool = True, workers: int = 1,
               settings: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict]:
    """One arm per `jobs` entry (arm name -> principles) through stage 05's `train_arm` (skipped
    there when already trained alike), with `rl_cfg` changed by the arm's `settings` (its seed, its
    guidance contrast);
    `workers` > 1 trains that many at once, each in a fresh process, a worker taking the next arm
    as soon as its last one is done (the arms share nothing but the read-only prompt split and
    baseline, which are written first)."""
    try:
        from ..rl.stage import prepare_prompts, train_arm
    except ImportError as err:
        raise ConfigError(f"controllability_arms: stage 05's code cannot be imported ({err}); set "
                          "controllability_arms: false to run the no-training preview only") from None
    configs = {name: dataclasses.replace(rl_cfg, **(settings or {}).get(name, {})) for name in jobs}
    workers = min(workers, len(jobs))
    if workers <= 1:
        out = {}
        for name, principles in jobs.items():
            log.info("controllability arm %r: training with stage 05's code", name)
            out[name] = train_arm(configs[name], name, principles)
        return out
    if not (Path(rl_cfg.run_dir) / "rl_prompts.json").is_file():
        prepare_prompts(rl_cfg)
    log.info("controllability arms %s: training %d at once with stage 05's code", ", ".join(jobs), workers)
    threads = threads_per_worker(workers)
    # spawn: a forked child would inherit the kernel's torch threads and locks
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(train_arm, dataclasses.replace(configs[name], cpu_threads=threads), name,
                                     principles) for name, principles in jobs.items()}
        out = {}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except Exception as err:
                raise RuntimeError(f"controllability arm {name!r} failed in its worker process: {err}") from err
    return out


def best_of_n(candidate_scores: Sequence[Sequence[float]]) -> list[int]:
    """Index of the highest-scoring candidate per prompt (the first on a tie)."""
    return [int(np.argmax(s)) for s in candidate_scores]


def reward_matrix(table: Mapping[str, Mapping[str, Sequence[float]]], rows: Sequence[str], sets: Sequence[str]) -> dict:
    """{row: {set: mean reward}}: rows are policies (or preview picks), columns the sets."""
    return {r: {s: float(np.mean(table[r][SET_PREFIX + s])) for s in sets} for r in rows}


def diagonal_tests(table: Mapping[str, Mapping[str, Sequence[float]]], row_of: Mapping[str, str], sets: Sequence[str],
                   **ci) -> list[dict]:
    """For each set S and each other set T: does S's own row beat T's row under S's principles?"""
    out = []
    for s, t in itertools.permutations(sets, 2):
        own, other = table[row_of[s]][SET_PREFIX + s], table[row_of[t]][SET_PREFIX + s]
        out.append({"scored_under": s, "row": row_of[s], "against": row_of[t],
                    "difference": paired_difference(own, other, **ci), "win_rate": win_rate(own, other, **ci)})
    return out


def candidate_audit(scores_a: Sequence[Sequence[float]], scores_b: Sequence[Sequence[float]],
                    measures: Sequence[Sequence[float | None]], a: str, b: str) -> dict:
    """Per prompt, the rank correlation across its candidates between score(a) - score(b) and the
    targeted measure, and its mean over the prompts where both vary (`reward.audit.spearman`)."""
    from ..reward.audit import spearman

    per_prompt = []
    for sa, sb, ms in zip(scores_a, scores_b, measures):
        keep = [i for i, m in enumerate(ms) if m is not None]
        per_prompt.append(spearman([sa[i] - sb[i] for i in keep], [ms[i] for i in keep]))
    rs = [r for r in per_prompt if r is not None]
    return {"a": a, "b": b, "spearman": float(np.mean(rs)) if rs else None, "prompts": len(rs),
            "per_prompt": per_prompt}


def measure_differences(values: Mapping[str, Sequence[float | None]], row_of: Mapping[str, str], sets: Sequence[str],
                        **ci) -> list[dict]:
    """The targeted measure, paired by prompt, for every pair of sets in the order given (A - B)."""
    return [{"a": a, "b": b, "row_a": row_of[a], "row_b": row_of[b],
             "difference": paired_difference(values[row_of[a]], values[row_of[b]], **ci)}
            for a, b in itertools.combinations(sets, 2)]
