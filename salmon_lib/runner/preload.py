"""What a stage kernel imports while it starts, before its notebook's first cell: the heavy
libraries every stage needs. The runner starts the next stage's kernel while the current stage
runs (`runner.kernel.KernelPool`), so these ~7 s of imports overlap the current stage's work
instead of adding to the next one's."""

from __future__ import annotations

import importlib

MODULES = ("torch", "transformers", "peft")


def preload() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the notebook's own import reports it, in the cell that needs it
            pass
