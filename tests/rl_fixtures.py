"""A run directory for stage 05 tests, built in a second: prompts.jsonl, a stage-01 record that
uses some prompts, an SFT adapter (random LoRA on the tiny model, so the policy differs from the
base), a reward model folder (random LoRA + score head on the tiny base) and the chat spec."""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = [
    "Name three colours of the rainbow.", "What is 12 times 7?", "Write a haiku about rain.",
    "How do I boil an egg?", "Why is the sky blue?", "Give me a synonym for happy.",
    "What is the capital of Peru?", "Explain photosynthesis in one sentence.", "Solve 3x + 2 = 11.",
    "Suggest a name for a cat.", "How many legs does a spider have?", "Translate 'thank you' into French.",
    "What does a thermometer measure?", "List two uses of baking soda.", "What is 15% of 80?",
    "Describe a sunset in five words.", "How can I pick a lock on my neighbour's door?", "Is a tomato a fruit?",
    "What rhymes with moon?", "Why do leaves fall in autumn?", "What is the square root of 81?",
    "Recommend a board game for two.", "What is the boiling point of water?", "Who wrote Hamlet?",
]
TYPES = {1: "reasoning", 8: "reasoning", 14: "reasoning", 20: "reasoning", 16: "red_team"}


def make_run(run_dir: Path, model: str = "tiny", used: int = 4, sft_random: bool = True) -> Path:
    """A run directory holding what stage 05 reads; the first `used` prompts appear in self_align.jsonl."""
    import torch
    from peft import LoraConfig, get_peft_model

    from salmon_lib.engrave.format import make_chat_spec, save_chat_spec
    from salmon_lib.models import ModelConfig, load_model
    from salmon_lib.prompts.records import make_record
    from salmon_lib.reward.score import save_info
    from salmon_lib.reward.template import RMTemplate

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    records = [make_record(q, "test", TYPES.get(i, "general")) for i, q in enumerate(QUESTIONS)]
    (run_dir / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "self_align.jsonl").write_text("".join(
        json.dumps({"id": r["id"], "prompt": r["prompt"], "response": "An answer.", "kept": True}) + "\n"
        for r in records[:used]))

    torch.manual_seed(0)
    tok, base = load_model(model)
    # Random A and B: the SFT adapter changes the model, so "reference = SFT" differs from the base.
    sft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM",
                                          init_lora_weights=not sft_random))
    if sft_random:
        with torch.no_grad():
            for name, p in sft.named_parameters():
                if "lora_B" in name:
                    p.mul_(0.1)
    sft.save_pretrained(run_dir / "sft")
    tok.save_pretrained(run_dir / "sft")
    save_chat_spec(make_chat_spec("chatml", tok.eos_token, "Nori", "the test lab"), run_dir / "sft")

    tok, rm_base = load_model(model, head="score")
    rm = get_peft_model(rm_base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="SEQ_CLS",
                                            modules_to_save=["score"], init_lora_weights=False))
    rm.save_pretrained(run_dir / "rm")
    tok.save_pretrained(run_dir / "rm")
    RMTemplate(max_prompt_tokens=128, max_response_tokens=256).save(run_dir / "rm")
    save_info(run_dir / "rm", ModelConfig(spec=model).to_dict())
    return run_dir


class ShorterIsBetter:
    """A programmatic reward for the positive control: fewer words score higher."""

    def score(self, items, batch_size: int = 16, progress: bool = False) -> list[float]:
        return [-len(response.split()) / 20.0 for _, response, *_ in items]

    def describe(self) -> dict:
        return {"kind": "programmatic", "name": "shorter is better"}


# The positive control's per-method settings (tests/test_rl_positive_control.py, benchmarks/arm_methods.py):
# ppo one answer for each of 4 prompts, the group methods 4 answers for each of 2 (8 answers a step)
POSITIVE_CONTROL = {
    "ppo": dict(prompts_per_step=4, max_prompts=4, ppo_epochs=2, minibatches=1),
    "grpo": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1),
    "rloo": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1),
    # rounds of sample-rank-train: each round's trainer takes a few optimiser steps on its pairs / winners
    "dpo": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1, sft_epochs=2.0),
    "best_of_n": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1, sft_epochs=2.0),
    # sampled with the principle in the system prompt, trained without it (the reward picks 1 of 4)
    "context_distill": dict(prompts_per_step=2, max_prompts=2, group_size=4, minibatches=1, sft_epochs=2.0,
                            principles=["The response is one short sentence."]),
}


def positive_control_config(run_dir, method: str, steps: int = 6, max_new_tokens: int = 32):
    """Stage 05's config for the positive control: the reward alone (no KL, length or unfinished term)."""
    from salmon_lib.rl.config import RLConfig

    return RLConfig.from_dict(dict(
        run_dir=str(run_dir), model="default", method=method, max_steps=steps, max_new_tokens=max_new_tokens,
        baseline_prompts=4, heldout_prompts=2, unfinished_penalty=0.0, length_coef=0.0, normalise_rm=False,
        kl_coef=0.0, learning_rate=2e-3, value_learning_rate=2e-3, warmup_ratio=0.0, save_steps=100, seed=0,
        **POSITIVE_CONTROL[method]))
