"""Log-probs already computed, kept on disk so that a later stage or a rerun reads them back.

Stage 03's contrastive judge and stage 04's contrastive reward score the same rows (the flip
probes, the HHH sample) with the same model and adapter, and a rerun of a stage scores them all
again. An entry is keyed by everything its values depend on: the base model's weights (a content
hash of the folder's files), the adapter's weights, dtype, device and quantization, and the row's
token ids and queried positions. A retrained adapter or another model never meets an old entry;
there is nothing to invalidate by hand. One JSONL file per model identity, appended after each
scoring call, so an interrupted stage keeps what it had scored.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..io import RecordLog
from ..models import ModelConfig, adapter_digest, resolve_model_dir

if TYPE_CHECKING:
    from .prefix_scoring import ScoreRow


@functools.lru_cache(maxsize=8)
def _folder_digest(folder: Path, stamp: tuple) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def model_digest(cfg: ModelConfig) -> str:
    """Content hash of the base model's files (a Hub id stands for itself: it is read offline)."""
    location = resolve_model_dir(cfg)
    if isinstance(location, str):
        return f"hub:{location}"
    # the stamp (names, sizes, mtimes) re-hashes a folder whose files changed in this process
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(location.iterdir()) if p.is_file())
    return _folder_digest(location, stamp)


def run_score_cache(run_dir: str | Path) -> Path:
    """Where a run keeps its log-probs (not an artifact of any stage: deleting it only costs time)."""
    return Path(run_dir) / "cache" / "logprobs"


class ScoreCache:
    """Query log-probs of `ScoreRow`s for one model (weights, dtype, device, quantization)."""

    def __init__(self, folder: str | Path, cfg: ModelConfig, dtype: str, device: str):
        identity = json.dumps([model_digest(cfg), cfg.quantization, dtype, device])
        self.log = RecordLog(Path(folder) / f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}.jsonl")
        self._values: dict[str, list[float]] | None = None

    @staticmethod
    def keys(rows: list[ScoreRow], adapter: str | None) -> list[str]:
        digest = adapter_digest(adapter)
        return [hashlib.sha256(json.dumps([digest, r.ids, r.queries]).encode()).hexdigest()[:32] for r in rows]

    def values(self) -> dict[str, list[float]]:
        if self._values is None:
            self._values = {r["id"]: r["logprobs"] for r in self.log.records()}
        return self._values

    def add(self, keys: list[str], scores: list[list[float]]) -> None:
        self.log.append({"id": k, "logprobs": s} for k, s in zip(keys, scores))
        self.values().update(zip(keys, scores))
