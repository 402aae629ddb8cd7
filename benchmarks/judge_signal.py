"""Principle signal on one model: every judge mode, RLCD pair variants, and reward models on them.

    OMP_NUM_THREADS=1 python benchmarks/judge_signal.py --json outputs/bench_signal.json \\
        --adapter base= --adapter sft=outputs/demo/sft \\
        --rlcd-prompts outputs/demo/prompts.jsonl --rlcd naive=0.7:1:128 --rlcd best4=1.0:4:256 --train-rm

Everything runs through the stages' own code, side by side in one process:
- judge: per model (`--adapter NAME=PATH`, empty PATH = the base), each mode's HHH accuracy per type
  and correct flips on the project's flip probes (own and judge.yaml wording) and on the
  development probes (`benchmarks/data/dev_probes.yaml`, where the modes' settings were chosen);
- rlcd: per variant NAME=TEMPERATURE:CANDIDATES:MAX_TOKENS, stage 03 with `method: rlcd` on the
  given prompts with the last adapter: the contrast (words and margin per principle) and, with
  `--train-rm`, stage 04 trained on those pairs and evaluated (held-out, HHH, flips);
- the contrastive reward (stage 04 `kind: contrastive`) on the first variant's pairs, both modes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def judge_signal(gen, hhh_items, adapter, dev_probes) -> dict:
    from salmon_lib.chat_format import get_format
    from salmon_lib.preferences.signal import COMPARED, flip_sensitivity, hhh_accuracy
    from salmon_lib.principles import load_principles
    from salmon_lib.scoring.flip_probes import read_flip_probes, with_judge_wording
    from salmon_lib.scoring.judge_modes import criteria_of

    fmt, ps = get_format("chatml"), load_principles(ROOT / "principles/judge.yaml")
    out, t = {}, time.perf_counter()
    if hhh_items:
        criteria = {t: criteria_of(ps, [ps.for_hhh_type(t).name])[0] for t in {it["type"] for it in hhh_items}}
        out["hhh"] = hhh_accuracy(gen, fmt, hhh_items, criteria, COMPARED, adapter=adapter)
        out["hhh_seconds"] = round(time.perf_counter() - t, 1)
    kinds = read_flip_probes()
    sets = {"flips_probe_wording": kinds,
            "flips_judge_wording": with_judge_wording(kinds, ROOT / "principles/judge.yaml"),
            "flips_dev": read_flip_probes(dev_probes)}
    for name, ks in sets.items():
        flips = flip_sensitivity(gen, fmt, ks, COMPARED, adapter=adapter)
        out[name] = {k: v["overall"]["flip_rate"] for k, v in flips.items()}
    return out


def rlcd_variant(run: Path, prompts: Path, model: str, adapter: str | None, spec: str, max_prompts: int, dtype: str,
                 device: str, gen_batch: int) -> dict:
    from salmon_lib.generation import make_generator
    from salmon_lib.models import ModelConfig
    from salmon_lib.preferences import stage

    temperature, candidates, cap = spec.split(":")
    run.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prompts, run / "prompts.jsonl")
    if adapter:
        (run / "sft").symlink_to(Path(adapter).resolve())
    cfg = stage.PreferencesConfig(run_dir=str(run), model=model, method="rlcd", use_sft=bool(adapter), backend="hf",
                                  max_prompts=max_prompts, rlcd_temperature=float(temperature),
                                  rlcd_candidates=int(candidates), rlcd_max_new_tokens=int(cap), batch_size=32)
    t = time.perf_counter()
    with make_generator(ModelConfig(spec=cfg.model, dtype=dtype, device=device), backend="hf", progress=False,
                        batch_size=gen_batch) as gen:
        contrast = stage.rlcd(cfg, gen)
    return {"contrast": contrast, "aggregate": stage.aggregate(cfg), "seconds": round(time.perf_counter() - t, 1)}


def reward_eval(run: Path, model: str, hhh: str, dtype: str, hhh_max: int, **kw) -> dict:
    from salmon_lib.reward import load_reward
    from salmon_lib.reward.contrastive import build_from_config
    from salmon_lib.reward.evaluate import evaluate_reward_model
    from salmon_lib.reward.train import RewardConfig, train_reward_model

    cfg = RewardConfig(run_dir=str(run), model=model, hhh_eval=hhh, dtype=dtype, hhh_max_pairs=hhh_max, **kw)
    t = time.perf_counter()
    if cfg.kind == "contrastive":
        build_from_config(cfg)
        rm = load_reward(run / "rm")
    else:
        rm, _ = train_reward_model(cfg, progress=False)
    built = time.perf_counter() - t
    result = evaluate_reward_model(rm, cfg, progress=False)
    return {"build_seconds": round(built, 1), "eval_seconds": round(time.perf_counter() - t - built, 1),
            "held_out": result["held_out"].get("accuracy"),
            "hhh_principle": result["hhh"].get("accuracy_principle"),
            "hhh_no_principle": result["hhh"].get("accuracy_no_principle"),
            "hhh_by_type": result["hhh"].get("by_type"),
            "flips_probe_wording": result["flip"]["overall"]["flip_rate"],
            "flips_judge_wording": result.get("flip_judge_wording", {}).get("overall", {}).get("flip_rate"),
            "flips_by_kind": {k: v["flip_rate"] for k, v in result["flip"]["by_kind"].items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--adapter", action="append", default=[], help="NAME=PATH, empty PATH: the base model")
    ap.add_argument("--hhh", default=str(ROOT.parent / "shared/data/hhh_eval.json"))
    ap.add_argument("--hhh-max", type=int, default=0)
    ap.add_argument("--dev-probes", default=str(ROOT / "benchmarks/data/dev_probes.yaml"))
    ap.add_argument("--skip-judge", action="store_true")
    ap.add_argument("--wording", action="append", default=[],
                    help="NAME=TEMPLATE: also measure the dev probes with this principle system prompt ({text})")
    ap.add_argument("--rlcd-prompts")
    ap.add_argument("--rlcd-max", type=int, default=0)
    ap.add_argument("--rlcd-adapter", help="adapter that writes the RLCD answers (default: the last --adapter)")
    ap.add_argument("--rlcd", action="append", default=[], help="NAME=TEMPERATURE:CANDIDATES:MAX_TOKENS")
    ap.add_argument("--train-rm", action="store_true")
    ap.add_argument("--rm-epochs", type=float, default=2.0)
    ap.add_argument("--rm-lr", type=float, default=2e-4)
    ap.add_argument("--rm-hhh-max", type=int, default=0, help="HHH pairs in the reward evaluations (0: all)")
    ap.add_argument("--gen-batch", type=int, default=16, help="sequences per generation batch (HF backend)")
    ap.add_argument("--work", default="outputs/bench_signal")
    args = ap.parse_args(argv)

    import random

    import torch

    from salmon_lib.generation import make_generator
    from salmon_lib.hhh_data import load_hhh
    from salmon_lib.models import ModelConfig

    adapters = dict(a.split("=", 1) for a in args.adapter) or {"base": ""}
    items = load_hhh(args.hhh) if Path(args.hhh).is_file() else []
    if args.hhh_max and args.hhh_max < len(items):
        items = random.Random(0).sample(items, args.hhh_max)
    result = {"model": args.model, "dtype": args.dtype, "device": args.device, "hhh_pairs": len(items),
              "torch_threads": torch.get_num_threads(), "judge": {}, "rlcd": {}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out.write_text(json.dumps(result, indent=2) + "\n")

    if not args.skip_judge:
        with make_generator(ModelConfig(spec=args.model, dtype=args.dtype, device=args.device), backend="hf",
                            progress=False) as gen:
            for name, path in adapters.items():
                t = time.perf_counter()
                adapter = str(Path(path).resolve()) if path else None
                result["judge"][name] = judge_signal(gen, items, adapter, args.dev_probes)
                result["judge"][name]["seconds"] = round(time.perf_counter() - t, 1)
                print(name, json.dumps(result["judge"][name]), flush=True)
                save()
            from salmon_lib.scoring import judge_modes

            default = judge_modes.PRINCIPLE_SYSTEM
            for wording in args.wording:
                label, template = wording.split("=", 1)
                judge_modes.PRINCIPLE_SYSTEM = template
                for name, path in adapters.items():
                    result["judge"][name][f"flips_dev_{label}"] = judge_signal(
                        gen, [], str(Path(path).resolve()) if path else None, args.dev_probes)["flips_dev"]
                judge_modes.PRINCIPLE_SYSTEM = default
                save()
    work = Path(args.work)
    last = args.rlcd_adapter if args.rlcd_adapter is not None else list(adapters.values())[-1]
    for i, variant in enumerate(args.rlcd):
        name, spec = variant.split("=", 1)
        run = work / name
        shutil.rmtree(run, ignore_errors=True)
        entry = result["rlcd"][name] = rlcd_variant(run, Path(args.rlcd_prompts), args.model,
                                                    str(Path(last).resolve()) if last else None, spec, args.rlcd_max,
                                                    args.dtype, args.device, args.gen_batch)
        print(name, json.dumps(entry["contrast"]["overall"]), flush=True)
        save()
        if i == 0:  # the training-free reward, evaluated on the first variant's held-out pairs
            for adapter in ("sft", "") if last else ("",):
                for mode in ("contrastive", "ensemble"):
                    key = f"{mode}_{adapter or 'base'}"
                    result.setdefault("contrastive_reward", {})[key] = reward_eval(
                        run, args.model, args.hhh, args.dtype, args.rm_hhh_max, kind="contrastive",
                        contrastive_mode=mode, contrastive_use_sft=bool(adapter))
                    print("contrastive reward", key, json.dumps(result["contrastive_reward"][key]), flush=True)
                    save()
        if args.train_rm:
            entry["rm"] = reward_eval(run, args.model, args.hhh, args.dtype, args.rm_hhh_max, epochs=args.rm_epochs,
                                      learning_rate=args.rm_lr, lora_r=16, lora_alpha=32, max_prompt_tokens=256,
                                      max_response_tokens=512)
            print(name, "rm", json.dumps(entry["rm"]), flush=True)
            save()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
