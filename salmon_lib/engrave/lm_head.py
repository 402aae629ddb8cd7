"""TRL's fused LM head, made to score only the answer tokens on a CPU.

TRL's SFT, DPO, GRPO and RLOO trainers project the hidden states through the LM head in vocabulary
tiles and keep per-token log-probabilities instead of the full logits. With Triton (CUDA, XPU) they
project only the positions that carry a label; everywhere else every position, prompt and padding
included, so that a compiling backend (Neuron) sees the same tile shapes on every batch. A CPU
compiles nothing, and there those extra rows are wasted work: on a controllability arm's answers an
epoch took 120.0 s with only the labelled positions scored against 158.0 s, with the same losses
(`benchmarks/sft_batches.py`, RESULTS.md).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def score_labelled_positions_only(on: bool = True) -> bool:
    """Make TRL's fused head take its labelled-positions-only path on a CPU as well (the path it takes
    with Triton; the tiles are then plain torch ops), or with `on=False` restore TRL's own choice
    (benchmarks compare the two). It is read at each forward pass. Returns whether the path is on."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return False
    choose = getattr(trl_utils, "_use_triton", None)
    if choose is None:
        log.debug("trl.trainer.utils has no _use_triton: its fused LM head scores every position on a CPU")
        return False
    original = getattr(choose, "trl_original", choose)
    if not on:
        trl_utils._use_triton = original
        return False
    if choose is original:
        def compact_on_cpu(device) -> bool:
            return device.type == "cpu" or original(device)

        compact_on_cpu.trl_original = original
        trl_utils._use_triton = compact_on_cpu
    return True
