"""How long the runner waits on a stage's kernel: a deadline on every wait, so that no headless run
waits forever on a cell, a kernel that does not start or stop, or a kernel that died or froze.

The keys are set like stage parameters (`common.KEY`, `stages.STAGE.KEY` in a preset, `-p STAGE.KEY=V`
or `-p common.KEY=V` on the command line) but belong to the runner: notebooks never see them and
changing one does not make a finished stage stale. Each stage's default cell deadline is its
`Stage.cell_timeout_s` (salmon_lib/stages.py); a notebook cell tagged `quick` gets at most
`quick_cell_timeout_s`. When one passes, the stage fails with one line
(`KernelDeadline`) naming the stage, the cell and how long the runner waited.
"""

from __future__ import annotations

import dataclasses

from ..config import Config, ConfigError


class KernelDeadline(RuntimeError):
    """A wait on a stage's kernel passed its deadline, or the kernel died or froze; the message is
    the one line the runner records as the stage's error."""


@dataclasses.dataclass
class Deadlines(Config):
    # seconds one cell may run before the stage fails (0: no limit); the default is the stage's own
    cell_timeout_s: float = 3600.0
    # seconds a cell tagged `quick` (imports, tables, plots: no model work) may run; the smaller of
    # this and cell_timeout_s applies, so a stuck plot fails in minutes on a preset whose training
    # cells get a day (0: the same as cell_timeout_s)
    quick_cell_timeout_s: float = 600.0
    kernel_start_timeout_s: float = 300.0  # seconds a kernel may take to answer after its launch, imports included
    kernel_stop_timeout_s: float = 60.0  # seconds a kernel may take to exit once its stage is done, then it is killed
    # seconds without a heartbeat before a kernel counts as frozen (a stopped or hung process)
    heartbeat_timeout_s: float = 30.0

    def check(self) -> None:
        super().check()
        for name in ("kernel_start_timeout_s", "kernel_stop_timeout_s", "heartbeat_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (only cell_timeout_s takes 0, for no limit)")


DEADLINE_KEYS = tuple(f.name for f in dataclasses.fields(Deadlines))
