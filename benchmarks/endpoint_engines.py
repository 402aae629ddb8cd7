"""Stage 06's endpoint workload on one core: the HF backend with a LoRA adapter against vLLM on the
adapter merged into the weights (`generation/merged_vllm.py`), each with float32 and bfloat16 weights.

    OMP_NUM_THREADS=1 python benchmarks/endpoint_engines.py --run outputs/demo --json outputs/bench_endpoints.json

The run's SFT adapter (or `--adapter`) answers the registered endpoint's prompts (`--prompts`
prompts no arm trained on, n=`--n`, up to `--max-new-tokens` tokens, stage 06's temperature and
top_p, one seed per prompt) once per engine and weights' dtype (`--dtypes`), in one process.
Reported per engine: wall and CPU seconds (vLLM's split into starting the engine on the base,
loading the merged weights into it, then generating), tokens per second of generation, and the
answers' mean length and finished share, which should agree within sampling noise: the engines draw
from the same distribution with different random streams.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's salmon_lib wins


def timed_cpu(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, round(time.perf_counter() - wall, 1), round(time.process_time() - cpu, 1)


def summary(completions) -> dict:
    flat = [c for row in completions for c in row]
    return {"answers": len(flat), "tokens": sum(c.num_tokens for c in flat),
            "mean_tokens": round(sum(c.num_tokens for c in flat) / len(flat), 1),
            "finished": round(sum(c.finish_reason == "stop" for c in flat) / len(flat), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished demo run (its sft/ and prompts)")
    parser.add_argument("--json", required=True, help="write the figures here")
    parser.add_argument("--adapter", help="a LoRA adapter folder (default: the run's sft/)")
    parser.add_argument("--model", default="default", help="the base model spec")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="the engines' weights, comma-separated")
    args = parser.parse_args(argv)

    from salmon_lib.evaluate.config import EvaluateConfig
    from salmon_lib.evaluate.experiment import endpoint_prompts
    from salmon_lib.evaluate.policies import discover
    from salmon_lib.generation import vllm_support
    from salmon_lib.generation.hf import HFGenerator
    from salmon_lib.generation.merged_vllm import MergedAdapterVLLM
    from salmon_lib.io import atomic_write_json
    from salmon_lib.models import ModelConfig

    stage = EvaluateConfig(run_dir=args.run)
    sft = next(p for p in discover(args.run, include_base=False) if p.name == "sft")
    adapter = args.adapter or sft.adapter
    prompts, _ = endpoint_prompts(args.run, args.prompts)
    rendered = [sft.prompt(q.prompt) for q in prompts]
    kw = dict(n=args.n, temperature=stage.temperature, top_p=stage.top_p, max_new_tokens=args.max_new_tokens,
              stop=sft.spec.format.stop, seed=0, adapter=adapter)
    figures = dict(machine=f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
                           f"at start, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
                   adapter=adapter, prompts=len(prompts), n=args.n, max_new_tokens=args.max_new_tokens,
                   temperature=stage.temperature, top_p=stage.top_p)
    for dtype in args.dtypes.split(","):
        cfg = ModelConfig(spec=args.model, dtype=dtype)
        hf, load_s, load_cpu = timed_cpu(lambda: HFGenerator(cfg, batch_size=stage.batch_size, progress=False))
        out, wall, cpu = timed_cpu(lambda: hf.generate(rendered, **kw))
        hf.close()
        figures[f"hf_{dtype}"] = dict(load_s=load_s, load_cpu_s=load_cpu, generate_s=wall, generate_cpu_s=cpu,
                                      tok_s=round(summary(out)["tokens"] / wall, 1), **summary(out))
        ok, why = vllm_support(cfg)
        if ok:
            gen, start_s, start_cpu = timed_cpu(lambda: MergedAdapterVLLM(cfg, progress=False))
            _, swap_s, swap_cpu = timed_cpu(lambda: gen.serve(adapter))
            out, wall, cpu = timed_cpu(lambda: gen.generate(rendered, **kw))
            gen.close()
            figures[f"vllm_merged_{dtype}"] = dict(
                start_s=start_s, start_cpu_s=start_cpu, swap_s=swap_s, swap_cpu_s=swap_cpu, generate_s=wall,
                generate_cpu_s=cpu, tok_s=round(summary(out)["tokens"] / wall, 1), **summary(out))
        else:
            figures[f"vllm_skipped_{dtype}"] = why
    atomic_write_json(args.json, figures)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
