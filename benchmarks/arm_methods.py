"""Which RL method moves a policy furthest per CPU-second? The positive control for every method.

    OMP_NUM_THREADS=1 python benchmarks/arm_methods.py --json outputs/bench_arm_methods.json [--steps 6]

Each method trains from the same policy (the default model with a zero-initialised SFT adapter, so
it starts as SmolLM2-Instruct itself) on the same 2-4 prompts with a programmatic reward that
prefers fewer words and no other term (`tests/rl_fixtures.ShorterIsBetter`: no KL, no length or
unfinished term), as `tests/test_rl_positive_control.py` does. Reported per method: the mean answer
tokens of the first two and the last two steps (each step samples the same prompts, so they compare
like with like), the drop, the process's CPU seconds, and the drop per CPU-minute. One process,
one method after the other; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rl_fixtures import POSITIVE_CONTROL  # noqa: E402

from salmon_lib.io import atomic_write_json, read_jsonl  # noqa: E402


def measure(inputs: Path, method: str, steps: int, tokens: int) -> dict:
    from rl_fixtures import ShorterIsBetter, positive_control_config

    from salmon_lib.rl.stage import prepare_prompts, train

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / method
        shutil.copytree(inputs, run)
        cfg = positive_control_config(run, method, steps, tokens)
        prepare_prompts(cfg)
        cpu, wall = time.process_time(), time.perf_counter()
        train(cfg, reward=ShorterIsBetter(), progress=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        lengths = [row["length"] for row in read_jsonl(run / "rl_metrics.jsonl")]
    early, late = sum(lengths[:2]) / 2, sum(lengths[-2:]) / 2
    return {"method": method, "steps": steps, "lengths": lengths, "early": early, "late": late,
            "drop": early - late, "relative_drop": (early - late) / early, "cpu_s": cpu, "wall_s": wall,
            "drop_per_cpu_minute": 60 * (early - late) / cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--methods", nargs="+", default=list(POSITIVE_CONTROL), choices=list(POSITIVE_CONTROL))
    args = ap.parse_args(argv)
    from rl_fixtures import make_run

    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_run(Path(tmp) / "inputs", model="default", sft_random=False)
        rows = [measure(inputs, m, args.steps, args.max_new_tokens) for m in args.methods]
    print(f"{'method':<10} {'early':>6} {'late':>6} {'drop':>6} {'cpu s':>7} {'drop/cpu-min':>13}")
    for r in rows:
        print(f"{r['method']:<10} {r['early']:>6.1f} {r['late']:>6.1f} {r['drop']:>6.1f} {r['cpu_s']:>7.1f} "
              f"{r['drop_per_cpu_minute']:>13.2f}")
    if args.json:
        atomic_write_json(args.json, {"rows": rows, "steps": args.steps, "max_new_tokens": args.max_new_tokens})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
