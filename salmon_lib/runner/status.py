"""`python -m salmon_lib status`: what ran in a run directory, what is stale and why, timings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..stages import STAGES, Stage
from .manifest import RUN_YAML, Manifest, pid_alive
from .plan import plan


def stage_status(run_dir: str | Path, stages: list[Stage] | None = None) -> list[dict[str, Any]]:
    """One row per stage: name, status, stale, reasons, wall_s, ended (registered stages first)."""
    stages = list(STAGES if stages is None else stages)
    run_dir = Path(run_dir)
    manifest = Manifest(run_dir)
    run_yaml = run_dir / RUN_YAML
    resolved = yaml.safe_load(run_yaml.read_text()) if run_yaml.exists() else {}
    rows = []
    for p in plan(stages, run_dir, manifest, (resolved or {}).get("stages") or {}):
        record = p.record or {}
        status = record.get("status", "not run")
        if status == "running" and not pid_alive(record.get("pid", 0)):
            status = "interrupted"
        rows.append(dict(stage=p.stage.name, status=status, stale=p.stale and p.record is not None,
                         reasons=p.reasons, wall_s=record.get("wall_s"), ended=record.get("ended")))
    for name, record in manifest.stages.items():
        if name not in {s.name for s in stages}:
            rows.append(dict(stage=name, status=record.get("status"), stale=True, reasons=["not a registered stage"],
                             wall_s=record.get("wall_s"), ended=record.get("ended")))
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'stage':<16} {'status':<12} {'stale':<6} {'wall':>9}  {'ended (UTC)':<19}  why"]
    for r in rows:
        wall = f"{r['wall_s']:.1f} s" if r["wall_s"] is not None else "-"
        ended = (r["ended"] or "-")[:19].replace("T", " ")
        why = "; ".join(r["reasons"]) if r["stale"] or r["status"] != "finished" else ""
        lines.append(f"{r['stage']:<16} {r['status']:<12} {'yes' if r['stale'] else 'no':<6} {wall:>9}  "
                     f"{ended:<19}  {why}")
    return "\n".join(lines)

