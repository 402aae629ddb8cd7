"""The multi-GPU helper: accelerate configs, the in-process path, and a real 2-process DDP step on CPU."""

import json

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file

from salmon_lib.runner.launch import CONFIG_DIR, Distributed, LaunchError, launch, resolve_function

STEP = "tests.notebooks.runner_stages:ddp_step"
KIND = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}


@pytest.mark.parametrize("name", Distributed.__args__)
def test_every_strategy_has_a_valid_accelerate_config(name):
    cfg = load_config_from_file(str(CONFIG_DIR / f"{name}.yaml"))
    assert cfg.distributed_type.value == KIND[name] and cfg.mixed_precision == "bf16"
    if name.startswith("zero"):
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])


def expected_synced_grad():
    """What DDP must leave on every rank: the mean of the two ranks' local gradients."""
    grads = []
    for rank in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        model(torch.full((2, 4), float(rank + 1))).pow(2).mean().backward()
        grads.append(model.weight.grad.flatten())
    return ((grads[0] + grads[1]) / 2).tolist(), grads


def test_single_process_runs_in_process(tmp_path):
    out = launch(STEP, {"out_dir": str(tmp_path)})  # no GPU here: in-process
    assert out["world"] == 1 and out["rank"] == 0
    assert (tmp_path / "rank0.json").exists()


@pytest.mark.slow
def test_two_processes_on_cpu_sync_gradients(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"out_dir: {tmp_path}\n")
    result = launch(STEP, config, distributed="ddp", num_processes=2, cpu=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" for r in ranks)
    mean, local = expected_synced_grad()
    assert not torch.allclose(local[0], local[1])  # unsynced gradients would differ
    for r in ranks:
        assert r["grad"] == pytest.approx(mean, rel=1e-5)
    assert result == ranks[0]  # rank 0's return value comes back through JSON


def test_bad_function_fails_before_launching():
    with pytest.raises(ValueError, match="expected 'module:function'"):
        resolve_function("nothing")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        launch("tests.notebooks.runner_stages:nope", {}, num_processes=2, cpu=True)
    with pytest.raises(ValueError, match="distributed='zero1'"):
        launch(STEP, {}, distributed="zero1")


@pytest.mark.slow
def test_failing_ranks_raise_launch_error(tmp_path):
    with pytest.raises(LaunchError, match="exited with"):
        launch(STEP, {"out_dir": str(tmp_path / "missing" / "dir")}, num_processes=2, cpu=True)
