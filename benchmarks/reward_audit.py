"""The contrastive reward's contrast x aggregate, measured: stage 04's reward audit on one model's own
answers and the flip probes (free text, then with the probes' negations known), for each variant.

    python benchmarks/reward_audit.py --run outputs/audit_base --prompts-from outputs/demo/prompts.jsonl \
        --prompts 12 --samples 6 --max-new-tokens 400 --json outputs/audit_base/variants.json

The answers are sampled once (stage 04's `audit` step, with the model and adapter given) and every
variant rescores the same answers; the run's score cache makes the shared rows free. Prints one row
per variant: the audit's mean within-prompt Spearman of score(concise) - score(comprehensive) with
shortness (with its t-interval over the prompts), each set's own, the concise pick's shorter rate, and the flip rates.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = [(c, a) for c in ("negation", "avoid", "absent") for a in ("mean", "sum")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="folder for the audit's answers, reward folder and cache")
    p.add_argument("--prompts-from", required=True, help="a prompts.jsonl to sample the audit's prompts from")
    p.add_argument("--model", default="default", help="model spec of the policy and of the reward")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder (e.g. a run's sft/); none: the model")
    p.add_argument("--prompts", type=int, default=12)
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=400)
    p.add_argument("--processes", type=int, default=2, help="scoring and sampling processes (one per core)")
    p.add_argument("--json", default=None, help="write every variant's figures here")
    p.add_argument("--reuse", action="store_true", help="rescore the answers of RUN/reward_audit.json instead of "
                   "sampling new ones (the same prompts-from, model and counts are assumed)")
    args = p.parse_args()

    from salmon_lib.generation.score_cache import run_score_cache
    from salmon_lib.principles import load_principles
    from salmon_lib.reward import load_reward
    from salmon_lib.reward.audit import Answer, length_audit
    from salmon_lib.reward.contrastive import write_spec
    from salmon_lib.reward.evaluate import flip_rates
    from salmon_lib.reward.stage import audit
    from salmon_lib.reward.train import RewardConfig
    from salmon_lib.scoring.flip_probes import read_flip_probes

    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        shutil.copyfile(args.prompts_from, run / "prompts.jsonl")
    known = [str(ROOT / "principles/judge.yaml"), str(ROOT / "principles/rl.yaml")]
    write_spec(run / "rm", model={"spec": args.model}, adapter=args.adapter, chat_format="chatml",
               principle_files=known)
    sets = [str(ROOT / "principles/concise.yaml"), str(ROOT / "principles/comprehensive.yaml")]
    cfg = RewardConfig(run_dir=str(run), model=args.model, kind="contrastive", contrastive_use_sft=False,
                       audit_prompts=args.prompts, audit_samples=args.samples, audit_max_new_tokens=args.max_new_tokens,
                       audit_shorter=sets[0], audit_longer=sets[1], generation_processes=args.processes)
    rm = load_reward(run / "rm", score_cache=run_score_cache(run), processes=args.processes)
    sampled = json.loads((run / "reward_audit.json").read_text()) if args.reuse else audit(cfg, rm, progress=False)
    answers = [Answer(s["prompt"], s["response"], s["finished"], s["tokens"]) for s in sampled["scores"]]
    texts = []
    for f in sets:
        ps = load_principles(f)
        texts.append((ps.name, [iv.text for iv in ps.interventions] + [q.definition for q in ps.principles]))
    kinds = read_flip_probes()
    out = {"answers": len(answers), "finished_share": sampled["finished_share"],
           "mean_tokens": sampled["mean_tokens"], "variants": {}}
    print(f"{len(answers)} answers, {sampled['finished_share']:.0%} finished, {sampled['mean_tokens']:.0f} tokens")
    print(f"{'variant':16} {'rho diff':>8} {'t-interval':>15} {'rho C':>7} {'rho K':>7} {'picks':>9} {'flip free':>9} "
          f"{'flip known':>10}")
    for contrast, aggregate in VARIANTS:
        rm.contrast, rm.aggregate, rm.opposites = contrast, aggregate, {}
        for f in known + sets:
            rm.learn_principles(load_principles(f))
        r = length_audit(rm, answers, *texts)
        free = flip_rates(rm, kinds)["overall"]["flip_rate"]
        rm.learn_opposites((s["principle"], s["negation"]) for s in kinds.values())
        flips = flip_rates(rm, kinds)["overall"]["flip_rate"]
        key = f"{contrast}/{aggregate}"
        out["variants"][key] = {k: r[k] for k in ("spearman_difference", "spearman_difference_ci", "spearman_shorter",
                                                  "spearman_longer", "picks_differ", "pick_shorter_rate",
                                                  "pick_shorter_ci")}
        out["variants"][key].update(flip_free_text=free, flip_known_negation=flips)
        shorter = sum(1 for row in r["by_prompt"]
                      if row["pick_tokens"][texts[0][0]] < row["pick_tokens"][texts[1][0]])
        lo, hi = r["spearman_difference_ci"] or (None, None)
        rho = " ".join([_fmt(r["spearman_difference"], 8), f"{_fmt(lo, 6)} to {_fmt(hi, 5)}",
                        _fmt(r["spearman_shorter"], 7), _fmt(r["spearman_longer"], 7)])
        print(f"{key:16} {rho} {shorter:>4}/{r['picks_differ']:<4} {free:9.2f} {flips:10.2f}")
    rm.close()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def _fmt(x: float | None, width: int) -> str:
    return f"{'n/a':>{width}}" if x is None else f"{x:+{width}.2f}"


if __name__ == "__main__":
    sys.exit(main())
