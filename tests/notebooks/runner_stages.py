"""Two tiny stages (and a DDP step) for the runner's tests: small configs, fast notebooks."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from salmon_lib.config import StageConfig
from salmon_lib.stages import Stage


@dataclasses.dataclass
class MakeConfig(StageConfig):
    model_params = ()  # `model` only stands in for a common key here

    n: int = 5  # how many records to write
    delay: float = 0.0  # seconds to wait before each record, so a test can kill the stage midway
    fail: bool = False  # raise after writing the records, to test failure handling
    pause: float = 0.0  # seconds the last cell (tagged quick) waits, to hold it past quick_cell_timeout_s
    model: str = "tiny"  # stands in for a common key


@dataclasses.dataclass
class DoubleConfig(StageConfig):
    model_params = ()

    factor: int = 2  # every value is multiplied by this
    model: str = "tiny"  # stands in for a common key


STAGES = [
    Stage("make", "tests/notebooks/00_make.ipynb", config="tests.notebooks.runner_stages:MakeConfig",
          outputs=["numbers.jsonl", "make_stats.json"]),
    Stage("double", "tests/notebooks/01_double.ipynb", config="tests.notebooks.runner_stages:DoubleConfig",
          inputs=["numbers.jsonl"], outputs=["doubled/"]),
]


def open_group(cfg: dict) -> dict:
    """Join a one-process gloo group and return without closing it, as a training function does."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{cfg['rendezvous']}", rank=0, world_size=1)
    return {"open": dist.is_initialized()}


def whoami(cfg: dict) -> dict:
    """Where the function ran, to tell in-process calls from launched ones."""
    return {"pid": os.getpid(), "config": cfg}


def ddp_step(cfg: dict) -> dict:
    """One DDP step of a linear model with rank-dependent data; each rank writes what it saw."""
    import torch
    from accelerate import Accelerator

    acc = Accelerator()  # CPU or GPU as the launcher decided
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt = acc.prepare(model, opt)
    rank = acc.process_index
    x = torch.full((2, 4), float(rank + 1))  # different data per rank: unsynced grads would differ
    loss = model(x).pow(2).mean()
    acc.backward(loss)
    grad = model.module.weight.grad if hasattr(model, "module") else model.weight.grad
    out = {"rank": rank, "world": acc.num_processes, "grad": grad.flatten().tolist(),
           "distributed_type": str(acc.distributed_type)}
    Path(cfg["out_dir"], f"rank{rank}.json").write_text(json.dumps(out))
    return out
