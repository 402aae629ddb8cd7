"""Stage 02, principle engraving: `run(cfg)` is the whole stage (training code in `train.py`)."""

from __future__ import annotations

from .config import EngraveConfig


def run(cfg: EngraveConfig) -> dict:
    """Drop checkpoints made with other settings, then train in this process, or with one process
    per GPU under `accelerate launch` when several are visible; returns the training summary (also
    in `engrave_stats.json`)."""
    from ..runner.launch import launch
    from .train import reset_stale_checkpoints

    reset_stale_checkpoints(cfg)
    return launch("salmon_lib.engrave.train:engrave_entry", cfg.to_dict(), distributed=cfg.distributed)
