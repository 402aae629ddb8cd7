"""Positive control: with a programmatic reward that prefers shorter answers, a short CPU run of ppo
and of grpo on the default model makes the policy's answers shorter. Measured on paired samples
(the same 8 training prompts, 2 answers each, the same seed) from the SFT adapter and from the
trained policy, so the comparison does not depend on which prompts the steps happened to draw."""

import shutil

import pytest
from rl_fixtures import ShorterIsBetter, make_run

from salmon_lib.rl.config import RLConfig
from salmon_lib.rl.stage import prepare_prompts, train

SETTINGS = {
    "ppo": dict(prompts_per_step=4, ppo_epochs=2, minibatches=1, max_steps=8),
    "grpo": dict(prompts_per_step=2, group_size=4, minibatches=1, max_steps=8),
}


def mean_answer_tokens(run, adapter, n_prompts=8, samples=2, max_new_tokens=32) -> float:
    from salmon_lib.engrave.format import load_chat_spec
    from salmon_lib.generation.hf import HFGenerator
    from salmon_lib.models import load_adapter, load_model
    from salmon_lib.rl.prompts import read_split, train_records

    spec = load_chat_spec(adapter)
    tok, model = load_model("default")
    gen = HFGenerator("default", loaded=(tok, load_adapter(model, adapter)), progress=False)
    prompts = [spec.prompt(r["prompt"]) for r in train_records(run, read_split(run))[:n_prompts]]
    comps = gen.generate(prompts, n=samples, temperature=0.7, top_p=1.0, max_new_tokens=max_new_tokens,
                         stop=spec.format.stop, seed=123)
    return sum(c.num_tokens for cs in comps for c in cs) / (n_prompts * samples)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    # A zero-initialised SFT adapter: the policy starts as SmolLM2-Instruct itself.
    return make_run(tmp_path_factory.mktemp("pc_inputs"), model="default", sft_random=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ppo", "grpo"])
def test_shorter_is_better_shortens_answers(method, inputs, tmp_path):
    run = tmp_path / method
    shutil.copytree(inputs, run)
    cfg = RLConfig.from_dict(dict(
        run_dir=str(run), model="default", method=method, max_new_tokens=32, baseline_prompts=4, heldout_prompts=2,
        unfinished_penalty=0.0, length_coef=0.0, normalise_rm=False, kl_coef=0.0, learning_rate=1e-3,
        value_learning_rate=1e-3, warmup_ratio=0.0, save_steps=100, seed=0, **SETTINGS[method]))
    prepare_prompts(cfg)
    train(cfg, reward=ShorterIsBetter(), progress=False)
    before = mean_answer_tokens(run, run / "sft")
    after = mean_answer_tokens(run, run / "policy")
    assert after < 0.85 * before, f"{method}: mean answer tokens {before:.1f} -> {after:.1f}"
