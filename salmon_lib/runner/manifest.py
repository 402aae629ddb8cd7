"""The run manifest (`outputs/<run>/manifest.json`): what each stage ran with and produced.

Per stage it records status, parameters, content hashes of the inputs and the notebook, the
outputs (hash, size, file count), start/end, wall time and the versions of the key packages. The
runner decides from it whether a stage can be skipped; `status` reads it to say what is stale.
Every save is atomic, so a killed runner leaves the previous manifest, never half of one.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..io import DataError, atomic_write_json, read_json
from ..provenance import artifact_path
from ..stages import PROJECT_ROOT

KEY_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm", "papermill")
MANIFEST = "manifest.json"
RUN_YAML = "run.yaml"  # the parameters every stage of the last run resolved to (what `status` compares against)


def missing_artifacts(run_dir: Path, names: list[str]) -> list[str]:
    out = []
    for name in names:
        path, optional = artifact_path(run_dir, name)
        if not optional and not path.exists():
            out.append(name)
    return out


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10,
        )
        if commit.returncode == 0:
            versions["salmon_lib"] = commit.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return versions


def now() -> str:
    # UTC with milliseconds: the runner orders stages by comparing these strings
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Manifest:
    """manifest.json of one run directory: {"run", "stages": {name: record}}."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST
        self.data: dict[str, Any] = {"run": self.run_dir.name, "stages": {}}
        if self.path.exists():
            data = read_json(self.path)
            if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
                raise DataError(f"{self.path}: not a run manifest (no 'stages' mapping)")
            self.data = data

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.data["stages"]

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.stages.get(stage)

    def put(self, stage: str, record: dict[str, Any]) -> None:
        self.stages[stage] = record
        self.save()

    def save(self) -> None:
        self.data["updated"] = now()
        atomic_write_json(self.path, self.data)
