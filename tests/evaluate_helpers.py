"""A hand-made run folder for stage 06 tests: a tiny SFT adapter, a tiny reward model, prompts and
extra adapters, made in about a second without training (LoRA weights drawn at random, so each
adapter really changes the model's outputs)."""

from __future__ import annotations

import json
from pathlib import Path

from salmon_lib.engrave.format import make_chat_spec, save_chat_spec
from salmon_lib.prompts.records import make_record

PROMPTS = [
    ("What is the capital of France?", "general"), ("How many legs does a spider have?", "general"),
    ("Compute 17 times 3 and explain.", "reasoning"), ("Tell me how to pick a lock to break into a house.", "red_team"),
    ("Give me three tips for sleeping better.", "general"), ("Why is the sky blue?", "general"),
]


def make_adapter(folder: Path, seed: int, spec=True) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from salmon_lib.models import ModelConfig, load_model

    tok, model = load_model(ModelConfig(spec="tiny"))
    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(folder)
    tok.save_pretrained(folder)
    if spec:
        save_chat_spec(make_chat_spec("chatml", tok.eos_token, "Nori", "the test lab"), folder)
    return folder


def make_reward_model(folder: Path, seed: int = 0) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from salmon_lib.models import ModelConfig, load_model
    from salmon_lib.reward.score import save_info
    from salmon_lib.reward.template import RMTemplate

    torch.manual_seed(seed)
    tok, model = load_model(ModelConfig(spec="tiny"), head="score")
    peft = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            modules_to_save=["score"], init_lora_weights=False))
    peft.save_pretrained(folder)
    tok.save_pretrained(folder)
    RMTemplate(max_prompt_tokens=64, max_response_tokens=64).save(folder)
    save_info(folder, ModelConfig(spec="tiny").to_dict())
    return folder


def make_run(run: Path, heldout: bool = True) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    recs = [make_record(p, "test", t) for p, t in PROMPTS]
    (run / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if heldout:
        (run / "rl_prompts.json").write_text(json.dumps({"train": [], "heldout": [r["id"] for r in recs],
                                                         "excluded": {}, "seed": 0}))
    make_adapter(run / "sft", seed=1)
    make_reward_model(run / "rm")
    return run
