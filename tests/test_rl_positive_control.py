"""Positive control for every method: with a programmatic reward that prefers shorter answers (and no
other term), a short CPU run on the default model makes the policy's answers shorter; a method whose
reward were reversed, or whose update ignored it, fails here. Every step samples the same few
prompts (`max_prompts`), so the first and the last steps' mean answer lengths compare like with like."""

import shutil

import pytest
from rl_fixtures import ShorterIsBetter, make_run

from salmon_lib.io import read_jsonl
from salmon_lib.rl.config import RLConfig
from salmon_lib.rl.stage import prepare_prompts, train

SETTINGS = {
    "ppo": dict(prompts_per_step=4, max_prompts=4, ppo_epochs=2, minibatches=1),
    "grpo": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1),
    "rloo": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1),
    # rounds of sample-rank-train: each round's trainer takes a few optimiser steps on its pairs / winners
    "dpo": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1, sft_epochs=2.0),
    "best_of_n": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1, sft_epochs=2.0),
    # sampled with the principle in the system prompt, trained without it (the reward picks 1 of 4)
    "context_distill": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1, sft_epochs=2.0,
                            principles=["The response is one short sentence."]),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    # A zero-initialised SFT adapter: the policy starts as SmolLM2-Instruct itself.
    return make_run(tmp_path_factory.mktemp("pc_inputs"), model="default", sft_random=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(SETTINGS))
def test_shorter_is_better_shortens_answers(method, inputs, tmp_path):
    run = tmp_path / method
    shutil.copytree(inputs, run)
    cfg = RLConfig.from_dict(dict(
        run_dir=str(run), model="default", method=method, max_steps=6, max_new_tokens=32, baseline_prompts=4,
        heldout_prompts=2, unfinished_penalty=0.0, length_coef=0.0, normalise_rm=False, kl_coef=0.0,
        learning_rate=2e-3, value_learning_rate=2e-3, warmup_ratio=0.0, save_steps=100, seed=0, **SETTINGS[method]))
    prepare_prompts(cfg)
    train(cfg, reward=ShorterIsBetter(), progress=False)
    lengths = [row["length"] for row in read_jsonl(run / "rl_metrics.jsonl")]
    early, late = sum(lengths[:2]) / 2, sum(lengths[-2:]) / 2
    assert late < 0.75 * early, f"{method}: mean answer tokens per step {lengths}"


def test_every_method_has_a_positive_control():
    from salmon_lib.rl.config import METHODS

    assert set(SETTINGS) == set(METHODS)
