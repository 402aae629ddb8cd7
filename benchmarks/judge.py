"""Judge throughput: K principles through shared prefixes vs the originals' padded, unshared inputs.

    OMP_NUM_THREADS=1 python benchmarks/judge.py --json outputs/bench_judge.json

Side by side in one run on one model (default: the embedded default model), 16 pairs, both orders:
- k1_s: every pair under 1 principle through `gen.score_options` (prefix sharing on);
- k8_s: the same pairs under 8 principles, same path: the 8 prompts of one (pair, order) share
  everything but the principle, so the backend computes that prefix once;
- k8_original_s: the same 256 judge prompts the way SALMON ran them: each left-padded (and
  left-truncated) to 1536 tokens, batches of 8 sequences, one full forward pass each, logits at
  the last position. Positions follow the attention mask, so the scores must match k8's, and only
  the last position's logits are computed (the original computed them everywhere, which would
  make its figure worse still).
- modes (`--modes`): the same pairs under K principles in each likelihood judge mode
  (`scoring/judge_modes.py`), the contrastive score in both layouts (principle first, as the
  system prompt; principle last, after the answer) and once with prefix sharing off.
Each figure comes with the tokens the scorer computes for it (shared prefixes counted once), the
cost model the times should follow.
The pairs are built from the project's own demonstration dialogues, so no data file is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from salmon_lib.chat_format import get_format  # noqa: E402
from salmon_lib.preferences import judge  # noqa: E402
from salmon_lib.preferences.almost import load_demos  # noqa: E402

ORIGINAL_LENGTH = 1536
ORIGINAL_BATCH = 8  # 4 pairs x 2 orders per 80 GB GPU in SALMON's script


def make_pairs(n: int) -> list[dict]:
    """n distinct (request, answer, other answer) triples. Repeated pairs would flatter K=1: the
    scorer computes an identical row once, so half the K=1 work vanished when 16 pairs were 8
    dialogues twice (what made K=8 look 3.65x as costly as K=1)."""
    demos = load_demos()
    dialogues = demos["detailed"] + demos["plain"]
    m = len(dialogues)
    if n > m * (m - 1):
        raise ValueError(f"at most {m * (m - 1)} distinct pairs from {m} dialogues, asked for {n}")
    return [{"id": f"b{i}", "prompt": dialogues[i % m]["user"], "response_1": dialogues[i % m]["assistant"],
             "response_2": dialogues[(i % m + 1 + i // m) % m]["assistant"]} for i in range(n)]


def original_margins(model, tok, prompts: list[str], max_batches: int = 0) -> list[float]:
    """log p(a) - log p(b) at the last position of inputs padded to ORIGINAL_LENGTH, unshared."""
    import torch

    a, b = (tok(o, add_special_tokens=False)["input_ids"][0] for o in judge.OPTIONS)
    out = []
    starts = list(range(0, len(prompts), ORIGINAL_BATCH))
    for start in starts[:max_batches] if max_batches else starts:
        rows = [tok(p)["input_ids"][-ORIGINAL_LENGTH:] for p in prompts[start:start + ORIGINAL_BATCH]]
        ids = torch.full((len(rows), ORIGINAL_LENGTH), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, ORIGINAL_LENGTH - len(r):] = torch.tensor(r)
            mask[i, ORIGINAL_LENGTH - len(r):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = (
                model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
                .logits[:, -1]
                .float()
            )
        logp = torch.log_softmax(logits, -1)
        out += (logp[:, a] - logp[:, b]).tolist()
    return out


def computed_tokens(gen, prompts: list[str], continuations: list[str] | None = None) -> int:
    """Tokens the HF scorer runs for these rows: each shared prefix once, then every suffix."""
    from salmon_lib.generation.prefix_scoring import ScoreRow, group_rows

    ids = gen.encode_prompts(prompts)
    if continuations is not None:
        ids = [p + c for p, c in zip(ids, gen.encode_pieces(continuations))]
        lengths = [len(p) for p in gen.encode_prompts(prompts)]
    else:
        lengths = [len(p) for p in ids]
    distinct = {tuple(i): n for i, n in zip(ids, lengths)}
    rows = [ScoreRow(list(i), [(n, 0)]) for i, n in distinct.items()]
    return sum(plen + sum(len(rows[i].ids) - plen for i in m) for plen, m in group_rows(rows, gen.min_shared_prefix))


def time_modes(gen, fmt, pairs, principle_set, k: int, result: dict) -> None:
    from salmon_lib.scoring import judge_modes

    criteria = judge_modes.criteria_of(principle_set)[:k]
    runs = [(m, "system") for m in ("contrastive", "likelihood", "pmi", "pointwise", "ensemble")]
    runs.insert(1, ("contrastive", "suffix"))
    for mode, layout in runs:
        t = time.perf_counter()
        judge_modes.judge_pairs_likelihood(gen, fmt, pairs, criteria, mode, layout, batch_pairs=len(pairs),
                                           progress=False)
        result[f"mode_{judge_modes.judge_key(mode, layout)}_s"] = time.perf_counter() - t
    gen.share_prefix = False
    t = time.perf_counter()
    judge_modes.judge_pairs_likelihood(gen, fmt, pairs, criteria, "contrastive", batch_pairs=len(pairs), progress=False)
    result["mode_contrastive_unshared_s"] = time.perf_counter() - t
    gen.share_prefix = True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="where to write the figures")
    ap.add_argument("--model", default="default", help="model spec")
    ap.add_argument("--pairs", type=int, default=16, help="number of pairs")
    ap.add_argument("--principles", default="principles/judge.yaml", help="principle set (first 8 are used)")
    ap.add_argument("--original-batches", type=int, default=0,
                    help="time only the first N padded batches of the originals' method and scale up (0: all); "
                         "the figure is then marked as extrapolated")
    ap.add_argument("--modes", action="store_true", help="also time the likelihood judge modes under K principles")
    ap.add_argument("--modes-k", type=int, default=8, help="principles per pair in the modes' timing")
    ap.add_argument("--skip-original", action="store_true", help="skip the originals' padded method")
    args = ap.parse_args(argv)

    import torch

    from salmon_lib.generation import make_generator
    from salmon_lib.models import ModelConfig
    from salmon_lib.principles import load_principles

    fmt = get_format("chatml")
    pairs = make_pairs(args.pairs)
    principles = [(p.name, p.text(False)) for p in load_principles(args.principles).principles][:8]
    result = {"model": args.model, "pairs": len(pairs), "torch_threads": torch.get_num_threads()}
    ps = load_principles(args.principles)
    with make_generator(ModelConfig(spec=args.model), backend="hf", progress=False) as gen:
        judge.judge_pairs(gen, fmt, pairs[:2], principles[:1], progress=False)  # warm-up
        for k, key in ((1, "k1_s"), (8, "k8_s")):
            t = time.perf_counter()
            recs = judge.judge_pairs(gen, fmt, pairs, principles[:k], batch_pairs=len(pairs), progress=False)
            result[key] = time.perf_counter() - t
        shared = [r["s12"] for r in recs]
        prompts = [judge.judge_prompt(fmt, p["prompt"], a, b, n, d) for p in pairs
                   for a, b in ((p["response_1"], p["response_2"]), (p["response_2"], p["response_1"]))
                   for n, d in principles]
        lengths = [len(ids) for ids in gen.tokenizer(prompts)["input_ids"]]
        result["k1_tokens"] = computed_tokens(gen, prompts[::8])
        result["k8_tokens"] = computed_tokens(gen, prompts)
        if args.modes:
            time_modes(gen, fmt, pairs, ps, args.modes_k, result)
        if not args.skip_original:
            t = time.perf_counter()
            margins = original_margins(gen.model, gen.tokenizer, prompts, args.original_batches)
            elapsed = time.perf_counter() - t
            batches = -(-len(prompts) // ORIGINAL_BATCH)
            measured = min(args.original_batches or batches, batches)
            result["k8_original_s"] = elapsed * batches / measured
            extrapolated = " (extrapolated)" if measured < batches else ""
            result["k8_original_batches_timed"] = f"{measured}/{batches}{extrapolated}"
            # prompts are ordered pair -> order -> principle; s12 is the order-12 margin
            original_s12 = [margins[2 * 8 * i + j] for i in range(len(pairs)) for j in range(8)
                            if 2 * 8 * i + j < len(margins)]
            result["original_over_k8"] = result["k8_original_s"] / result["k8_s"]
            result["max_abs_score_diff"] = max(abs(x - y) for x, y in zip(shared, original_s12))
    result.update({
        "sequences_k8": len(prompts),
        "mean_prompt_tokens": sum(lengths) / len(lengths),
        "max_prompt_tokens": max(lengths),
        "k8_over_k1": result["k8_s"] / result["k1_s"],
        "k8_over_k1_tokens": result["k8_tokens"] / result["k1_tokens"],
    })
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
