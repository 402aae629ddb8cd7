"""The multi-GPU helper: accelerate configs, the in-process path, and a real 2-process DDP step on CPU."""

import json
import os

import pytest

from salmon_lib import launch as launch_module
from salmon_lib.launch import CONFIG_DIR, Distributed, LaunchError, launch, resolve_function

STEP = "tests.notebooks.runner_stages:ddp_step"
KIND = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}


@pytest.mark.parametrize("name", Distributed.__args__)
def test_every_strategy_has_a_valid_accelerate_config(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(CONFIG_DIR / f"{name}.yaml"))
    assert cfg.distributed_type.value == KIND[name] and cfg.mixed_precision == "bf16"
    if name.startswith("zero"):
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])


def expected_synced_grad():
    """What DDP must leave on every rank: the mean of the two ranks' local gradients."""
    import torch

    grads = []
    for rank in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        model(torch.full((2, 4), float(rank + 1))).pow(2).mean().backward()
        grads.append(model.weight.grad.flatten())
    return ((grads[0] + grads[1]) / 2).tolist(), grads


def test_one_device_runs_in_process(tmp_path, monkeypatch):
    monkeypatch.setattr(launch_module, "visible_gpus", lambda: 1)
    config = tmp_path / "cfg.json"
    config.write_text('{"lr": 1e-5}')
    out = launch("tests.notebooks.runner_stages:whoami", config, distributed="fsdp")
    assert out == {"pid": os.getpid(), "config": {"lr": 1e-5}}


@pytest.mark.slow
def test_two_processes_on_cpu_sync_gradients(tmp_path):
    import torch

    assert launch_module.visible_gpus() == torch.cuda.device_count()
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


def test_a_launched_process_closes_its_process_group(tmp_path):
    """Left open at exit, gloo's threads abort the process after it has done its work (about one run
    in three of the 2-process test above)."""
    import torch.distributed as dist

    config, result = tmp_path / "cfg.json", tmp_path / "result.json"
    config.write_text(json.dumps({"rendezvous": str(tmp_path / "rendezvous")}))
    launch_module._main(["tests.notebooks.runner_stages:open_group", str(config), str(result)])
    assert json.loads(result.read_text()) == {"open": True}
    assert not dist.is_initialized()


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


def test_bad_config_file_is_named(tmp_path):
    bad = tmp_path / "cfg.json"
    bad.write_text("{lr: }")
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        launch("tests.notebooks.runner_stages:whoami", bad, num_processes=1)
    with pytest.raises(FileNotFoundError, match="launch config not found"):
        launch("tests.notebooks.runner_stages:whoami", tmp_path / "none.yaml", num_processes=1)
