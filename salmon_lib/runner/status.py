"""`python -m salmon_lib status`: what ran in a run directory, what is stale and why, timings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import DataError, read_yaml
from ..stages import STAGES, Stage
from . import metrics
from .manifest import RUN_YAML, Manifest, pid_alive
from .plan import plan


def stage_status(run_dir: str | Path, stages: list[Stage] | None = None) -> list[dict[str, Any]]:
    """One row per stage: name, status, stale, reasons, ended, and the stage's figures (wall and CPU
    seconds, tokens generated, examples, examples per minute: `metrics.stage_figures`), registered
    stages first."""
    stages = list(STAGES if stages is None else stages)
    run_dir = Path(run_dir)
    manifest = Manifest(run_dir)
    run_yaml = run_dir / RUN_YAML
    resolved = read_yaml(run_yaml, "run parameters file") if run_yaml.exists() else {}
    if not isinstance(resolved, dict):
        raise DataError(f"{run_yaml}: not the runner's record of resolved parameters (expected a mapping)")
    rows = []
    for p in plan(stages, run_dir, manifest, (resolved or {}).get("stages") or {}):
        record = p.record or {}
        status = record.get("status", "not run")
        if status == "running" and not pid_alive(record.get("pid", 0)):
            status = "interrupted"
        rows.append(dict(stage=p.stage.name, status=status, stale=p.stale and p.record is not None,
                         reasons=p.reasons, ended=record.get("ended"),
                         **metrics.stage_figures(run_dir, p.stage.name, p.stage.outputs, p.record)))
    for name, record in manifest.stages.items():
        if name not in {s.name for s in stages}:
            rows.append(dict(stage=name, status=record.get("status"), stale=True, reasons=["not a registered stage"],
                             ended=record.get("ended"), **metrics.stage_figures(run_dir, name, [], record)))
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    def num(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [f"{'stage':<16} {'status':<12} {'stale':<6} {'wall s':>8} {'cpu s':>8} {'tokens':>8} {'tok/s':>6} "
             f"{'examples':>8} {'ex/min':>7}  {'ended (UTC)':<19}  why"]
    for r in rows:
        ended = (r["ended"] or "-")[:19].replace("T", " ")
        why = "; ".join(r["reasons"]) if r["stale"] or r["status"] != "finished" else ""
        lines.append(f"{r['stage']:<16} {r['status']:<12} {'yes' if r['stale'] else 'no':<6} "
                     f"{num(r['wall_s'], '.1f'):>8} {num(r['cpu_s'], '.1f'):>8} {num(r['tokens'], 'd'):>8} "
                     f"{num(r['tokens_per_s'], '.1f'):>6} {num(r['examples'], 'd'):>8} "
                     f"{num(r['examples_per_min'], '.1f'):>7}  {ended:<19}  {why}")
    done = [r for r in rows if r["wall_s"] is not None]
    if done:
        wall, cpu = sum(r["wall_s"] for r in done), sum(r["cpu_s"] or 0 for r in done)
        lines.append(f"{'total':<16} {'':<12} {'':<6} {wall:>8.1f} {cpu:>8.1f} "
                     f"{sum(r['tokens'] or 0 for r in done):>8d}")
    return "\n".join(lines)
