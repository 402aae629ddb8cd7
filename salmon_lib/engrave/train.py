"""Stage 02: principle engraving, i.e. supervised fine-tuning of the base model on its own
self-aligned answers with the rules and exemplars removed from the prompt.

TRL's `SFTTrainer` does the work: the records are prompt-completion pairs rendered with the
project's one chat format (`format.ChatSpec`), so TRL masks the prompt and only the answer tokens
carry loss. Checkpoints go to `sft_checkpoints/` (resume point); the finished adapter (or model,
for a full fine-tune), its tokenizer and `chat_format.json` are moved into `sft/` in one rename.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from pathlib import Path

from ..io import DataError, atomic_write_json, iter_jsonl, read_json, replace_folder
from ..mixed_precision import release_autocast, train_in_bf16
from ..models import ModelConfig
from .config import EngraveConfig
from .format import ChatSpec, make_chat_spec, save_chat_spec
from .report import before_after, plot_loss

log = logging.getLogger(__name__)

INPUT = "self_align.jsonl"
OUTPUT = "sft"
CHECKPOINTS = "sft_checkpoints"
SELF_ALIGN_STATS = "self_align_stats.json"


def load_kept(path: str | Path) -> list[dict]:
    """The kept (prompt, response) records of stage 01; bad lines name file, line and field."""
    required = {"id": (str, int), "prompt": str, "response": str, "kept": bool}
    kept = [rec for _, rec in iter_jsonl(path, required) if rec["kept"]]
    if not kept:
        raise DataError(f"{path}: no kept records to train on (every record has kept=false)")
    return kept


def split_heldout(records: list[dict], heldout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Seeded split: `heldout` records for the before/after table, the rest for training. At least
    one record always stays in training."""
    order = list(records)
    random.Random(seed).shuffle(order)
    n = min(heldout, len(order) - 1)
    return order[n:], order[:n]


def assistant_identity(cfg: EngraveConfig) -> tuple[str, str]:
    """The name and maker the system prompt states: the config's, else those stage 01 used for
    its identity examples (self_align_stats.json), so the two stages cannot disagree."""
    name, creator = cfg.assistant_name, cfg.assistant_creator
    if name is None or creator is None:
        path = Path(cfg.run_dir) / SELF_ALIGN_STATS
        try:
            stats = read_json(path)
        except DataError:
            raise DataError(f"{path}: not found; set assistant_name and assistant_creator, or run stage 01 "
                            "(self_align) first") from None
        for key in ("assistant_name", "assistant_creator"):
            if not isinstance(stats.get(key), str):
                raise DataError(f"{path}: field {key!r} missing or not a string")
        name, creator = name or stats["assistant_name"], creator or stats["assistant_creator"]
    return name, creator


def build_dataset(records: list[dict], spec: ChatSpec, tokenizer=None):
    """Prompt-completion rows for TRL's SFTTrainer. A record with `finished: false` (an RL answer
    cut at its token limit, best_of_n's winners) is trained without an end of turn; TRL appends the
    EOS to every text completion, so such a dataset is tokenized here instead (`input_ids` and
    `completion_mask`, the EOS added to finished answers only)."""
    from datasets import Dataset

    done = [r.get("finished", True) for r in records]
    rows = [spec.example(i, r["prompt"], r["response"], f) for i, (r, f) in enumerate(zip(records, done))]
    if all(done):
        return Dataset.from_list(rows)
    if tokenizer is None:
        raise ValueError("unfinished answers are tokenized here (TRL would append an EOS): pass the tokenizer")
    eos = tokenizer.eos_token_id
    out = []
    for row, finished in zip(rows, done):
        prompt = tokenizer(row["prompt"])["input_ids"]
        completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        if finished and (not completion or completion[-1] != eos):
            completion.append(eos)
        out.append({"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)})
    return Dataset.from_list(out)


def model_config(cfg: EngraveConfig) -> ModelConfig:
    return ModelConfig(spec=cfg.model, quantization=cfg.quantization)


def _lora_config(cfg: EngraveConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets(), task_type="CAUSAL_LM")


def last_checkpoint(folder: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(folder)
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def make_trainer(cfg: EngraveConfig, train_records: list[dict], callbacks: list | None = None,
                 loaded: tuple | None = None):
    """Build (trainer, spec) for the records; separate from `run_engrave` so tests can inspect the
    tokenized data and the loss masks. `loaded`: a (tokenizer, PeftModel) whose adapter training
    continues instead of a fresh LoRA on `cfg.model` (RL's best-of-N fine-tunes the live policy)."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from ..models import load_model
    from .lm_head import score_labelled_positions_only

    name, creator = assistant_identity(cfg)
    local_rank = int(os.environ.get("LOCAL_RANK", "-1"))
    if local_rank >= 0 and torch.cuda.is_available():
        # Under `accelerate launch` each process loads onto its own GPU ("cuda" means the current one).
        torch.cuda.set_device(local_rank)
    tok, model = loaded or load_model(model_config(cfg))
    model.train()
    spec = make_chat_spec(cfg.chat_format, tok.eos_token, name, creator, cfg.system_variants)
    if cfg.quantization != "none" and loaded is None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    cuda = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(Path(cfg.run_dir) / CHECKPOINTS),
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a value below 1 is read as a fraction of the steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        # Batches of answers of like length (transformers sorts mega-batches of a few batches): on a
        # controllability arm's answers, 15% padding against 24% in random batches, and an epoch
        # 19% faster (RESULTS.md, benchmarks/sft_batches.py).
        train_sampling_strategy="group_by_length",
        max_length=cfg.max_length,
        completion_only_loss=True,
        eos_token=tok.eos_token,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=train_in_bf16(cfg.mixed_precision, cuda, model.dtype),
        use_cpu=not cuda,  # transformers refuses bf16 without a GPU unless told the CPU is meant
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        dataset_num_proc=None,
        disable_tqdm=False,
    )
    score_labelled_positions_only()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=build_dataset(train_records, spec, tok),
        processing_class=tok,
        peft_config=None if cfg.method == "full" or loaded is not None else _lora_config(cfg),
        callbacks=[*(callbacks or []), release_autocast()],
    )
    return trainer, spec


def _save_final(trainer, spec: ChatSpec, out_dir: Path) -> None:
    """Adapter (or full model) + tokenizer + chat spec, renamed into place so a half-saved `sft/`
    never exists."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    trainer.processing_class.save_pretrained(str(tmp))
    save_chat_spec(spec, tmp)
    replace_folder(tmp, out_dir)


# Settings that do not change what is learned: a checkpoint made under other values is still valid.
_RESUME_NEUTRAL = {"run_dir", "resume", "logging_steps", "report_to", "save_steps", "save_total_limit",
                   "heldout_max_new_tokens", "distributed"}


def reset_stale_checkpoints(cfg: EngraveConfig) -> bool:
    """Move `sft_checkpoints/` out of the way (to `io.aside_path`, where `stage.run` puts it back if
    training fails) when it was made from other training data or settings (the runner
    reruns a stage whose parameters or inputs changed; resuming the old run would continue, or
    merely re-save, a model trained on something else). The fingerprint covers the settings, the
    content of self_align.jsonl and the assistant identity the system prompt states. Returns
    whether it moved anything."""
    from ..provenance import content_hash, reset_if_changed

    run_dir = Path(cfg.run_dir)
    fingerprint = {"settings": {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_NEUTRAL},
                   INPUT: content_hash(run_dir / INPUT), "identity": list(assistant_identity(cfg))}
    return reset_if_changed(run_dir / CHECKPOINTS, fingerprint)


def engrave_entry(config: dict) -> dict:
    """Entry point for `salmon_lib.launch` (one call per process on several GPUs or CPU
    processes): training only; `stage.run` starts it and calls `finish` once it returns."""
    return train_and_save(EngraveConfig.from_dict(config))[1]


def run_engrave(cfg: EngraveConfig, callbacks: list | None = None) -> dict:
    """Train on `run_dir/self_align.jsonl`, write `run_dir/sft/`, then `finish`; returns the summary."""
    return finish(cfg, train_and_save(cfg, callbacks)[1])


def train_and_save(cfg: EngraveConfig, callbacks: list | None = None):
    """Train and save `sft/` (rank 0); returns (trainer, training summary). The trainer's model is
    the engraved one, in memory."""
    run_dir = Path(cfg.run_dir)
    records = load_kept(run_dir / INPUT)
    train, heldout = split_heldout(records, cfg.heldout, cfg.seed)
    if cfg.max_examples is not None:
        train = train[: cfg.max_examples]
    trainer, spec = make_trainer(cfg, train, callbacks=callbacks)
    resume_from = last_checkpoint(run_dir / CHECKPOINTS) if cfg.resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in trainer.model.parameters())
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    out_dir = run_dir / OUTPUT
    summary = {
        "examples": len(trainer.train_dataset),
        # TRL cuts at max_length from the end, so an over-long prompt leaves no answer and is dropped.
        "dropped_too_long": len(train) - len(trainer.train_dataset),
        "heldout": [{k: r[k] for k in ("id", "prompt", "response")} for r in heldout],
        "method": cfg.method,
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "resumed_from": resume_from,
        "train_seconds": round(seconds, 2),
        "train_loss": result.training_loss,
        "trainable_params": n_trainable,
        "total_params": n_total,
        "log_history": trainer.state.log_history,
        "chat_spec": spec.to_dict(),
        "output": str(out_dir),
    }
    if trainer.is_world_process_zero():
        _save_final(trainer, spec, out_dir)
    return trainer, summary


def finish(cfg: EngraveConfig, summary: dict) -> dict:
    """After training, in one process: the loss figure, the before/after answers and
    `engrave_stats.json`. Not inside a distributed launch: a generation engine started there sees
    the launch's RANK and WORLD_SIZE and waits for peers that have already left (vLLM hung so)."""
    import matplotlib.pyplot as plt

    run_dir = Path(cfg.run_dir)
    plt.close(plot_loss(summary["log_history"], run_dir / "figures" / "engrave_loss.png"))
    summary = {**summary, "before_after": before_after(cfg.model, summary["output"], summary["heldout"],
                                                       cfg.heldout_max_new_tokens, cfg.seed, backend=cfg.backend)}
    atomic_write_json(run_dir / "engrave_stats.json", summary)
    return summary
