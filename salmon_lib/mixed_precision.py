"""Where bf16 is used: a trainer's autocast (`train_in_bf16`) and a sampling-only engine's weights
(`sampling_dtype`).

`auto` takes bf16 where the hardware is fast at it: a GPU that supports it, as every recipe does,
and a CPU with AMX tiles (Intel Sapphire Rapids and later). On this project's 2-core AMX machine an
epoch of a controllability arm's fine-tuning took 92 s in bf16 against 131 s in fp32 (RESULTS.md).
On a CPU without AMX, bf16 is emulated and slower than fp32, so `auto` stays in fp32 there (and for
DPO on any CPU: `rl.dpo` says why). Generation and scoring keep the model's own dtype, since guided
sampling multiplies log-prob differences by its scale and the contrastive reward is a small
difference of log-probs. The exceptions are engines that only sample text: stages 00 and 01, whose
text is kept as data, and stage 06's endpoint, where every compared policy answers alike. There
bf16 changes no comparison, and on this machine it gave vLLM 2.2 times its float32 tokens per
second (RESULTS.md).
"""

from __future__ import annotations

from typing import Literal

MixedPrecision = Literal["auto", "bf16", "no"]
SamplingDtype = Literal["auto", "float32", "bfloat16"]


def amx_available() -> bool:
    """Whether this CPU has AMX tiles that torch's oneDNN kernels use for bf16 matmuls."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def train_in_bf16(setting: MixedPrecision, cuda: bool, model_dtype=None) -> bool:
    """`setting` resolved for a trainer on CUDA or on the CPU. `model_dtype`: the trained weights'
    dtype (None: float32); `auto` leaves float64 (exact tests) and float16 weights alone."""
    import torch

    if setting == "no":
        return False
    if cuda:
        if not torch.cuda.is_bf16_supported():
            if setting == "bf16":
                raise ValueError("mixed_precision: bf16 was asked for, but this GPU does not support bf16; "
                                 "use mixed_precision: auto or no")
            return False
    if setting == "bf16":
        return True
    if model_dtype not in (None, torch.float32, torch.bfloat16):
        return False
    return cuda or amx_available()


def sampling_dtype(setting: SamplingDtype, cuda: bool | None = None, option: str = "sampling_dtype") -> str:
    """`setting` resolved to the weights' dtype of a sampling-only engine on CUDA or on the CPU (None:
    CUDA when this machine has it): `auto` takes bfloat16 where `train_in_bf16` would (a GPU with
    bf16, a CPU with AMX), float32 elsewhere. `option`: the parameter's name, for the error."""
    import torch

    if cuda is None:
        cuda = torch.cuda.is_available()
    if setting == "bfloat16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{option}: bfloat16 was asked for, but this GPU does not support bf16; "
                         f"use {option}: auto or float32")
    if setting == "auto":
        return "bfloat16" if train_in_bf16("auto", cuda) else "float32"
    return setting


def release_autocast():
    """A TrainerCallback that gives the model its own forward back when training ends. accelerate
    wraps the forward in bf16 autocast and leaves it so, and whatever used the model next (the
    next round's sampling, stage 02's before/after answers, stage 04's scoring) would run in bf16."""
    from accelerate.utils import extract_model_from_parallel
    from transformers import TrainerCallback

    class ReleaseAutocast(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            if model is not None:
                extract_model_from_parallel(model, keep_fp32_wrapper=False)

    return ReleaseAutocast()
