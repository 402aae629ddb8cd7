"""torch threads for worker processes that share this machine's CPU cores.

A spawned process starts torch with a thread per core unless OMP_NUM_THREADS says otherwise; `make`
sets it to 1, a plain `salmon run` does not. Two workers on two cores then run four busy threads:
stage 06's two arms, started that way, took 69 s a training step where one thread each had taken
21 s. Every place that starts several torch workers (the generation pool, stage 06's arms) gives
each its share instead.
"""

from __future__ import annotations

import os


def threads_per_worker(workers: int) -> int:
    """Each of `workers` processes' share of the usable cores (at least 1); OMP_NUM_THREADS, when
    set, is a ceiling."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // max(1, workers))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share


def use_share(workers: int) -> int:
    """Set this process's torch threads to its share (on a machine without CUDA); return it."""
    import torch

    threads = threads_per_worker(workers)
    if not torch.cuda.is_available():
        torch.set_num_threads(threads)
    return threads
