"""The registered controllability experiment: its intervals against values computed by hand, the
direction it names, its prompts (none trained on), its seeds' arm folders, and its config checks."""

import dataclasses
import json
import math

import numpy as np
import pytest
from evaluate_helpers import make_adapter, make_run

from salmon_lib.config import ConfigError
from salmon_lib.evaluate.config import EvaluateConfig
from salmon_lib.evaluate.experiment import Endpoint, analyse, arm_name, endpoint_prompts
from salmon_lib.evaluate.policies import discover
from salmon_lib.evaluate.stats import describe_effect, paired_effect

ENDPOINT = Endpoint("length_tokens", "lower", 5, 2, 128)


def test_paired_t_interval_matches_the_textbook_formula():
    a, b = [10.0, 12.0, 9.0, 14.0, 11.0], [13.0, 15.0, 10.0, 18.0, 12.0]
    d = np.subtract(a, b)  # -3 -3 -1 -4 -1
    r = paired_effect(a, b, "lower", n_boot=500)
    half = 2.7764451 * d.std(ddof=1) / math.sqrt(5)  # t(0.975, df=4)
    assert r["difference"] == pytest.approx(-2.4)
    assert r["ci_t"] == pytest.approx([-2.4 - half, -2.4 + half])
    assert r["effect_size_dz"] == pytest.approx(-2.4 / d.std(ddof=1))
    assert r["sign_statistic"] == -1.0 and r["moved"] == "named"
    assert r["ci_bca"][0] <= -2.4 <= r["ci_bca"][1]
    assert "moved in the named direction" in describe_effect("x", r)


def test_direction_decides_named_against_or_nothing():
    a, b = [1.0, 2.0, 1.5, 1.2, 0.8, 1.1], [5.0, 6.0, 5.5, 5.1, 4.9, 5.3]
    assert paired_effect(a, b, "lower")["moved"] == "named"
    assert paired_effect(a, b, "higher")["moved"] == "against"
    assert "AGAINST" in describe_effect("x", paired_effect(a, b, "higher"))
    noise = np.random.default_rng(1).normal(0, 1, 40)
    null = paired_effect(list(noise), [0.0] * 40, "lower")
    assert null["ci_t"][0] < 0 < null["ci_t"][1] and null["moved"] is None
    assert "no effect is claimed" in describe_effect("x", null)
    with pytest.raises(ValueError, match="direction"):
        paired_effect(a, b, "shorter")


def test_t_interval_holds_its_coverage_where_the_percentile_bootstrap_does_not():
    """Differences of two arms' answer lengths (exponential, means 30 and 45 tokens): the paired
    t-interval covers the true difference about 95% of the time at n=16 and 32; the percentile
    bootstrap, which stage 06 used to lead with, about 90-92%."""
    from scipy import stats

    rng = np.random.default_rng(0)
    for n in (16, 32):
        d = rng.exponential(30, size=(3000, n)) - rng.exponential(45, size=(3000, n))
        m, se = d.mean(axis=1), d.std(axis=1, ddof=1) / math.sqrt(n)
        q = stats.t.ppf(0.975, n - 1)
        t_cover = np.mean((m - q * se <= -15) & (-15 <= m + q * se))
        boot = d[:500][:, rng.integers(0, n, size=(1000, n))].mean(axis=2)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=1)
        p_cover = np.mean((lo <= -15) & (-15 <= hi))
        assert 0.935 <= t_cover <= 0.965, (n, t_cover)
        assert p_cover < t_cover, (n, p_cover, t_cover)


def test_analyse_reports_every_seed_pooled_and_across_seeds():
    rng = np.random.default_rng(0)
    n = 12
    values = {s: {"concise": list(rng.normal(50 - shift, 5, n)), "comprehensive": list(rng.normal(80, 5, n))}
              for s, shift in ((0, 0), (1, 5), (2, 10))}
    out = analyse(values, "concise", "comprehensive", ENDPOINT, "tokens", n_boot=500, confidence=0.95)
    assert set(out["per_seed"]) == {"0", "1", "2"} and out["moved_in_every_seed"]
    diffs = [np.mean(np.subtract(v["concise"], v["comprehensive"])) for v in values.values()]
    assert [out["per_seed"][str(s)]["difference"] for s in values] == pytest.approx(diffs)
    assert out["pooled"]["difference"] == pytest.approx(np.mean(diffs))
    assert out["across_seeds"]["mean"] == pytest.approx(np.mean(diffs)) and out["across_seeds"]["n_seeds"] == 3
    assert len(out["verdict"]) == 4 and all("named direction" in v for v in out["verdict"])
    reversed_ = analyse({0: {"concise": values[0]["comprehensive"], "comprehensive": values[0]["concise"]}},
                        "concise", "comprehensive", ENDPOINT, "tokens", n_boot=500, confidence=0.95)
    assert not reversed_["moved_in_every_seed"] and reversed_["per_seed"]["0"]["moved"] == "against"


def test_endpoint_prompts_are_heldout_first_and_never_rl_training_prompts(tmp_path):
    run = make_run(tmp_path / "run", heldout=False)
    ids = [json.loads(line)["id"] for line in (run / "prompts.jsonl").read_text().splitlines()]
    (run / "rl_prompts.json").write_text(json.dumps({"train": ids[:2], "heldout": ids[4:5], "excluded": {}}))
    prompts, where = endpoint_prompts(run, 0)
    assert [p.id for p in prompts] == [ids[4], *ids[2:4], *ids[5:]]
    assert where["heldout"] == 1 and where["not_rl_trained"] == len(ids) - 3
    few, where = endpoint_prompts(run, 2)
    assert [p.id for p in few] == [ids[4], ids[2]] and where["n"] == 2


def test_later_seeds_arms_stay_out_of_the_policy_comparison(tmp_path):
    run = make_run(tmp_path / "run")
    seeds = [3, 7]
    for s in seeds:
        make_adapter(run / "rl_arms" / arm_name("concise", s, seeds) / "policy", seed=s)
    assert arm_name("concise", 3, seeds) == "concise" and arm_name("concise", 7, seeds) == "concise.seed7"
    assert [p.name for p in discover(run, include_base=False)] == ["sft", "arm:concise"]


@pytest.mark.parametrize("bad, message", [
    ({"seeds": [1, 1]}, "seeds"), ({"seeds": [-1]}, "seeds"), ({"endpoint_prompts": 1}, "endpoint_prompts"),
    ({"endpoint_samples": 0}, "endpoint_samples"), ({"arm_overrides": {"seed": 3}}, "arm_overrides: seed"),
    ({"controllability_direction": "shorter"}, "controllability_direction"),
    ({"endpoint_dtype": "fp8"}, "endpoint_dtype"),
])
def test_the_registration_is_checked_before_anything_runs(bad, message):
    with pytest.raises(ConfigError, match=message):
        EvaluateConfig.from_dict(bad)


def test_arm_workers_share_the_cores_instead_of_taking_one_thread_each(monkeypatch):
    """Two arm processes on two cores: one torch thread each, whether or not OMP_NUM_THREADS is set
    (a spawned worker would otherwise take a thread per core); OMP_NUM_THREADS stays a ceiling."""
    import os

    from salmon_lib.cpu_threads import threads_per_worker

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_worker(2) == 1 and threads_per_worker(1) == 2 and threads_per_worker(3) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert threads_per_worker(2) == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads_per_worker(2) == 2


def test_the_endpoint_asks_each_policy_once_for_all_its_answers_from_a_merging_engine(tmp_path, monkeypatch):
    """One generate call per policy with every endpoint prompt (SFT first: the engine it starts
    with), from a generator asked to merge adapters; the effect is the measure computed by hand, and
    a generator of another backend or weights' dtype answers afresh instead of reusing these answers."""
    from salmon_lib.evaluate import policies
    from salmon_lib.evaluate.experiment import run_endpoint
    from salmon_lib.generation import Completion, Generator

    run = make_run(tmp_path / "run")
    for k, arm in enumerate(("terse", "wordy")):
        make_adapter(run / "rl_arms" / arm / "policy", seed=10 + k)
    length = {"terse": 3, "wordy": 7, "sft": 5}
    calls, opened = [], []

    class Fake(Generator):
        def __init__(self, backend):
            self.backend = backend

        def generate(self, prompts, n=1, adapter=None, **kwargs):
            who = next(name for name in length if f"/{name}/" in f"{adapter}/")
            calls.append((who, len(prompts), n))
            return [[Completion("x", [1] * (length[who] + i + j), "stop", length[who] + i + j) for j in range(n)]
                    for i in range(len(prompts))]

    backends = iter(["fake", "fake", "other", "fake"])
    monkeypatch.setattr(policies, "open_generator", lambda *a, **k: opened.append(k) or Fake(next(backends)))
    cfg = EvaluateConfig(run_dir=str(run), model="tiny", endpoint_prompts=4, endpoint_samples=2, bootstrap=200,
                         endpoint_dtype="float32")
    out = run_endpoint(cfg, {0: {"a": "terse", "b": "wordy"}}, "a", "b", progress=False)
    assert opened[0]["merge_adapters"] is True and opened[0]["dtype"] == "float32"
    assert out["endpoint"]["dtype"] == "float32"
    assert calls == [("sft", 4, 2), ("terse", 4, 2), ("wordy", 4, 2)]
    # prompt i's two answers have length + i and length + i + 1 tokens: a's arm is 4 tokens shorter everywhere
    assert out["values"]["0"]["a"] == [3.5, 4.5, 5.5, 6.5] and out["per_seed"]["0"]["difference"] == -4.0
    assert out["sft"]["mean"] == 7.0
    run_endpoint(cfg, {0: {"a": "terse", "b": "wordy"}}, "a", "b", progress=False)
    assert len(calls) == 3  # the same backend: every answer from the cache
    run_endpoint(cfg, {0: {"a": "terse", "b": "wordy"}}, "a", "b", progress=False)
    assert len(calls) == 6
    bf16 = dataclasses.replace(cfg, endpoint_dtype="bfloat16")
    out = run_endpoint(bf16, {0: {"a": "terse", "b": "wordy"}}, "a", "b", progress=False)
    assert opened[-1]["dtype"] == "bfloat16" and out["endpoint"]["dtype"] == "bfloat16"
    assert len(calls) == 9, "answers of float32 weights are not reused for bfloat16 ones"
