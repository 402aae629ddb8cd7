"""Where a run resumes from, and the budget that ends it cleanly.

A checkpoint is one file per saved step (`step-000005.pt`, written atomically, the last `keep`
kept) holding whatever the method needs to continue: adapter weights, optimiser and scheduler
state, the step. Every random choice of a step derives from (seed, step), so the step is the whole
RNG state: a resumed run samples, draws and shuffles exactly what an uninterrupted one does.

`signature.json` records the settings and inputs a folder's checkpoints were made with; under any
other settings they are deleted rather than resumed (a rerun after sft/, rm/ or a principle changed
would otherwise continue the old run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ..io import atomic_path, atomic_write_json, read_json

log = logging.getLogger(__name__)

SIGNATURE_FILE = "signature.json"
_STEP = re.compile(r"^step-(\d+)\.pt$")


def step_seed(seed: int, step: int, purpose: str) -> int:
    """A 63-bit seed for one random choice of one step (never Python's salted `hash()`)."""
    digest = hashlib.sha256(f"{seed}\x1f{step}\x1f{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def signature_digest(signature: Any) -> str:
    return hashlib.sha256(json.dumps(signature, sort_keys=True, default=str).encode()).hexdigest()


class Checkpoints:
    def __init__(self, folder: str | Path, signature: Any, resume: bool = True, keep: int = 2):
        self.folder, self.keep = Path(folder), keep
        self.signature = signature_digest(signature)
        sig_path = self.folder / SIGNATURE_FILE
        if self.folder.is_dir():
            old = read_json(sig_path).get("digest") if sig_path.is_file() else None
            if not resume or old != self.signature:
                log.warning("%s: %s; starting from scratch", self.folder,
                            "resume is off" if not resume else "made with other settings or inputs")
                shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(sig_path, {"digest": self.signature, "signature": signature})

    def steps(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _STEP.match(p.name)))

    def save(self, step: int, state: dict) -> Path:
        import torch

        path = self.folder / f"step-{step:06d}.pt"
        with atomic_path(path) as tmp:
            torch.save({"step": step, **state}, tmp)
        for old in self.steps()[:-self.keep]:
            (self.folder / f"step-{old:06d}.pt").unlink(missing_ok=True)
        return path

    def latest(self) -> dict | None:
        """The last saved state (with its "step"), or None."""
        import torch

        steps = self.steps()
        if not steps:
            return None
        path = self.folder / f"step-{steps[-1]:06d}.pt"
        log.info("resuming from %s", path)
        return torch.load(path, map_location="cpu", weights_only=False)


class Budget:
    """`max_minutes` of wall time from construction (0: unlimited)."""

    def __init__(self, max_minutes: float):
        self.limit = max_minutes * 60.0
        self.start = time.monotonic()

    def exceeded(self) -> bool:
        return bool(self.limit) and time.monotonic() - self.start >= self.limit
