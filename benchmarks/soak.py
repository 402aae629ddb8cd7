"""Many consecutive tiny-preset runs beside a CPU-heavy process: does any run hang?

    OMP_NUM_THREADS=1 python benchmarks/soak.py --runs 50 --json outputs/soak/soak.json

Each run is a fresh `python -m salmon_lib run --preset tiny` in its own run folder (all seven
stages, each in its own kernel) while `--hogs` busy-loop processes compete for the cores. A run
that has not ended after `--hang-after` seconds is called a hang: its process group is killed and
the soak goes on. The runner's own deadlines are left at the tiny preset's values, so a stuck
stage shows up as a failed run (its one-line reason kept), not as a hang; the runner's warnings
about lost replies are counted. Prints a line a run and writes every run's figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# lines of the runner's log that say a wait went wrong (salmon_lib/runner/watch.py)
SIGNS = {"lost_reply": "its outputs stand for the lost reply", "deadline": "KernelDeadline",
         "killed_on_stop": "kernel_stop_timeout_s"}


def hog() -> None:
    os.nice(0)
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2147483648


def one_run(run_dir: Path, hang_after: float) -> dict:
    cmd = [sys.executable, "-m", "salmon_lib", "run", "--preset", "tiny", "--run", str(run_dir), "--no-progress"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=hang_after)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        hung = True
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "rc": proc.returncode, "hung": hung,
            **{name: out.count(sign) for name, sign in SIGNS.items()},
            "error": next((line for line in out.splitlines() if line.startswith("error:")), None),
            "tail": out.splitlines()[-3:] if (hung or proc.returncode) else []}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--hogs", type=int, default=1, help="busy-loop processes beside the runs")
    p.add_argument("--hang-after", type=float, default=1200.0,
                   help="seconds after which a run that has not ended counts as a hang and is killed")
    p.add_argument("--dir", default="outputs/soak", help="the runs' folders go under this one (relative to the repo)")
    p.add_argument("--keep", action="store_true", help="keep every run's folder (default: only failed ones)")
    p.add_argument("--json", default=None, help="write the figures here (rewritten after every run)")
    args = p.parse_args()

    base = ROOT / args.dir
    base.mkdir(parents=True, exist_ok=True)
    hogs = [mp.Process(target=hog, daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    result = {"command": " ".join(sys.argv), "hogs": args.hogs, "cpus": os.cpu_count(), "runs": []}
    try:
        for i in range(args.runs):
            run_dir = base / f"run{i:03d}"
            shutil.rmtree(run_dir, ignore_errors=True)
            record = {"run": i, **one_run(run_dir, args.hang_after), "load": load_average()}
            result["runs"].append(record)
            ok = record["rc"] == 0 and not record["hung"]
            if ok and not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
            verdict = "ok" if ok else "HUNG" if record["hung"] else "FAILED"
            print(f"run {i:3d}: {verdict} in {record['seconds']:.0f} s (load {record['load'][0]:.1f}; "
                  f"lost replies {record['lost_reply']}, deadlines {record['deadline']})"
                  + (f": {record['error'] or record['tail']}" if not ok else ""), flush=True)
            runs = result["runs"]
            result["summary"] = {
                "runs": len(runs), "ok": sum(r["rc"] == 0 and not r["hung"] for r in runs),
                "hung": sum(r["hung"] for r in runs), "failed": sum(r["rc"] != 0 and not r["hung"] for r in runs),
                "lost_replies": sum(r["lost_reply"] for r in runs), "deadlines": sum(r["deadline"] for r in runs),
                "seconds_median": sorted(r["seconds"] for r in runs)[len(runs) // 2],
                "seconds_max": max(r["seconds"] for r in runs)}
            if args.json:
                tmp = Path(args.json).with_suffix(".tmp")
                tmp.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(result, indent=1))
                tmp.replace(args.json)
    finally:
        for h in hogs:
            h.terminate()
    print(json.dumps(result.get("summary", {})))
    return 0 if result.get("summary", {}).get("ok") == args.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
