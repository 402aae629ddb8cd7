"""The policy: the base model with the SFT adapter as a trainable LoRA named "default" (the name
TRL's trainers expect), and the finished policy folder every later stage loads.

`policy/` holds the adapter, the tokenizer, `chat_format.json` copied from `sft/` (so every later
use prompts the policy as it was trained) and `policy_info.json`; load it with
`ModelConfig(spec=<policy_info base_model.spec>, adapter=<policy folder>)`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..engrave.format import ChatSpec, load_chat_spec, save_chat_spec
from ..io import DataError, atomic_write_json
from ..models import ModelConfig

INFO_FILE = "policy_info.json"


def base_model_config(cfg) -> ModelConfig:
    dtype = cfg.dtype
    if cfg.quantization == "4bit" and dtype == "auto":
        dtype = "bfloat16"  # QLoRA's compute dtype: the trainable LoRA weights are kept in it
    return ModelConfig(spec=cfg.model, quantization=cfg.quantization, dtype=dtype, seed=cfg.seed)


def disable_dropout(model) -> None:
    """Rollout log-probs and training log-probs must come from the same function: PPO's first
    ratio is exactly 1 only without dropout (TRL's online trainers do the same)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def load_policy(cfg, sft_dir: str | Path):
    """(tokenizer, model, chat spec): the base with the SFT adapter, trainable, dropout off."""
    from ..models import load_adapter, load_model

    sft_dir = Path(sft_dir)
    if not (sft_dir / "adapter_config.json").is_file():
        raise DataError(f"{sft_dir}: no LoRA adapter (adapter_config.json); RL trains the SFT adapter of stage 02 "
                        "(engrave with method lora or qlora): run it first")
    spec = load_chat_spec(sft_dir)
    tok, base = load_model(base_model_config(cfg))
    if cfg.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model = load_adapter(base, sft_dir, trainable=True)
    disable_dropout(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return tok, model, spec


def save_policy(model, tokenizer, spec: ChatSpec, out_dir: str | Path, info: dict) -> Path:
    """The "default" adapter, tokenizer, chat spec and info, renamed into place in one step so a
    half-written policy folder never exists."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=["default"])
    tokenizer.save_pretrained(str(tmp))
    save_chat_spec(spec, tmp)
    atomic_write_json(tmp / INFO_FILE, info)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def policy_info(cfg, method: str, principles: dict, steps: int, arm: str | None) -> dict:
    base = base_model_config(cfg).to_dict()
    base.pop("adapter", None)
    return {"base_model": base, "method": method, "principles": principles, "steps": steps, "arm": arm}
