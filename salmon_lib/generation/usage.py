"""How much a stage generated: one JSON line per generate call, for the runner's per-stage figures.

The runner points `SALMON_USAGE_FILE` at `<run>/usage/<stage>.jsonl` for the stage's kernel; every
backend's `generate` appends `{backend, sequences, tokens, seconds}` there. Outside the runner
(a notebook opened by hand, a test) the variable is unset and nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "SALMON_USAGE_FILE"


def record(backend: str, sequences: int, tokens: int, seconds: float) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"backend": backend, "sequences": sequences, "tokens": tokens, "seconds": round(seconds, 3)})
    with open(path, "a", encoding="utf-8") as f:  # one short O_APPEND write per call
        f.write(line + "\n")


def summarize(path: str | Path) -> dict | None:
    """Totals of a usage file: {calls, sequences, tokens, seconds, backends}; None if it does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    total = {"calls": 0, "sequences": 0, "tokens": 0, "seconds": 0.0, "backends": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed kernel
        total["calls"] += 1
        total["sequences"] += rec.get("sequences", 0)
        total["tokens"] += rec.get("tokens", 0)
        total["seconds"] += rec.get("seconds", 0.0)
        if rec.get("backend") not in total["backends"]:
            total["backends"].append(rec.get("backend"))
    total["seconds"] = round(total["seconds"], 1)
    return total
