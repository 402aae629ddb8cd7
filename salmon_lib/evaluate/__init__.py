"""Stage 06: evaluation and the controllability report.

Every policy of a run (base, SFT, stage 05's RL policy, each controllability arm, any adapter the
user adds) answers stage 05's held-out prompts plus probe prompts; the answers are scored by the
reward model under each principle, compared head-to-head with SFT's, measured for behaviour, and
written up as report.json, samples.jsonl, figures and a self-contained report.html. `steer` and
`chat` are the command-line companions. Importing this package does not import torch.
"""

from .config import EvaluateConfig

__all__ = ["EvaluateConfig"]
