"""Stage 05's costs on the default model, measured side by side in one process.

    python benchmarks/rl.py --json outputs/bench_rl.json [--run RUN] [--steps 3]

- seconds per step split into generate / score / train, for ppo (8 prompts x 1 answer) and grpo
  (2 prompts x 4 answers: the same 8 answers per step);
- rollout tokens/s: the live policy's generate in-process (what `rollout_backend: hf` does), the
  generation interface on a second copy of the model with the policy adapter saved and reloaded
  each step (what a decoupled HF generator would cost), and vLLM when it is importable;
- reward scoring of one rollout batch with the shared-prefix scorer and without it.

Without --run it builds a scratch run: the default model with a zero-initialised SFT adapter (the
policy starts as SmolLM2-Instruct itself) and a random reward-model adapter (costs do not depend on
the weights). With --run it copies that run's prompts.jsonl, sft/ and rm/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from salmon_lib.io import atomic_write_json, read_jsonl  # noqa: E402


def scratch_inputs(folder: Path, source: str | None) -> Path:
    if source:
        for name in ("prompts.jsonl", "sft", "rm"):
            src = Path(source) / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
        return folder
    sys.path.insert(0, str(ROOT / "tests"))
    from rl_fixtures import make_run

    return make_run(folder, model="default", sft_random=False)


def config(run: Path, method: str, steps: int, tokens: int):
    from salmon_lib.rl.config import RLConfig

    per_step = {"ppo": dict(prompts_per_step=8), "grpo": dict(prompts_per_step=2, group_size=4, minibatches=1)}
    return RLConfig.from_dict(dict(run_dir=str(run), model="default", method=method, max_steps=steps,
                                   max_new_tokens=tokens, baseline_prompts=4, heldout_prompts=2,
                                   exclude_used=False, rollout_backend="hf", save_steps=100, **per_step[method]))


def step_seconds(run: Path) -> dict:
    rows = read_jsonl(run / "rl_metrics.jsonl")
    out = {k: sum(r[f"time_{k}"] for r in rows) / len(rows) for k in ("generate", "score", "train")}
    out["total"] = sum(out.values())
    out["answers_per_step_tokens"] = sum(r["length"] for r in rows) / len(rows)
    return out


def rollout_speeds(run: Path, tokens: int, repeats: int = 2) -> dict:
    from salmon_lib.generation import make_generator, vllm_support
    from salmon_lib.models import ModelConfig
    from salmon_lib.rl.stage import open_session

    cfg = config(run, "ppo", 1, tokens)
    s = open_session(cfg)
    prompts = [s.ctx.spec.prompt(r["prompt"]) for r in s.ctx.records[:8]]

    def timed(fn):
        best, toks = float("inf"), 0
        for i in range(repeats):
            t = time.perf_counter()
            comps = fn(i)
            best = min(best, time.perf_counter() - t)
            toks = sum(c.num_tokens for cs in comps for c in cs)
        return {"seconds": best, "tokens": toks, "tok_per_s": toks / best}

    res = {"in_process": timed(lambda i: s.sampler.sample(prompts, 1, tokens, 0.7, 1.0, seed=i))}
    adapter = run / "bench_adapter"
    with make_generator(ModelConfig(spec="default"), backend="hf", progress=False) as gen:
        def synced(i):  # what each step costs when the generator holds its own copy of the model
            path = adapter / f"step{i}"
            s.model.save_pretrained(str(path), selected_adapters=["default"])
            return gen.generate(prompts, n=1, temperature=0.7, top_p=1.0, max_new_tokens=tokens, seed=i,
                                adapter=str(path))
        res["interface_with_adapter_sync"] = timed(synced)
    ok, reason = vllm_support(ModelConfig(spec="default"))
    if ok:
        with make_generator(ModelConfig(spec="default"), backend="vllm", enable_lora=True, progress=False) as gen:
            def vllm(i):
                path = adapter / f"vllm{i}"
                s.model.save_pretrained(str(path), selected_adapters=["default"])
                return gen.generate(prompts, n=1, temperature=0.7, top_p=1.0, max_new_tokens=tokens, seed=i,
                                    adapter=str(path))
            vllm(-1)  # start-up and the first LoRA load are not per-step costs
            res["vllm_with_adapter_sync"] = timed(vllm)
    else:
        res["vllm"] = f"not measured: {reason}"

    # One rollout batch scored: 8 answers, each under its own drawn principles (no two items share
    # a (response, instruction) prefix, which is what the shared-prefix scorer reuses).
    comps = s.sampler.sample(prompts, 1, tokens, 0.7, 1.0, seed=7)
    samples = s.ctx.samples(s.ctx.records[:8], comps, 0)
    from salmon_lib.reward import load_reward

    rm = load_reward(run / "rm")
    items = [(x.instruction, x.response, list(x.drawn.texts)) for x in samples]
    rm.score(items[:2])
    res["score_batch"] = {
        "items": len(items),
        "shared_prefix_s": min(_time(lambda: rm.score(items)) for _ in range(repeats)),
        "unshared_s": min(_time(lambda: rm.score(items, share_prefix=False)) for _ in range(repeats)),
    }
    return res


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--run", help="a run directory with prompts.jsonl, sft/ and rm/ (default: a scratch one)")
    ap.add_argument("--steps", type=int, default=3, help="training steps per method")
    ap.add_argument("--tokens", type=int, default=64, help="answer length limit")
    args = ap.parse_args()

    import torch

    from salmon_lib.rl.stage import prepare_prompts, train

    res = {"load_average_start": os.getloadavg(), "torch_threads": torch.get_num_threads(),
           "device": "cuda" if torch.cuda.is_available() else "cpu", "steps": args.steps, "max_new_tokens": args.tokens}
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp:
        inputs = scratch_inputs(Path(tmp) / "inputs", args.run)
        for method in ("ppo", "grpo"):
            run = Path(tmp) / method
            shutil.copytree(inputs, run)
            cfg = config(run, method, args.steps, args.tokens)
            prepare_prompts(cfg)
            train(cfg, progress=False)
            res[method] = step_seconds(run)
        res["rollouts"] = rollout_speeds(Path(tmp) / "ppo", args.tokens)
    res["load_average_end"] = os.getloadavg()

    print(f"{'seconds per step':18}{'generate':>10}{'score':>8}{'train':>8}{'total':>8}")
    for method in ("ppo", "grpo"):
        r = res[method]
        print(f"{method:18}{r['generate']:10.2f}{r['score']:8.2f}{r['train']:8.2f}{r['total']:8.2f}")
    for name, r in res["rollouts"].items():
        if isinstance(r, dict) and "tok_per_s" in r:
            print(f"rollouts {name:34}{r['tok_per_s']:8.1f} tok/s ({r['tokens']} tokens in {r['seconds']:.2f} s)")
        elif isinstance(r, str):
            print(f"rollouts {name}: {r}")
    sb = res["rollouts"]["score_batch"]
    print(f"scoring {sb['items']} answers: shared prefix {sb['shared_prefix_s']:.2f} s, "
          f"unshared {sb['unshared_s']:.2f} s")
    print(f"load average {res['load_average_start']} -> {res['load_average_end']}")
    if args.json:
        atomic_write_json(args.json, res)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
