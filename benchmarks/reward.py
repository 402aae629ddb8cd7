"""Reward-model scoring speed: one response under K principle sets, with the shared prefix,
against the original code's way (every input padded to a fixed length, no sharing).

    python benchmarks/reward.py --json outputs/bench_reward.json [--reward-model RUN/rm]

Prints k1_s (16 responses x 1 principle set), k8_s (16 x 8 sets, prefix shared) and k8_original_s
(16 x 8 sets, each input padded to --pad-to tokens, no sharing) side by side, with the ratios.
Without --reward-model it times the default model with a fresh score head (the cost does not depend
on the head's weights).

Training (--train-pairs > 0): forward + backward of the Bradley-Terry loss on response pairs with
--draws principle draws each (half of them negated, so the winner swaps, as stage 03 writes them),
LoRA r16 on the default model, in batches of --train-batch pairs: train_shared_s (each prefix once,
suffixes from its cache: what stage 04 runs) against train_full_s (every draw as two full sequences,
as TRL's RewardTrainer runs them), CPU seconds of this process beside wall seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from salmon_lib.io import atomic_write_json  # noqa: E402
from salmon_lib.scoring.flip_probes import read_flip_probes  # noqa: E402


def workload(n_responses: int, k: int, seed: int = 0, min_words: int = 0):
    """n (prompt, response) pairs from the flip probes, each under k principle sets of 1-3 principles.
    `min_words` lengthens each response (by chaining other probe replies) to RL-like lengths."""
    kinds = read_flip_probes()
    pool = [(p["prompt"], p[side]) for spec in kinds.values() for p in spec["probes"] for side in ("obeys", "violates")]
    rng = random.Random(seed)
    pairs = rng.sample(pool, n_responses)
    if min_words:
        replies = [r for _, r in pool]
        for i, (prompt, response) in enumerate(pairs):
            while len(response.split()) < min_words:
                response += "\n\n" + rng.choice(replies)
            pairs[i] = (prompt, response)
    principles = [spec["principle"] for spec in kinds.values()] + [spec["negation"] for spec in kinds.values()]
    sets = [rng.sample(principles, rng.randint(1, 3)) for _ in range(k)]
    return [(p, r, s) for p, r in pairs for s in sets]


def training_pairs(n_pairs: int, draws: int, seed: int = 0, min_words: int = 0):
    """Stage-03-like examples: n response pairs (probe replies), each with `draws` principle sets;
    a negated set makes the other reply the chosen one."""
    from salmon_lib.reward.pairs import Pair

    kinds = list(read_flip_probes().values())
    rng = random.Random(seed)
    examples = []
    for i in range(n_pairs):
        spec = kinds[i % len(kinds)]
        probe = spec["probes"][i // len(kinds) % len(spec["probes"])]
        obeys, violates = probe["obeys"], probe["violates"]
        if min_words:
            obeys = (obeys + " ") * max(1, min_words // max(1, len(obeys.split())))
        for d in range(draws):
            negated = d % 2 == 1
            principles = [spec["negation"] if negated else spec["principle"]]
            principles += rng.sample([k["principle"] for k in kinds], rng.randint(0, 2))
            chosen, rejected = (violates, obeys) if negated else (obeys, violates)
            examples.append(Pair(f"{i}-{d}", probe["prompt"], chosen, rejected, principles))
    return examples


def training_figures(model_spec: str, n_pairs: int, draws: int, batch: int, repeats: int, min_words: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from salmon_lib.models import load_model
    from salmon_lib.reward import RMTemplate
    from salmon_lib.reward.grouped import GroupCollator, backbone_and_head, full_rewards, group_pairs, shared_rewards

    torch.manual_seed(0)
    tok, model = load_model(model_spec, head="score")
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=16, lora_alpha=32, target_modules="all-linear",
                                             modules_to_save=["score"]))
    model.config.pad_token_id = tok.pad_token_id
    model.train()
    columns, _ = group_pairs(tok, RMTemplate(), training_pairs(n_pairs, draws, min_words=min_words))
    collate = GroupCollator(tok.pad_token_id)
    rows = [{k: v[i] for k, v in columns.items()} for i in range(len(columns["prefix_ids"]))]
    batches = [collate(rows[i:i + batch]) for i in range(0, len(rows), batch)]

    def step(rewards_fn):
        for b in batches:
            model.zero_grad()
            rewards = rewards_fn(b)
            (-torch.nn.functional.logsigmoid(rewards[b["chosen"]] - rewards[b["rejected"]]).mean()).backward()

    fns = {"shared": lambda b: shared_rewards(*backbone_and_head(model), b),
           "full": lambda b: full_rewards(model, b, tok.pad_token_id)}
    figures = {"train_pairs": n_pairs, "train_draws": draws, "train_batch": batch,
               "train_prefix_tokens_mean": sum(len(p) for g in columns["prefix_ids"] for p in g) / (2 * n_pairs),
               "train_suffix_tokens_mean": sum(len(s) for g in columns["suffix_ids"] for s in g) / (n_pairs * draws)}
    step(fns["shared"])  # warm-up
    runs = {name: [] for name in fns}
    for _ in range(repeats):  # interleaved, so that a change of load hits both
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step(fn)
            runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    for name, r in runs.items():
        figures[f"train_{name}_s"], figures[f"train_{name}_cpu_s"] = min(r)
    figures["train_full_over_shared"] = figures["train_full_s"] / figures["train_shared_s"]
    figures["train_full_over_shared_cpu"] = figures["train_full_cpu_s"] / figures["train_shared_cpu_s"]
    return figures


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--reward-model", help="a trained reward model folder (default: the default model, fresh head)")
    ap.add_argument("--model", default="default", help="model spec when no --reward-model is given")
    ap.add_argument("--responses", type=int, default=16)
    ap.add_argument("--pad-to", type=int, default=1024, help="the original code's fixed input length")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--min-words", type=int, default=0,
                    help="lengthen responses to at least this many words (0: the probes' own short replies)")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs (the padded run is done once)")
    ap.add_argument("--train-pairs", type=int, default=8, help="response pairs for the training figures (0: skip)")
    ap.add_argument("--draws", type=int, default=4,
                    help="principle draws per training pair (stage 03's draws_per_pair)")
    ap.add_argument("--train-batch", type=int, default=4, help="response pairs per training batch")
    ap.add_argument("--skip-scoring", action="store_true", help="only the training figures")
    ap.add_argument("--original-responses", type=int, default=0,
                    help="time the padded method on only this many responses and scale up linearly (every padded "
                         "batch has the same shape, so its cost is linear in the count); 0 = all")
    args = ap.parse_args()

    res = {} if args.skip_scoring else scoring_figures(args)
    if args.train_pairs:
        res.update(training_figures(args.model, args.train_pairs, args.draws, args.train_batch, args.repeats,
                                    args.min_words))
        print(f"training, {args.train_pairs} pairs x {args.draws} draws: shared prefix {res['train_shared_s']:.1f} s "
              f"({res['train_shared_cpu_s']:.1f} CPU s), full sequences {res['train_full_s']:.1f} s "
              f"({res['train_full_cpu_s']:.1f} CPU s): {res['train_full_over_shared']:.2f}x "
              f"({res['train_full_over_shared_cpu']:.2f}x in CPU time)")
    res["load_average"] = os.getloadavg()[0]
    if args.json:
        atomic_write_json(args.json, res)
    return 0


def scoring_figures(args) -> dict:
    import torch

    from salmon_lib.models import load_model
    from salmon_lib.reward import RewardModel, RMTemplate

    if args.reward_model:
        rm = RewardModel.load(args.reward_model)
    else:
        torch.manual_seed(0)
        tok, model = load_model(args.model, head="score")
        rm = RewardModel(tok, model, RMTemplate())
    k1, k8 = (
        workload(args.responses, 1, min_words=args.min_words),
        workload(args.responses, 8, min_words=args.min_words),
    )
    rm.score(k1[:2])  # warm-up
    lens = [len(rm.template.encode(rm.tokenizer, *it)) for it in k8]
    prefix = [len(rm.template.encode_prefix(rm.tokenizer, p, r)[0]) for p, r, _ in k1]
    suffix = [len(rm.template.encode_suffix(rm.tokenizer, s)) for _, _, s in k8]
    res = {
        "model": args.reward_model or args.model, "device": str(rm.device), "torch_threads": torch.get_num_threads(),
        "responses": args.responses, "batch_size": args.batch_size, "pad_to": args.pad_to,
        "min_words": args.min_words, "mean_input_tokens": sum(lens) / len(lens), "max_input_tokens": max(lens),
        "mean_prefix_tokens": sum(prefix) / len(prefix), "mean_suffix_tokens": sum(suffix) / len(suffix),
        "k1_s": timed(lambda: rm.score(k1, batch_size=args.batch_size), args.repeats),
        "k8_s": timed(lambda: rm.score(k8, batch_size=args.batch_size), args.repeats),
        "k8_unshared_s": timed(lambda: rm.score(k8, batch_size=args.batch_size, share_prefix=False), args.repeats),
    }
    n_orig = args.original_responses or args.responses
    orig = k8[: n_orig * 8]
    res["k8_original_s"] = timed(lambda: rm.score_unshared(orig, batch_size=args.batch_size, pad_to=args.pad_to), 1) \
        * args.responses / n_orig
    res["k8_original_measured_responses"] = n_orig
    res["k8_over_k1"] = res["k8_s"] / res["k1_s"]
    res["original_over_k8"] = res["k8_original_s"] / res["k8_s"]
    res["unshared_over_k8"] = res["k8_unshared_s"] / res["k8_s"]
    print(f"{'':24}{'seconds':>10}")
    for key in ("k1_s", "k8_s", "k8_unshared_s", "k8_original_s"):
        print(f"{key:24}{res[key]:10.3f}")
    print(f"K=8 costs {res['k8_over_k1']:.2f}x K=1; the original method is {res['original_over_k8']:.1f}x slower "
          f"than shared K=8 (sorted, per-batch padding without sharing: {res['unshared_over_k8']:.2f}x)")
    return res


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
