"""Generation and judge-scoring throughput, side by side in one run, on the default model.

    python benchmarks/generation.py --json outputs/bench_generation.json [--prompts-file RUN/prompts.jsonl]

Generation (--prompts requests x n=2 x up to 128 new tokens, T=0.7, top_p=0.95, stopping at the
chat format's end of turn). The requests are a real prompt pool: the shipped seed queries (or a
run's prompts.jsonl), shuffled, so their lengths and the answers' lengths vary as in a stage.
HF figures are interleaved (--repeats rounds of backend then plain) and the best round of each is
kept; CPU seconds of this process are reported beside wall seconds, since on a shared machine
wall time measures everybody's load:
  hf_tok_s        our HF backend (length-sorted batches, finished rows leave the batch, exact top-p
                  over the most likely tokens)
  hf_naive_tok_s  plain `model.generate`, prompts in the given order, one batch per 8 prompts
  vllm_tok_s      our vLLM backend
  vllm_raw_tok_s  vLLM's own `LLM.generate` on the same engine, without our wrapper
Judge scoring (16 instruction/output pairs x 8 principles, both option tokens):
  options_shared_s    HF backend, the long shared prefix computed once per pair
  options_unshared_s  HF backend, every prompt computed in full
Without vLLM installed the vLLM figures are null and `vllm_skipped` says why.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's salmon_lib wins

def prompt_pool(path: str | None, count: int, seed: int) -> list[str]:
    """`count` requests from a run's prompts.jsonl, or from the shipped seed queries, shuffled."""
    import random

    from salmon_lib.io import read_jsonl, read_yaml

    if path:
        pool = [r["prompt"] for r in read_jsonl(path)]
    else:
        pool = read_yaml(Path(__file__).resolve().parents[1] / "salmon_lib/prompts/data/seed_queries.yaml")["queries"]
    random.Random(seed).shuffle(pool)
    return (pool * (count // len(pool) + 1))[:count]


PRINCIPLES = [
    "Prefer the answer that is factually correct.", "Prefer the answer that admits what it does not know.",
    "Prefer the answer that helps the user most.", "Prefer the answer that avoids harm to anyone.",
    "Prefer the answer that is clear and well organised.", "Prefer the answer that stays on the question.",
    "Prefer the answer that is concise without leaving out what matters.",
    "Prefer the answer that treats people fairly and respectfully.",
]


def count_until_eos(rows, eos_ids: set[int]) -> int:
    total = 0
    for row in rows:
        n = len(row)
        for k, tok in enumerate(row):
            if tok in eos_ids:
                n = k + 1
                break
        total += n
    return total


def naive_hf(model, tokenizer, prompts, n, max_new_tokens, seed) -> int:
    """The plain way: batches of 8 in the given order, padded by the tokenizer."""
    import torch

    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    tokens = 0
    eos = {tokenizer.eos_token_id}
    for b in range(0, len(prompts), 8):
        enc = tokenizer(prompts[b:b + 8], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, temperature=0.7, top_p=0.95, top_k=0, num_return_sequences=n,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        tokens += count_until_eos(out[:, enc["input_ids"].shape[1]:].tolist(), eos)
    return tokens


def judge_prompts(fmt, pairs):
    prompts = []
    for instruction, a, b in pairs:
        head = f"Instruction: {instruction}\n\nOutput (a):\n{a}\n\nOutput (b):\n{b}\n\n"
        for p in PRINCIPLES:
            prompts.append(fmt.prompt(head + f"Principle: {p}\nWhich output follows the principle better?",
                                      prefill="Output ("))
    return prompts


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def timed_cpu(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="write the figures here")
    parser.add_argument("--model", default="default", help="model spec")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--prompts-file", help="a run's prompts.jsonl (default: the shipped seed queries)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of the two HF figures")
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=16, help="instruction/output pairs for the judge figures")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM figures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from salmon_lib.chat_format import get_format
    from salmon_lib.generation import vllm_support
    from salmon_lib.generation.hf import HFGenerator
    from salmon_lib.io import atomic_write_json
    from salmon_lib.models import ModelConfig

    fmt = get_format("chatml")
    cfg = ModelConfig(spec=args.model)
    requests = prompt_pool(args.prompts_file, args.prompts, args.seed)
    prompts = [fmt.prompt(r) for r in requests]
    gen_kw = dict(n=args.n, temperature=0.7, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=args.seed)
    figures = dict(machine=f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
                           f"at start, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
                   model=args.model, prompts=args.prompts, n=args.n, max_new_tokens=args.max_new_tokens,
                   pairs=args.pairs, principles=len(PRINCIPLES))

    hf = HFGenerator(cfg, progress=False)
    lengths = [len(ids) for ids in hf.encode_prompts(prompts)]
    figures.update(prompt_pool=args.prompts_file or "seed queries", prompt_tokens_min=min(lengths),
                   prompt_tokens_max=max(lengths), prompt_tokens_mean=sum(lengths) / len(lengths))
    hf.generate(prompts[:2], max_new_tokens=4)  # warm-up
    naive_hf(hf.model, hf.tokenizer, prompts[:2], 1, 4, 0)
    rounds = {"hf": [], "hf_naive": []}
    for _ in range(args.repeats):  # interleaved, so that a change of load hits both
        outs, wall, cpu = timed_cpu(lambda: hf.generate(prompts, stop=fmt.stop, **gen_kw))
        rounds["hf"].append((sum(c.num_tokens for o in outs for c in o), wall, cpu))
        tokens, wall, cpu = timed_cpu(lambda: naive_hf(hf.model, hf.tokenizer, prompts, args.n, args.max_new_tokens,
                                                       args.seed))
        rounds["hf_naive"].append((tokens, wall, cpu))
    for name, runs in rounds.items():
        tokens, wall, cpu = min(runs, key=lambda r: r[1])
        figures.update({f"{name}_tok_s": tokens / wall, f"{name}_tokens": tokens, f"{name}_cpu_s": cpu,
                        f"{name}_tok_per_cpu_s": tokens / cpu, f"{name}_rounds": runs})

    # Judge inputs from the model's own answers: two samples per instruction, as stage 03 makes them.
    pairs = [(requests[i], outs[i][0].text, outs[i][-1].text) for i in range(min(args.pairs, len(outs)))]
    judge = judge_prompts(fmt, pairs)
    hf.share_prefix = True
    shared, figures["options_shared_s"] = timed(lambda: hf.score_options(judge, ["a", "b"]))
    hf.share_prefix = False
    unshared, figures["options_unshared_s"] = timed(lambda: hf.score_options(judge, ["a", "b"]))
    figures["options_max_abs_diff"] = max(abs(x - y) for r, s in zip(shared, unshared) for x, y in zip(r, s))
    figures["judge_prompt_tokens_mean"] = sum(map(len, hf.encode_prompts(judge))) / len(judge)
    hf.close()

    figures.update(vllm_tok_s=None, vllm_raw_tok_s=None, vllm_options_s=None, vllm_startup_s=None)
    ok, reason = (False, "--no-vllm given") if args.no_vllm else vllm_support(cfg)
    if ok:
        from vllm import SamplingParams

        from salmon_lib.generation.vllm_backend import VLLMGenerator

        gen, figures["vllm_startup_s"] = timed(lambda: VLLMGenerator(cfg, progress=False))
        with gen:
            gen.generate(prompts[:2], max_new_tokens=4)  # warm-up
            gen.llm.reset_prefix_cache()
            outs, secs = timed(lambda: gen.generate(prompts, stop=fmt.stop, **gen_kw))
            figures["vllm_tok_s"] = sum(c.num_tokens for o in outs for c in o) / secs
            gen.llm.reset_prefix_cache()
            params = SamplingParams(
                n=args.n, temperature=0.7, top_p=0.95, max_tokens=args.max_new_tokens, seed=args.seed
            )
            raw, secs = timed(lambda: gen.llm.generate(prompts, params, use_tqdm=False))
            figures["vllm_raw_tok_s"] = sum(len(c.token_ids) for r in raw for c in r.outputs) / secs
            gen.llm.reset_prefix_cache()
            _, figures["vllm_options_s"] = timed(lambda: gen.score_options(judge, ["a", "b"]))
    else:
        figures["vllm_skipped"] = reason

    atomic_write_json(args.json, figures)
    print(f"{'figure':<22}{'value':>12}")
    for key in ("hf_tok_s", "hf_naive_tok_s", "vllm_tok_s", "vllm_raw_tok_s", "options_shared_s",
                "options_unshared_s", "vllm_options_s", "vllm_startup_s"):
        value = figures[key]
        print(f"{key:<22}{'n/a' if value is None else f'{value:12.2f}':>12}")
    print(f"HF backend vs plain generate: {figures['hf_tok_s'] / figures['hf_naive_tok_s']:.2f}x tokens/s, "
          f"{figures['hf_tok_per_cpu_s'] / figures['hf_naive_tok_per_cpu_s']:.2f}x tokens per CPU second; "
          f"shared prefix speed-up: {figures['options_unshared_s'] / figures['options_shared_s']:.2f}x"
          + (f"; vLLM vs HF: {figures['vllm_tok_s'] / figures['hf_tok_s']:.2f}x, wrapper overhead vs raw vLLM: "
             f"{figures['vllm_raw_tok_s'] / figures['vllm_tok_s']:.2f}x" if figures["vllm_tok_s"] else
             f"; vLLM skipped: {figures.get('vllm_skipped')}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
