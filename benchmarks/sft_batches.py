"""What the fine-tuning of stage 05's best_of_n and context_distill (and stage 02: all train
through `engrave.train.make_trainer`) gains from its three savings: batches of answers of like length
(`group_by_length`), TRL's fused LM head scoring only the answer tokens on a CPU (`engrave.lm_head`)
and bf16 autocast on a CPU with AMX tiles (`mixed_precision`). One epoch on a trained arm's answers
per mode, one thread:

    OMP_NUM_THREADS=1 python benchmarks/sft_batches.py --run outputs/ctl --arm comprehensive

Modes, all in fp32 but the last: `random` (random batches, every position through the head),
`grouped` (length-grouped, every position), `answers_only` (length-grouped, answer positions only),
`bf16` (answers_only under bf16 autocast: what the trainer does on a CPU with AMX).
The arm's `rollouts.jsonl` answers (with their prompts from the run's pool) are the training set,
trained from the run's SFT adapter in batches of 4 at learning rate 2e-4. Reports per mode the wall
and CPU seconds of `trainer.train()`, the padded share of the tokens its batches hold, and the
last logged losses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# mode -> (transformers' train sampler, answer positions only through the LM head, mixed_precision)
MODES = {"random": ("random", False, "no"), "grouped": ("group_by_length", False, "no"),
         "answers_only": ("group_by_length", True, "no"), "bf16": ("group_by_length", True, "bf16")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a run folder with sft/ and rl_arms/ARM/rollouts.jsonl")
    p.add_argument("--arm", default="comprehensive")
    p.add_argument("--model", default="default", help="the model spec the run's adapter was trained on")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        p.error(f"--modes: unknown {', '.join(unknown)}; known: {', '.join(MODES)}")

    import trl

    import salmon_lib.engrave.train as engrave_train
    from salmon_lib.engrave.config import EngraveConfig
    from salmon_lib.engrave.format import load_chat_spec
    from salmon_lib.engrave.lm_head import score_labelled_positions_only
    from salmon_lib.io import read_jsonl
    from salmon_lib.models import load_adapter, load_model
    from salmon_lib.prompts.records import read_pool

    run = Path(args.run)
    spec = load_chat_spec(run / "sft")
    prompts = {r["id"]: r["prompt"] for r in read_pool(run)}
    records = [{"id": r["prompt_id"], "prompt": prompts[r["prompt_id"]], "response": r["response"], "kept": True,
                "finished": r["finished"]} for r in read_jsonl(run / "rl_arms" / args.arm / "rollouts.jsonl")]
    real_config, figures = trl.SFTConfig, {}
    for mode in modes:
        sampler, answers_only, precision = MODES[mode]

        def config(sampler=sampler, **kw):
            return real_config(**(kw | {"train_sampling_strategy": sampler}))

        trl.SFTConfig = config
        tok, model = load_model(args.model)
        model = load_adapter(model, run / "sft", trainable=True)
        cfg = EngraveConfig(run_dir=str(run / "bench_sft_batches"), seed=0, model=args.model,
                            chat_format=spec.chat_format, assistant_name=spec.assistant_name,
                            assistant_creator=spec.assistant_creator, system_variants=list(spec.system_variants),
                            method="lora", learning_rate=2e-4, warmup_ratio=0.0, epochs=1.0,
                            batch_size=args.batch_size, grad_accum=1, max_length=512, save_steps=10**9, heldout=0,
                            report_to="none", mixed_precision=precision)
        trainer, _ = engrave_train.make_trainer(cfg, records, loaded=(tok, model))
        score_labelled_positions_only(answers_only)
        lengths = [len(x["input_ids"]) for x in trainer.train_dataset]
        order = list(trainer._get_train_sampler())
        batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        padded = sum(max(lengths[j] for j in b) * len(b) for b in batches)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        figures[mode] = {"wall_s": round(time.perf_counter() - start, 1),
                         "cpu_s": round(time.process_time() - cpu, 1),
                         "padding_share": round(1 - sum(lengths) / padded, 3),
                         "last_losses": [round(h["loss"], 3) for h in trainer.state.log_history if "loss" in h][-3:]}
        print(mode, figures[mode], flush=True)
    trl.SFTConfig = real_config
    score_labelled_positions_only()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
