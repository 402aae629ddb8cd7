"""What the HF backend's two forward-pass savings buy on a run's SFT adapter, one thread: LoRA
folded into the base weights during forward passes (`generation/lora_merge.py`) and attention over
grouped KV heads without copies (`generation/gqa_attention.py`). Each is switched off in turn.

    OMP_NUM_THREADS=1 python benchmarks/hf_decoding.py --run outputs/demo --json outputs/bench_hf_decoding.json

Two workloads, as the stages meet them:
  plain   --prompts requests of the run's prompts.jsonl under the chat prompt, n=2, up to 128 new
          tokens, T=0.9, then the answers' log-probs (scoring);
  guided  the same requests under stage 05's guided prompt (principles/concise.yaml's principles
          in the system message) against its contrast (the run's contrastive reward's negations),
          guidance scale 6, plausibility 0.1, n=1, up to 64 new tokens (context_distill's sampling).
Per mode and workload: wall and CPU seconds and tokens per second; against the mode with both on,
the share of answers identical token for token (sums of floats in another order can flip a draw)
and the largest log-prob difference over identical answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {"both": (True, True), "no_merge": (False, True), "no_gqa": (True, False), "neither": (False, False)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a run folder with sft/ (a LoRA adapter), rm/ and prompts.jsonl")
    p.add_argument("--model", default="default", help="the model spec the run's adapter was trained on")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import salmon_lib.generation.hf as hf
    from salmon_lib.engrave.format import load_chat_spec
    from salmon_lib.models import ModelConfig
    from salmon_lib.principles import load_principles
    from salmon_lib.prompts.records import read_pool
    from salmon_lib.reward.contrastive import ContrastiveReward

    run = Path(args.run)
    spec = load_chat_spec(run / "sft")
    pool = read_pool(run)
    random.Random(0).shuffle(pool)
    pool = pool[:args.prompts]
    reward = ContrastiveReward.load(run / "rm")
    texts = [pr.definition for pr in load_principles(ROOT / "principles/concise.yaml").principles]
    reward.learn_principles(load_principles(ROOT / "principles/concise.yaml"))
    plain = [spec.prompt(r["prompt"]) for r in pool]
    guided = [spec.guided_prompt(r["prompt"], texts) for r in pool]
    contrast = [spec.guided_prompt(r["prompt"], reward.contrast_texts(texts)) for r in pool]
    gen = hf.HFGenerator(ModelConfig(spec=args.model, adapter=str(run / "sft")), batch_size=32, progress=False)
    real = hf.merged_lora, hf.masked_gqa_attention
    off = lambda model: contextlib.nullcontext()  # noqa: E731
    figures, outputs = {}, {}
    gen.generate(plain[:1], max_new_tokens=2)  # loads the adapter outside the timings
    for mode, (merge, gqa) in MODES.items():
        hf.merged_lora, hf.masked_gqa_attention = (real[0] if merge else off), (real[1] if gqa else off)
        row = {}
        t, c = time.perf_counter(), time.process_time()
        comps = [x for cs in gen.generate(plain, n=2, temperature=0.9, top_p=1.0, max_new_tokens=128, seed=0)
                 for x in cs]
        row["plain_generate"] = _timing(t, c, sum(x.num_tokens for x in comps))
        t, c = time.perf_counter(), time.process_time()
        scores = gen.sequence_logprobs([pr for pr in plain for _ in range(2)], [x.text for x in comps])
        row["plain_score"] = _timing(t, c, None)
        t, c = time.perf_counter(), time.process_time()
        guided_comps = [cs[0] for cs in gen.generate(guided, n=1, temperature=0.9, top_p=1.0, max_new_tokens=64,
                                                     seed=0, contrast_prompts=contrast, guidance_scale=6.0,
                                                     guidance_plausibility=0.1)]
        row["guided_generate"] = _timing(t, c, sum(x.num_tokens for x in guided_comps))
        outputs[mode] = ([x.token_ids for x in comps], scores, [x.token_ids for x in guided_comps])
        figures[mode] = row
        print(mode, row, flush=True)
    hf.merged_lora, hf.masked_gqa_attention = real
    ref = outputs["both"]
    for mode, (tokens, scores, guided_tokens) in outputs.items():
        same = [i for i, (a, b) in enumerate(zip(tokens, ref[0])) if a == b]
        figures[mode]["identical_to_both"] = {
            "plain": len(same) / len(tokens),
            "guided": sum(a == b for a, b in zip(guided_tokens, ref[2])) / len(guided_tokens),
            "max_logprob_difference": max((abs(scores[i] - ref[1][i]) for i in same), default=None)}
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures}, indent=1))
    return 0


def _timing(wall_start: float, cpu_start: float, tokens: int | None) -> dict:
    wall = time.perf_counter() - wall_start
    out = {"wall_s": round(wall, 1), "cpu_s": round(time.process_time() - cpu_start, 1)}
    if tokens is not None:
        out |= {"tokens": tokens, "tok_s": round(tokens / wall, 1)}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
