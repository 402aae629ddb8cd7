"""grpo, rloo, dpo and best_of_n on the tiny model: each takes real optimiser steps through the
shared reward function and moves the policy; group methods share one principle draw per prompt;
stage 06's arms reuse the split and the baseline and are skipped when unchanged."""

import collections
import dataclasses
import json
import shutil

import pytest
from rl_fixtures import make_run
from safetensors.torch import load_file

from salmon_lib.io import read_jsonl
from salmon_lib.rl.config import RLConfig
from salmon_lib.rl.stage import prepare_prompts, train, train_arm


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("rl_inputs"))


def quick(run_dir, **kw) -> RLConfig:
    params = dict(run_dir=str(run_dir), model="tiny", max_steps=2, prompts_per_step=2, group_size=2,
                  max_new_tokens=8, baseline_prompts=4, heldout_prompts=2, save_steps=1, learning_rate=1e-2,
                  warmup_ratio=0.0, minibatches=1)
    return RLConfig.from_dict({**params, **kw})


def _moved(run, inputs) -> float:
    a = load_file(run / "policy" / "adapter_model.safetensors")
    b = load_file(inputs / "sft" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# rloo shares grpo's path through TRL and dpo shares best_of_n's rounds: those two run with the slow tests.
@pytest.mark.parametrize("method", ["grpo", pytest.param("rloo", marks=pytest.mark.slow),
                                    pytest.param("dpo", marks=pytest.mark.slow), "best_of_n", "context_distill"])
def test_method_takes_real_steps_and_moves_the_policy(method, inputs, tmp_path):
    run = tmp_path / method
    shutil.copytree(inputs, run)
    cfg = quick(run, method=method)
    prepare_prompts(cfg)
    stats = train(cfg, progress=False)
    assert stats["steps"] == 2 and stats["method"] == method
    assert _moved(run, inputs) > 1e-4
    info = json.loads((run / "policy" / "policy_info.json").read_text())
    assert info["method"] == method and info["base_model"]["spec"] == "tiny"
    assert (run / "policy" / "chat_format.json").read_text() == (inputs / "sft" / "chat_format.json").read_text()
    metrics = read_jsonl(run / "rl_metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1]
    assert all(isinstance(m[k], float) for m in metrics for k in ("reward", "rm", "length", "finished",
                                                                  "time_generate", "time_score", "time_train"))
    rollouts = read_jsonl(run / "rollouts.jsonl")
    assert len(rollouts) == 2 * cfg.prompts_per_step * cfg.group_size
    # One principle draw per prompt group: every answer to a prompt in a step read the same principles.
    draws = collections.defaultdict(set)
    for r in rollouts:
        draws[r["step"], r["prompt_id"]].add(tuple(r["principles"]))
    assert all(len(d) == 1 for d in draws.values()) and len(draws) == 2 * cfg.prompts_per_step


@pytest.fixture
def sampled(monkeypatch) -> list:
    """(prompts, keyword arguments) of every PolicySampler.sample call, which still samples."""
    from salmon_lib.rl.rollout import PolicySampler

    calls = []
    sample = PolicySampler.sample
    monkeypatch.setattr(PolicySampler, "sample", lambda self, prompts, *a, **k: calls.append((prompts, k)) or
                        sample(self, prompts, *a, **k))
    return calls


def test_context_distill_samples_under_the_principles_and_trains_without_them(inputs, tmp_path, monkeypatch,
                                                                             sampled):
    from salmon_lib.engrave import train as engrave_train

    trained = []
    make_trainer = engrave_train.make_trainer
    monkeypatch.setattr(engrave_train, "make_trainer", lambda cfg, records, **k: trained.append(records) or
                        make_trainer(cfg, records, **k))
    run = tmp_path / "distill"
    shutil.copytree(inputs, run)
    rule = "The response names one colour."
    cfg = quick(run, method="context_distill", max_steps=1, group_size=1, principles=[rule])
    prepare_prompts(cfg)
    train(cfg, progress=False)
    rounds = sampled[-1][0]
    assert len(rounds) == cfg.prompts_per_step and all(rule in p for p in rounds)
    assert len(trained[-1]) == cfg.prompts_per_step and not any(rule in r["prompt"] for r in trained[-1])


def test_guided_context_distill_samples_away_from_each_principles_contrast(inputs, tmp_path, sampled):
    """guidance_scale: the contrast prompt lists what the contrastive reward scores each principle
    against (here the principle file's negations); guidance needs that reward and context_distill."""
    import yaml

    from salmon_lib.config import ConfigError
    from salmon_lib.models import ModelConfig
    from salmon_lib.reward.contrastive import ContrastiveReward, write_spec

    run = tmp_path / "guided"
    shutil.copytree(inputs, run)
    principles = yaml.safe_load(open("principles/concise.yaml"))["principles"]
    texts = [p["definition"] for p in principles]
    folder = write_spec(run / "contrastive_rm", model=ModelConfig(spec="tiny").to_dict(), adapter=run / "sft",
                        chat_format="chatml", principle_files=["principles/concise.yaml"], contrast="avoid",
                        aggregate="sum")
    cfg = quick(run, method="context_distill", max_steps=1, group_size=1, principles=texts, guidance_scale=3.0)
    prepare_prompts(cfg)
    stats = train(cfg, reward=ContrastiveReward.load(folder), progress=False)
    assert stats["steps"] == 1 and _moved(run, inputs) > 1e-4
    prompts, kw = sampled[-1]
    assert kw["guidance_scale"] == 3.0 and len(kw["contrast_prompts"]) == len(prompts) == cfg.prompts_per_step
    assert kw["guidance_plausibility"] == cfg.guidance_plausibility == 0.1
    squash = " ".join  # the guided prompt lists each text on one line
    for guided, contrast in zip(prompts, kw["contrast_prompts"]):
        assert all(squash(t.split()) in guided and squash(t.split()) not in contrast for t in texts)
        assert all(squash(p["negative_definition"].split()) in contrast for p in principles)
    with pytest.raises(ConfigError, match="contrastive reward"):
        train(dataclasses.replace(cfg, seed=1), progress=False)  # the run's own rm/ is a trained reward model
    with pytest.raises(ConfigError, match="guidance_scale: only context_distill"):
        quick(run, method="best_of_n", guidance_scale=2.0)
    with pytest.raises(ConfigError, match="guidance_scale: must be >= 1"):
        quick(run, method="context_distill", guidance_scale=0.5)
    with pytest.raises(ConfigError, match="guidance_plausibility: must be in"):
        quick(run, method="context_distill", guidance_scale=2.0, guidance_plausibility=1.5)


def test_guided_context_distill_can_push_away_from_named_principles_under_any_reward(inputs, tmp_path, sampled):
    """guidance_contrast: the contrast prompt lists those principles (stage 06 gives an arm the other
    set's), drawn per prompt, so guidance needs no negation and no contrastive reward; the contrast is
    part of what a checkpoint belongs to."""
    from salmon_lib.config import ConfigError
    from salmon_lib.rl.stage import open_context

    run = tmp_path / "guided_other"
    shutil.copytree(inputs, run)
    mine, other = ["The reply is a single short sentence."], ["The reply walks through every step at length."]
    cfg = quick(run, method="context_distill", max_steps=1, group_size=1, principles=mine, guidance_scale=3.0,
                guidance_contrast=other)
    prepare_prompts(cfg)
    stats = train(cfg, progress=False)  # the run's own rm/ is a trained reward model: it knows no contrasts
    assert stats["steps"] == 1 and _moved(run, inputs) > 1e-4
    prompts, kw = sampled[-1]
    assert len(kw["contrast_prompts"]) == len(prompts) == cfg.prompts_per_step
    for guided, contrast in zip(prompts, kw["contrast_prompts"]):
        assert mine[0] in guided and other[0] not in guided
        assert other[0] in contrast and mine[0] not in contrast
        assert guided.split(mine[0]) == contrast.split(other[0])  # the same prompt, only the texts differ
    plain = open_context(dataclasses.replace(cfg, guidance_contrast=""), principles=mine).signature
    assert open_context(cfg, principles=mine).signature != plain
    with pytest.raises(ConfigError, match="guidance_contrast: only guided sampling"):
        quick(run, method="context_distill", guidance_contrast=other)
    with pytest.raises(ConfigError, match="guidance_contrast"):
        quick(run, method="context_distill", guidance_scale=2.0, guidance_contrast="principles/no_such_file.yaml")


def test_a_run_without_normalisation_needs_no_baseline(inputs, tmp_path):
    """best_of_n ranks a prompt's answers, which the per-type normalisation cannot reorder: the arms of
    the controllability preset skip the baseline's answers (baseline_prompts 0)."""
    from salmon_lib.config import ConfigError

    with pytest.raises(ConfigError, match="baseline_prompts"):
        quick(tmp_path, method="best_of_n", baseline_prompts=0)
    run = tmp_path / "nobase"
    shutil.copytree(inputs, run)
    cfg = quick(run, method="best_of_n", max_steps=1, baseline_prompts=0, normalise_rm=False)
    prepare_prompts(cfg)
    stats = train(cfg, progress=False)
    assert stats["steps"] == 1 and stats["baseline"]["n"] == 0 and not (run / "rl_baseline.json").exists()


def test_arm_reuses_split_and_baseline_and_is_skipped_when_unchanged(inputs, tmp_path):
    run = tmp_path / "arms"
    shutil.copytree(inputs, run)
    cfg = quick(run, method="ppo", max_steps=1, prompts_per_step=2)
    prepare_prompts(cfg)
    train(cfg, progress=False)
    baseline = (run / "rl_baseline.json").read_text()
    split = (run / "rl_prompts.json").read_text()
    concise = ["The response is short and to the point."]
    stats = train_arm(cfg, "concise", concise)
    arm = run / "rl_arms" / "concise"
    assert stats["arm"] == "concise" and (arm / "policy" / "adapter_config.json").is_file()
    assert {r["principles"][0] for r in read_jsonl(arm / "rollouts.jsonl")} == set(concise)
    assert json.loads((arm / "policy" / "policy_info.json").read_text())["principles"]["inline"] == concise
    assert (run / "rl_baseline.json").read_text() == baseline and (run / "rl_prompts.json").read_text() == split
    assert (run / "figures" / "rl_arm_concise_reward.png").is_file()
    again = train_arm(cfg, "concise", concise)
    assert again == stats  # skipped: read back from rl_stats.json
    with pytest.raises(Exception, match="arm"):
        train_arm(cfg, "../x", concise)
    # another seed (or cap) needs its own baseline: it goes beside the arms, and stage 05's file,
    # which the runner hashed, is left as the stage wrote it
    seed1 = dataclasses.replace(cfg, seed=1)
    other = train_arm(seed1, "concise.seed1", concise)
    assert (run / "rl_baseline.json").read_text() == baseline
    (own,) = (run / "rl_arms").glob("baseline-*.json")
    assert json.loads(own.read_text())["signature"] != json.loads(baseline)["signature"]
    assert train_arm(seed1, "concise.seed1", concise) == other


def test_a_rerun_under_changed_settings_logs_only_its_own_steps(inputs, tmp_path):
    """Metrics and rollouts are keyed by step: a rerun with other settings (here the answer length)
    once kept the earlier run's rows, so rl_metrics.jsonl and rl_stats.json showed the old run."""
    run = tmp_path / "rerun"
    shutil.copytree(inputs, run)
    first = quick(run, method="ppo", max_steps=2, prompts_per_step=2, max_new_tokens=4)
    prepare_prompts(first)
    train(first, progress=False)
    old = read_jsonl(run / "rollouts.jsonl")
    assert max(r["tokens"] for r in old) <= 4
    stats = train(quick(run, method="ppo", max_steps=1, prompts_per_step=2, max_new_tokens=12), progress=False)
    assert [m["step"] for m in read_jsonl(run / "rl_metrics.jsonl")] == [0]
    new = read_jsonl(run / "rollouts.jsonl")
    assert len(new) == 2 and max(r["tokens"] for r in new) > 4
    assert stats["steps"] == 1 and stats["last_step"] == stats["first_step"]


@pytest.mark.slow  # stage 05 and two arms, twice (in turn, then two spawned processes): ~45 s beside another test
def test_arms_trained_two_at_once_equal_arms_trained_in_turn(inputs, tmp_path):
    """Stage 06's `arm_workers: 2` trains each arm in its own process: same adapters, same rollouts."""
    import torch

    from salmon_lib.evaluate.controllability import train_arms

    jobs = {"concise": ["The response is short and to the point."],
            "thorough": ["The response is thorough and covers every detail."]}
    runs = {}
    for workers in (1, 2):
        run = runs[workers] = tmp_path / f"workers{workers}"
        shutil.copytree(inputs, run)
        cfg = quick(run, method="ppo", max_steps=1, prompts_per_step=2)
        prepare_prompts(cfg)
        train(cfg, progress=False)
        stats = train_arms(cfg, jobs, progress=False, workers=workers)
        assert sorted(stats) == ["concise", "thorough"] and all(s["steps"] == 1 for s in stats.values())
    for arm in ("concise", "thorough"):
        a, b = (load_file(runs[w] / "rl_arms" / arm / "policy" / "adapter_model.safetensors") for w in (1, 2))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        texts = [[r["response"] for r in read_jsonl(runs[w] / "rl_arms" / arm / "rollouts.jsonl")] for w in (1, 2)]
        assert texts[0] == texts[1]
