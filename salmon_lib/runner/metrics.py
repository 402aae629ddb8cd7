"""Per-stage figures of a run, so every change is judged on the same numbers: wall and CPU time,
tokens generated, examples produced and examples per minute.

Wall time and kernel CPU time come from the manifest; CPU time is what to compare when the
machine is shared (wall time then depends on everybody else's load). Tokens come from the usage
file the stage's generators wrote (`salmon_lib.generation.usage`). Examples are the records the
stage exists to produce, read from its outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..generation import usage

USAGE_DIR = "usage"

# stage -> (file, key) whose value counts the examples the stage produced; stages not listed
# count the lines of their first declared .jsonl output.
EXAMPLES = {
    "self_align": ("self_align_stats.json", "kept"),  # kept records, identity ones included: stage 02's data
    "engrave": ("engrave_stats.json", "examples"),  # examples the SFT trained on
    "reward_model": ("reward_stats.json", "train_pairs"),  # preference examples the RM trained on
}


def usage_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / USAGE_DIR / f"{stage}.jsonl"


def examples(run_dir: Path, stage: str, outputs: list[str]) -> int | None:
    run_dir = Path(run_dir)
    if stage in EXAMPLES:
        name, key = EXAMPLES[stage]
        try:
            return int(json.loads((run_dir / name).read_text(encoding="utf-8"))[key])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    for name in outputs:
        path = run_dir / name.rstrip("?")
        if path.suffix == ".jsonl" and path.is_file():
            with open(path, encoding="utf-8") as f:
                return sum(1 for line in f if line.strip())
    return None


def stage_figures(run_dir: Path, stage: str, outputs: list[str], record: dict | None) -> dict[str, Any]:
    """{wall_s, cpu_s, tokens, tokens_per_s, examples, examples_per_min, backends} of one stage."""
    record = record or {}
    wall = record.get("wall_s")
    used = usage.summarize(usage_path(run_dir, stage)) or {}
    n = examples(run_dir, stage, outputs) if record.get("status") == "finished" else None
    gen_s = used.get("seconds")
    return {
        "wall_s": wall, "cpu_s": record.get("cpu_s"),
        "tokens": used.get("tokens"), "generate_s": gen_s,
        "tokens_per_s": round(used["tokens"] / gen_s, 1) if gen_s else None,
        "backends": used.get("backends"),
        "examples": n, "examples_per_min": round(60 * n / wall, 1) if n is not None and wall else None,
    }
