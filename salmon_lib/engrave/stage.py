"""Stage 02, principle engraving: `run(cfg)` is the whole stage (training code in `train.py`)."""

from __future__ import annotations

from .config import EngraveConfig


def run(cfg: EngraveConfig) -> dict:
    """Set aside checkpoints made with other settings (back in place if training fails), then
    train in this process, or with one process per GPU under `accelerate launch` when several are
    visible (`cpu_processes` on a CPU); returns the training summary (also in `engrave_stats.json`)."""
    from pathlib import Path

    from ..io import restored_on_failure
    from ..launch import launch
    from .train import CHECKPOINTS, finish, reset_stale_checkpoints

    with restored_on_failure(Path(cfg.run_dir) / CHECKPOINTS):
        reset_stale_checkpoints(cfg)
        summary = launch("salmon_lib.engrave.train:engrave_entry", cfg.to_dict(), distributed=cfg.distributed,
                         cpu_processes=cfg.cpu_processes)
    return finish(cfg, summary)
