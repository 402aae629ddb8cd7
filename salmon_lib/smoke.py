"""Smoke job: load a model spec and answer a few prompts, to prove the install end to end."""

from __future__ import annotations

import time

from .chat_format import get_format
from .models import ModelConfig, load_model

SMOKE_PROMPTS = [
    "What is the capital of France?",
    "Give me two tips for sleeping better.",
    "Explain in one sentence what a reward model is.",
]


def answer(prompts: list[str], cfg: ModelConfig, max_new_tokens: int = 64, chat_format: str = "chatml") -> list[str]:
    import torch

    tok, model = load_model(cfg)
    fmt = get_format(chat_format)
    answers = []
    for p in prompts:
        ids = tok(fmt.prompt(p), return_tensors="pt").to(model.device)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, stop_strings=list(fmt.stop), tokenizer=tok)
        text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        answers.append(text.strip())
    return answers


def _run(args) -> int:
    start = time.perf_counter()
    cfg = ModelConfig(spec=args.model)
    for prompt, reply in zip(SMOKE_PROMPTS, answer(SMOKE_PROMPTS, cfg)):
        print(f"\n>>> {prompt}\n{reply}")
    print(f"\n(smoke run on {args.model!r} took {time.perf_counter() - start:.1f} s)")
    return 0


def _prepare(args) -> int:
    from .models import resolve_model_dir

    print(f"{args.model}: {resolve_model_dir(ModelConfig(spec=args.model))}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("smoke", help="load a model and answer 3 prompts")
    p.add_argument("--model", default="default", help="model spec (default, tiny, folder, hub id)")
    p.set_defaults(func=_run)
    p = sub.add_parser("prepare", help="make the model folder for a spec (converts the default model once)")
    p.add_argument("--model", default="default", help="model spec")
    p.set_defaults(func=_prepare)
