"""What batching answers of like length saves stage 05's fine-tuning (best_of_n and
context_distill train through `engrave.train.make_trainer`): one epoch on a trained arm's answers,
with transformers' random batches and with `group_by_length` (what the trainer uses), one thread.

    OMP_NUM_THREADS=1 python benchmarks/sft_batches.py --run outputs/ctl --arm comprehensive

The arm's `rollouts.jsonl` answers (with their prompts from the run's pool) are the training set,
trained from the run's SFT adapter in batches of 4 at learning rate 2e-4, as the controllability
preset's arms are. Reports per sampler the wall and CPU seconds of `trainer.train()`, the padded
share of the tokens its batches would hold, and the last logged losses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a run folder with sft/ and rl_arms/ARM/rollouts.jsonl")
    p.add_argument("--arm", default="comprehensive")
    p.add_argument("--model", default="default", help="the model spec the run's adapter was trained on")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import trl

    import salmon_lib.engrave.train as engrave_train
    from salmon_lib.engrave.config import EngraveConfig
    from salmon_lib.engrave.format import load_chat_spec
    from salmon_lib.io import read_jsonl
    from salmon_lib.models import load_adapter, load_model
    from salmon_lib.prompts.records import read_pool

    run = Path(args.run)
    spec = load_chat_spec(run / "sft")
    prompts = {r["id"]: r["prompt"] for r in read_pool(run)}
    records = [{"id": r["prompt_id"], "prompt": prompts[r["prompt_id"]], "response": r["response"], "kept": True,
                "finished": r["finished"]} for r in read_jsonl(run / "rl_arms" / args.arm / "rollouts.jsonl")]
    real_config, figures = trl.SFTConfig, {}
    for sampler in ("random", "group_by_length"):
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
                            report_to="none")
        trainer, _ = engrave_train.make_trainer(cfg, records, loaded=(tok, model))
        lengths = [len(x["input_ids"]) for x in trainer.train_dataset]
        order = list(trainer._get_train_sampler())
        batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        padded = sum(max(lengths[j] for j in b) * len(b) for b in batches)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        figures[sampler] = {"wall_s": round(time.perf_counter() - start, 1),
                            "cpu_s": round(time.process_time() - cpu, 1),
                            "padding_share": round(1 - sum(lengths) / padded, 3),
                            "last_losses": [round(h["loss"], 3) for h in trainer.state.log_history if "loss" in h][-3:]}
        print(sampler, figures[sampler], flush=True)
    trl.SFTConfig = real_config
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
