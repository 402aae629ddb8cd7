"""Run a training function on every visible GPU under `accelerate launch`, or in-process.

    from salmon_lib.launch import launch
    result = launch("salmon_lib.engrave:train", cfg.to_dict(), distributed=cfg.distributed)

`fn` is "module:function", called as `fn(config: dict)` in every process; it builds its own
`Accelerator` (or a TRL trainer, which does). With more than one visible GPU the function runs in
`accelerate launch` subprocesses, one per GPU, with the DDP, FSDP or DeepSpeed ZeRO config of
`accelerate_configs/<distributed>.yaml`; a notebook kernel cannot host them itself (multi-GPU
training cannot start in a process that already touched CUDA). Otherwise it runs in this process.
Either way `launch` returns what the function returned (rank 0's, passed back through JSON).
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import yaml

from .config import YamlLoader
from .io import atomic_write_json
from .stages import PROJECT_ROOT

Distributed = Literal["ddp", "fsdp", "zero2", "zero3"]  # annotate a stage config's `distributed` field with this
CONFIG_DIR = Path(__file__).resolve().parent / "accelerate_configs"


class LaunchError(RuntimeError):
    """The distributed run failed; the message has the exit code and the command."""


def resolve_function(spec: str) -> Callable[[dict], Any]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"{spec!r}: expected 'module:function'")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise ValueError(f"{spec!r}: {module} has no function {name!r}")
    return fn


def load_config(config: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: launch config not found")
    text = path.read_text(encoding="utf-8")
    # YAML 1.1 would read JSON's 1e-5 as a string; YamlLoader reads it as the float it is
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=YamlLoader)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'} ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()  # counts devices without creating a CUDA context


def _free_port() -> int:
    # several runs (or helpers) on one host would all collide on torchrun's default 29500
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    fn: str, config: Mapping[str, Any] | str | Path, distributed: Distributed = "ddp",
    num_processes: int | None = None, cpu: bool = False, work_dir: str | Path | None = None,
    cpu_processes: int = 1,
) -> Any:
    """Call `fn(config)` once per GPU under `accelerate launch` when there are several, else here.

    `config` is a mapping or a JSON/YAML file. `num_processes` defaults to the visible GPUs, or
    with none to `cpu_processes`, which then run on the CPU over gloo; `cpu=True` with
    `num_processes>1` forces that (tests). `work_dir` keeps the config and result files (default:
    a temporary folder).
    """
    if distributed not in Distributed.__args__:
        raise ValueError(f"distributed={distributed!r}: expected one of {', '.join(Distributed.__args__)}")
    n = num_processes if num_processes is not None else (1 if cpu else visible_gpus())
    if num_processes is None and n == 0 and cpu_processes > 1:
        n, cpu = cpu_processes, True
    if n <= 1:
        return resolve_function(fn)(load_config(config))
    resolve_function(fn)  # fail here, not in n subprocesses
    with tempfile.TemporaryDirectory(prefix="salmon-launch-") as tmp:
        folder = Path(work_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "launch_config.json"
        atomic_write_json(config_path, load_config(config))
        result_path = folder / "launch_result.json"
        result_path.unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(CONFIG_DIR / f"{distributed}.yaml"),
            "--num_processes", str(n), "--num_machines", "1", "--main_process_port", str(_free_port()),
            *(["--mixed_precision", "no"] if cpu else []),
            "-m", "salmon_lib.launch", fn, str(config_path), str(result_path),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("OMP_NUM_THREADS", "1")
        if cpu:
            env["ACCELERATE_USE_CPU"] = "true"
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0:
            raise LaunchError(f"{fn} under accelerate launch ({n} processes, {distributed}) exited with "
                              f"{proc.returncode}: {' '.join(cmd)}")
        return json.loads(result_path.read_text()) if result_path.exists() else None


def _main(argv: list[str]) -> None:
    """Entry point of each launched process: run the function, rank 0 writes the result."""
    fn, config_path, result_path = argv
    result = resolve_function(fn)(load_config(config_path))
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(result_path, result)
    _close_process_group()


def _close_process_group() -> None:
    """Wait for every rank, then tear the group down before the interpreter exits.

    Left to interpreter exit, gloo's worker threads are destroyed while still joinable and the
    process aborts ("terminate called without an active exception"), about one run in three on CPU.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    _main(sys.argv[1:])
