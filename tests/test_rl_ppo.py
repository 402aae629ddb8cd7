"""Stage 05's PPO on the tiny model: real rollouts and optimiser steps, the first-step invariants,
what moves, and resume equivalence."""

import shutil

import pytest
import torch
from rl_fixtures import make_run
from safetensors.torch import load_file

from salmon_lib.io import read_jsonl
from salmon_lib.rl.config import RLConfig
from salmon_lib.rl.ppo import PPOTrainer
from salmon_lib.rl.stage import open_session, prepare_prompts, train


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("rl_inputs"))


def quick(run_dir, **kw) -> RLConfig:
    params = dict(run_dir=str(run_dir), model="tiny", max_steps=3, prompts_per_step=4, max_new_tokens=12,
                  baseline_prompts=4, heldout_prompts=2, save_steps=1, learning_rate=1e-3,
                  value_learning_rate=1e-3, warmup_ratio=0.0)
    return RLConfig.from_dict({**params, **kw})


def fresh(inputs, tmp_path, name="run"):
    run = tmp_path / name
    shutil.copytree(inputs, run)
    return run


def _lora(model, adapter):
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{adapter}." in n}


def test_first_step_invariants_and_what_moves(inputs, tmp_path):
    cfg = quick(fresh(inputs, tmp_path))
    prepare_prompts(cfg)
    s = open_session(cfg)
    trainer = PPOTrainer(s.ctx, s.model, s.tokenizer, s.sampler)
    before = {a: _lora(s.model, a) for a in ("default", "ref", "value")}
    head_before = trainer.value_head.weight.detach().clone()
    # The value adapter starts as the reward model's, with a fresh zero head.
    rm = load_file(inputs / "rm" / "adapter_model.safetensors")
    some = next(n for n in before["value"] if "lora_A" in n)
    key = some.replace(".value.", ".")
    assert torch.equal(before["value"][some], rm[key]) and trainer.value_init == "reward model adapter"
    assert float(head_before.abs().sum()) == 0.0

    metrics, rows = trainer.step(0)
    assert metrics["kl"] == 0.0 and metrics["kl_penalty"] == 0.0  # policy == reference at step 0
    first = trainer.minibatch_stats[0]
    assert first["ratio"] == pytest.approx(1.0, abs=1e-5) and first["clip_fraction"] == 0.0
    assert len(trainer.minibatch_stats) == cfg.ppo_epochs * cfg.minibatches
    after = {a: _lora(s.model, a) for a in ("default", "ref", "value")}
    moved = lambda a: max(float((after[a][n] - before[a][n]).abs().max()) for n in before[a])  # noqa: E731
    assert moved("default") > 0 and moved("value") > 0 and moved("ref") == 0.0
    assert float(trainer.value_head.weight.detach().abs().sum()) > 0
    # Every rollout is recorded with the principles drawn for it and every reward term.
    assert len(rows) == cfg.prompts_per_step
    assert {"principles", "rm", "rm_raw", "unfinished", "length", "score", "kl", "finished", "tokens"} <= set(rows[0])
    assert all(r["tokens"] <= cfg.max_new_tokens and (r["finished"] or r["tokens"] == cfg.max_new_tokens)
               for r in rows)

    metrics, _ = trainer.step(1)
    assert metrics["kl"] != 0.0  # the policy has moved away from the reference


def test_resumed_run_ends_with_the_same_weights(inputs, tmp_path):
    straight = quick(fresh(inputs, tmp_path, "straight"), report_to="tensorboard")
    prepare_prompts(straight)
    done = train(straight, progress=False)
    assert done["steps"] == 3 and done["stopped"] == "max_steps"
    assert list((tmp_path / "straight" / "rl_checkpoints" / "runs").glob("events.out.tfevents.*"))

    cut = quick(fresh(inputs, tmp_path, "cut"), max_minutes=1e-9)  # the budget ends it after one step
    prepare_prompts(cut)
    first = train(cut, progress=False)
    assert first["steps"] == 1 and first["stopped"] == "max_minutes"
    resumed = train(quick(cut.run_dir), progress=False)
    assert resumed["resumed_from"] == 1 and resumed["steps"] == 3

    a = load_file(tmp_path / "straight" / "policy" / "adapter_model.safetensors")
    b = load_file(tmp_path / "cut" / "policy" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    sft = load_file(inputs / "sft" / "adapter_model.safetensors")
    assert max(float((a[k] - sft[k]).abs().max()) for k in a) > 1e-4
    steps = [r["step"] for r in read_jsonl(tmp_path / "cut" / "rl_metrics.jsonl")]
    assert steps == [0, 1, 2]
    assert len(read_jsonl(tmp_path / "cut" / "rollouts.jsonl")) == 3 * 4


@pytest.mark.parametrize("setting", ["bf16", "no"])
def test_scoring_and_update_run_in_the_chosen_precision_and_sampling_in_the_models(inputs, tmp_path, setting):
    """Under bf16 every forward pass that scores rollouts or computes the loss (policy and value)
    runs its matmuls in bf16, so the ratio of new to old log-probs compares like with like;
    sampling stays in the model's own dtype either way."""
    cfg = quick(fresh(inputs, tmp_path), mixed_precision=setting, max_steps=1)
    prepare_prompts(cfg)
    s = open_session(cfg)
    trainer = PPOTrainer(s.ctx, s.model, s.tokenizer, s.sampler)
    phase, seen = ["sampling"], {}

    def tracked(name):
        original = getattr(trainer, name)

        def forward(batch):
            phase.append(name)
            try:
                return original(batch)
            finally:
                phase.pop()
        return forward

    for name in ("_logits", "_values"):
        setattr(trainer, name, tracked(name))
    q_proj = s.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    q_proj.register_forward_hook(lambda mod, inputs, out: seen.setdefault(phase[-1], set()).add(out.dtype))
    trainer.step(0)
    expected = torch.bfloat16 if setting == "bf16" else torch.float32
    assert seen["_logits"] == {expected} and seen["_values"] == {expected}
    assert seen["sampling"] == {next(s.model.parameters()).dtype}
