"""What classifier-free guidance does to the answers a context_distill arm trains on: a run's SFT
model answers the same prompts under two principle sets' guided prompts, at each guidance scale, and
the answers' token counts are compared set against set, prompt by prompt.

    python benchmarks/guidance.py --run outputs/demo --scales 1,3,6 --json outputs/bench_guidance.json

The contrast prompt is what stage 05 builds (`rl/rounds.py`): each principle replaced by what the
run's contrastive reward (`RUN/rm`) scores it against. Prompts: a seeded shuffle of the run's
`prompts.jsonl`. Prints per scale and set the mean and median tokens and the finished share, and
the per-prompt difference (first set minus second) with a paired t-interval.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a run folder with sft/, rm/ (contrastive) and prompts.jsonl")
    p.add_argument("--sets", nargs=2, default=["principles/concise.yaml", "principles/comprehensive.yaml"],
                   help="two principle files; the difference is the first minus the second")
    p.add_argument("--scales", default="1,3,6", help="guidance scales, comma-separated (1: the guided prompt alone)")
    p.add_argument("--prompts", type=int, default=12)
    p.add_argument("--samples", type=int, default=2, help="answers per prompt, set and scale")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.9)
    p.add_argument("--plausibility", type=float, default=0.1,
                   help="guided tokens only among those within this share of the most likely (0: all)")
    p.add_argument("--seed", type=int, default=1, help="shuffles the prompts")
    p.add_argument("--json", default=None, help="write the figures and every answer here")
    args = p.parse_args()

    from scipy import stats

    from salmon_lib.engrave.format import load_chat_spec
    from salmon_lib.generation.hf import HFGenerator
    from salmon_lib.models import ModelConfig
    from salmon_lib.principles import load_principles
    from salmon_lib.prompts.records import read_pool
    from salmon_lib.reward.contrastive import ContrastiveReward

    run = Path(args.run)
    reward = ContrastiveReward.load(run / "rm")
    sets = {Path(f).stem: load_principles(ROOT / f if not Path(f).is_absolute() else f) for f in args.sets}
    for s in sets.values():
        reward.learn_principles(s)
    spec = load_chat_spec(run / "sft")
    pool = read_pool(run)
    random.Random(args.seed).shuffle(pool)
    pool = pool[:args.prompts]
    gen = HFGenerator(ModelConfig(spec=reward.spec["model"]["spec"], adapter=str(run / "sft")), batch_size=32,
                      progress=True)
    answers, figures = [], {}
    for scale in (float(x) for x in args.scales.split(",")):
        tokens = {}
        for name, pset in sets.items():
            texts = [pr.definition for pr in pset.principles]
            start, cpu = time.perf_counter(), time.process_time()
            comps = gen.generate([spec.guided_prompt(r["prompt"], texts) for r in pool], n=args.samples,
                                 temperature=args.temperature, top_p=1.0, max_new_tokens=args.max_new_tokens,
                                 seed=list(range(len(pool))), guidance_scale=scale,
                                 guidance_plausibility=args.plausibility,
                                 contrast_prompts=[spec.guided_prompt(r["prompt"], reward.contrast_texts(texts))
                                                   for r in pool])
            tokens[name] = [statistics.mean(c.num_tokens for c in cs) for cs in comps]
            flat = [c for cs in comps for c in cs]
            key = f"{scale:g}/{name}"
            figures[key] = {
                "mean_tokens": statistics.mean(c.num_tokens for c in flat),
                "median_tokens": statistics.median(c.num_tokens for c in flat),
                "finished": sum(c.finish_reason == "stop" for c in flat) / len(flat),
                "wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(time.process_time() - cpu, 1)}
            answers += [{"scale": scale, "set": name, "prompt": r["prompt"], "tokens": c.num_tokens,
                         "finished": c.finish_reason == "stop", "text": c.text}
                        for r, cs in zip(pool, comps) for c in cs]
            print(f"scale {key} " + ", ".join(f"{k} {v:.3g}" for k, v in figures[key].items()))
        a, b = list(sets)
        diff = [x - y for x, y in zip(tokens[a], tokens[b])]
        t = stats.ttest_1samp(diff, 0.0).confidence_interval(0.95) if len(set(diff)) > 1 else None
        figures[f"{scale:g}/difference"] = {"mean": statistics.mean(diff), "ci95": [t.low, t.high] if t else None}
        print(f"scale {scale:g}: {a} minus {b}, per prompt: {statistics.mean(diff):+.1f} tokens"
              + (f" (paired t 95% CI {t.low:+.1f} to {t.high:+.1f})" if t else ""))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures, "answers": answers}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
