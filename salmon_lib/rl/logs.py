"""rl_metrics.jsonl (one row per step, also to TensorBoard when asked) and rollouts.jsonl (one row
per sampled answer: prompt id, principles drawn, answer, every reward term, finished or not).

Both are `RecordLog`s keyed by step / rollout id: a resumed run that redoes a step after its last
checkpoint writes nothing twice. A run that starts at step 0 starts them empty (`start_logs`).
"""

from __future__ import annotations

import numbers
from pathlib import Path

from ..io import RecordLog

# The columns every method's metrics rows share (None where a method has no such quantity).
METRIC_KEYS = ("step", "reward", "score", "rm", "rm_raw", "unfinished", "length_term", "kl_penalty", "kl", "entropy",
               "length", "finished", "clip_fraction", "value_loss", "policy_loss", "time_generate", "time_score",
               "time_train")


class MetricsLog:
    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None):
        self.log = RecordLog(path, key="step")
        self.writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard_dir))

    def append(self, row: dict) -> None:
        row = {k: row.get(k) for k in METRIC_KEYS} | {k: v for k, v in row.items() if k not in METRIC_KEYS}
        new = row["step"] not in self.log
        self.log.append([row])
        if self.writer is not None and new:
            for key, value in row.items():
                if key != "step" and isinstance(value, numbers.Number) and not isinstance(value, bool):
                    self.writer.add_scalar(f"rl/{key}", value, row["step"])
            self.writer.flush()

    def records(self) -> list[dict]:
        return self.log.records()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def start_logs(paths, start: int) -> None:
    """Before training from step `start`: a run from step 0 (a first run, `resume: false`, or changed
    settings whose checkpoints were dropped) empties both logs. Their rows are keyed by step alone,
    so the rows of an earlier run would otherwise stand for this run's steps and be read back as its
    metrics; a resumed run keeps the rows up to its checkpoint."""
    if start == 0:
        Path(paths.metrics).unlink(missing_ok=True)
        Path(paths.rollouts).unlink(missing_ok=True)


def rollout_record(step: int, index: int, sample, terms: dict, extra: dict | None = None) -> dict:
    return {"id": f"{step}:{sample.prompt_id}:{index}", "step": step, "prompt_id": sample.prompt_id,
            "question_type": sample.question_type, "principles": list(sample.drawn.principles),
            "interventions": list(sample.drawn.interventions),
            "response": sample.response, "tokens": sample.tokens, "finished": sample.finished,
            **{k: round(v, 6) for k, v in terms.items()}, **(extra or {})}
