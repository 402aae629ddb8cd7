"""What a run recorded about how its stages ran: the parameters the runner wrote into `run.yaml`,
and the base model, for stage 06 and the commands that get only `--run`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..io import DataError


def recorded_params(run_dir: str | Path, stage: str) -> dict:
    """The parameters `stage` ran with, as the runner recorded them (empty without run.yaml)."""
    path = Path(run_dir) / "run.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({err})") from None
    return dict(((data.get("stages") or {}).get(stage)) or {})


def base_model_of(run_dir: str | Path) -> str:
    """The base model spec of a run: the one the runner recorded for stage 06 or 02, else the
    folder stage 02's adapter names as its base."""
    for stage in ("evaluate", "engrave"):
        model = recorded_params(run_dir, stage).get("model")
        if isinstance(model, str):
            return model
    cfg = Path(run_dir) / "sft" / "adapter_config.json"
    if cfg.is_file():
        base = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if isinstance(base, str) and Path(base).is_dir():
            return base
    raise DataError(f"{run_dir}: cannot tell the base model (no run.yaml and no usable sft/adapter_config.json): "
                    "pass --model")
