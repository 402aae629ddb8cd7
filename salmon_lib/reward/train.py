"""Train the principle-following reward model: a scalar head on the BASE model with LoRA (or
QLoRA), Bradley-Terry loss through TRL's RewardTrainer (with the loss computed on shared
prefixes, `grouped.py`), optionally pre-trained on human pairs first (PMP), then fine-tuned on
stage 03's principle-labelled pairs with the same adapter and head.

Writes `<run>/rm/` (adapter + score head + tokenizer + template.json + rm_info.json) and
`<run>/reward_stats.json`. `train(config_dict)` is the entry point the runner's multi-GPU launch
helper starts in every process (`stage.fit` launches it).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ..io import replace_folder
from ..mixed_precision import release_autocast, train_in_bf16
from ..paths import find_file
from .config import PREFERENCES, RewardConfig
from .pairs import Pair

log = logging.getLogger(__name__)


def train_reward_model(cfg: RewardConfig, progress: bool = True):
    """Train, save `<run>/rm/` and `<run>/reward_stats.json`; return (RewardModel, stats)."""
    import torch
    from peft import LoraConfig

    from ..io import atomic_write_json
    from ..models import load_model
    from .pairs import read_human_pairs, read_preferences, split_held_out, without_noised_labels
    from .score import RewardModel

    start = time.perf_counter()
    run = Path(cfg.run_dir)
    template = cfg.template()
    train, held = split_held_out(read_preferences(run / PREFERENCES), cfg.eval_fraction, cfg.seed)
    held = without_noised_labels(held)  # the evaluation during training measures what rm_eval.json does
    pmp: list[Pair] = []
    for src in cfg.pmp_data:
        pmp += read_human_pairs(
            str(find_file(src) or src), cfg.pmp_format, cfg.pmp_max_pairs, cfg.pmp_shp_min_ratio, cfg.seed
        )

    torch.manual_seed(cfg.seed)  # the fresh score head is drawn here
    tok, model = load_model(cfg.model_config(), head="score")
    template.check(tok)
    peft_config = LoraConfig(
        task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_targets(),
        # Named explicitly: peft adds "score" for SEQ_CLS too, but the head being lost on save is
        # the most reported reward-model defect in peers (TRL #1379, PR #2743).
        modules_to_save=["score"],
    )
    head_before = _head_weight(model).clone()
    phases = {}
    if pmp:
        model, phases["pmp"] = _fit(cfg, model, tok, template, pmp, [], peft_config, "pmp",
                                    cfg.pmp_learning_rate, cfg.pmp_epochs, progress)
        peft_config = None  # principle fine-tuning continues the same adapter and head
    model, phases["principles"], trainer = _fit(cfg, model, tok, template, train, held, peft_config, "principles",
                                                cfg.learning_rate, cfg.epochs, progress, keep_trainer=True)
    head_change = float((_head_weight(model).float().cpu() - head_before.float().cpu()).norm())
    if head_change == 0.0:
        raise RuntimeError("the score head did not change during training: it is not trainable (modules_to_save)")
    stats = {
        "train_pairs": len(train), "held_out_pairs": len(held), "pmp_pairs": len(pmp),
        "truncated_pairs": sum(ph["truncated_pairs"] for ph in phases.values()),
        "head_weight_change": head_change, "phases": phases,
        "template": template.to_dict(), "base_model": cfg.model_config().to_dict(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    log.info("trained on %d pairs (%d held out, %d human pairs first); %d pairs had text truncated to the "
             "template's limits", len(train), len(held), len(pmp), stats["truncated_pairs"])
    save_reward_model(trainer, template, cfg, run / "rm")
    if trainer.is_world_process_zero():
        atomic_write_json(run / "reward_stats.json", stats)
    return RewardModel(tok, model, template), stats


def _fit(cfg, model, tok, template, pairs, held, peft_config, phase, lr, epochs, progress, keep_trainer=False):
    import torch
    from datasets import Dataset
    from trl import RewardConfig as TrlRewardConfig

    from .grouped import GroupCollator, GroupedRewardTrainer, group_pairs, group_stats

    columns, n_cut = group_pairs(tok, template, pairs)
    train_ds = Dataset.from_dict(columns)
    eval_ds = Dataset.from_dict(group_pairs(tok, template, held)[0]) if held else None
    cuda = torch.cuda.is_available() and cfg.model_config().device != "cpu"
    bf16 = train_in_bf16(cfg.mixed_precision, cuda, model.dtype)
    args = TrlRewardConfig(
        output_dir=str(Path(cfg.run_dir) / "rm_train" / phase),
        num_train_epochs=epochs, max_steps=cfg.max_steps, learning_rate=lr,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, warmup_steps=cfg.warmup_ratio, lr_scheduler_type=cfg.lr_scheduler,
        logging_steps=cfg.logging_steps, logging_first_step=True,
        eval_strategy="steps" if eval_ds is not None else "no", eval_steps=cfg.eval_steps,
        save_strategy="no", report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        seed=cfg.seed, data_seed=cfg.seed, bf16=bf16, fp16=False, use_cpu=not cuda,
        gradient_checkpointing=cfg.gradient_checkpointing,
        # Inputs are already truncated by the template; TRL would silently drop longer ones.
        max_length=None,
        center_rewards_coefficient=cfg.center_rewards or None, disable_tqdm=not progress,
        # Rows are groups (two prefixes, every draw's suffix) that the collator batches, not TRL's columns.
        remove_unused_columns=False, prediction_loss_only=True,
    )
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainer = GroupedRewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                   processing_class=tok, peft_config=peft_config, data_collator=GroupCollator(pad_id),
                                   callbacks=[release_autocast()])
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    if not any(".score." in f".{n}" or n.startswith("score") for n in trainable):
        raise RuntimeError(f"the score head is not trainable in phase {phase!r}; trainable: {trainable[:5]}...")
    result = trainer.train()
    if eval_ds is not None:
        trainer.evaluate()
    stats = {"pairs": len(pairs), **group_stats(columns), "shared_prefix": trainer.share_prefix,
             "truncated_pairs": n_cut, "steps": trainer.state.global_step,
             "train_loss": result.training_loss, "history": trainer.state.log_history}
    model = trainer.model
    model.eval()
    return (model, stats, trainer) if keep_trainer else (model, stats)


def _head_weight(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    score = inner.score
    # peft wraps the head in a ModulesToSaveWrapper; the trained copy is the active adapter's.
    if hasattr(score, "modules_to_save"):
        score = score.modules_to_save[
            score.active_adapter if isinstance(score.active_adapter, str) else score.active_adapter[0]
        ]
    return score.weight.detach()


def save_reward_model(trainer, template, cfg: RewardConfig, folder: Path) -> None:
    """Write adapter + head + tokenizer + template + info into a staging folder, check that the
    head really is in the saved weights, then swap it into place. Every process calls this: under
    FSDP or ZeRO-3 saving gathers the sharded weights; only the main process writes."""
    from safetensors.torch import load_file

    from .score import save_info

    main = trainer.is_world_process_zero()
    staging = folder.with_name(f".{folder.name}.staging")
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # adapter + modules_to_save (the head) + tokenizer
    trainer.accelerator.wait_for_everyone()
    if not main:
        return
    try:
        template.save(staging)
        save_info(
            staging, cfg.model_config().to_dict(), {"trained_by": "salmon_lib.reward.train", "config": cfg.to_dict()}
        )
        (staging / "training_args.bin").unlink(missing_ok=True)
        saved = load_file(staging / "adapter_model.safetensors")
        head_keys = [k for k in saved if ".score." in f".{k}"]
        if not head_keys:
            raise RuntimeError(f"the score head is missing from the saved adapter (keys: {list(saved)[:5]}...)")
        sharded = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled  # in-memory weights are shards there
        if not sharded and not torch_equal(saved[head_keys[0]], _head_weight(trainer.model)):
            raise RuntimeError("the saved score head differs from the trained one")
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a.float().cpu() == b.float().cpu()).all())


def train(config: dict) -> dict:
    """Entry point for `salmon_lib.launch`: runs once per GPU under `accelerate launch` (or
    in-process on one device) and returns the stats; the model is read back from `<run>/rm`."""
    import os

    import torch

    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        # load_model puts the model on "cuda", i.e. the current device: make that this rank's GPU.
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return train_reward_model(RewardConfig.from_dict(config, where="reward_model launch config"))[1]
