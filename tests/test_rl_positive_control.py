"""Positive control for every method: with a programmatic reward that prefers shorter answers (and no
other term), a short CPU run on the default model makes the policy's answers shorter; a method whose
reward were reversed, or whose update ignored it, fails here. Every step samples the same few
prompts (`max_prompts`), so the first and the last steps' mean answer lengths compare like with like."""

import shutil

import pytest
from rl_fixtures import POSITIVE_CONTROL, ShorterIsBetter, make_run, positive_control_config

from salmon_lib.io import read_jsonl
from salmon_lib.rl.stage import prepare_prompts, train


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    # A zero-initialised SFT adapter: the policy starts as SmolLM2-Instruct itself.
    return make_run(tmp_path_factory.mktemp("pc_inputs"), model="default", sft_random=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(POSITIVE_CONTROL))
def test_shorter_is_better_shortens_answers(method, inputs, tmp_path):
    run = tmp_path / method
    shutil.copytree(inputs, run)
    cfg = positive_control_config(run, method)
    prepare_prompts(cfg)
    train(cfg, reward=ShorterIsBetter(), progress=False)
    lengths = [row["length"] for row in read_jsonl(run / "rl_metrics.jsonl")]
    early, late = sum(lengths[:2]) / 2, sum(lengths[-2:]) / 2
    assert late < 0.75 * early, f"{method}: mean answer tokens per step {lengths}"


def test_every_method_has_a_positive_control():
    from salmon_lib.rl.config import METHODS

    assert set(POSITIVE_CONTROL) == set(METHODS)
