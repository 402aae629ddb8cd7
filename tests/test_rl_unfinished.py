"""Answers cut at the token limit are trained as cut: no end of turn in best_of_n's SFT data or in
DPO's pairs (TRL appends the EOS to any text completion that lacks it)."""

import pytest

from salmon_lib.engrave.format import make_chat_spec
from salmon_lib.engrave.train import build_dataset
from salmon_lib.models import load_model
from salmon_lib.rl.dpo import cut_aware, preference_pairs
from salmon_lib.rl.draw import Drawn
from salmon_lib.rl.shaping import Sample


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def test_sft_rows_end_finished_answers_only(tiny):
    tok, _ = tiny
    spec = make_chat_spec("chatml", tok.eos_token, "Nori", "the test lab")
    records = [{"prompt": "Say hi.", "response": "Hi there!", "finished": True},
               {"prompt": "Tell a story.", "response": "Once upon a time there", "finished": False}]
    rows = build_dataset(records, spec, tok)
    eos = tok.eos_token_id
    done, cut = rows[0], rows[1]
    answer = [t for t, m in zip(done["input_ids"], done["completion_mask"]) if m]
    assert answer[-1] == eos and answer.count(eos) == 1
    story = tok("Once upon a time there", add_special_tokens=False)["input_ids"]
    assert cut["input_ids"][-len(story):] == story
    assert sum(cut["completion_mask"]) == len(story)
    prompt = tok(spec.example(1, "Tell a story.", "")["prompt"])["input_ids"]
    assert cut["input_ids"][:len(prompt)] == prompt and not any(cut["completion_mask"][:len(prompt)])
    # all finished: the text rows TRL tokenizes itself, as stage 02 always had
    assert build_dataset(records[:1], spec, tok).column_names == ["prompt", "completion"]


def test_dpo_pairs_say_which_side_was_cut():
    def sample(text, finished):
        return Sample("p1", "Q?", "general", text, 5, finished, Drawn((), ()))

    groups = [[sample("Short.", True), sample("Long and cut", False)]]
    terms = [[{"score": 1.0}, {"score": -1.0}]]
    (pair,), roles = preference_pairs(["<prompt>"], groups, terms, "<|im_end|>")
    assert pair == {"prompt": "<prompt>", "chosen": "Short.<|im_end|>", "rejected": "Long and cut",
                    "chosen_finished": True, "rejected_finished": False}
    assert roles == ["chosen", "rejected"]


def test_dpo_trainer_leaves_a_cut_answer_without_eos(tiny, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import DPOConfig, DPOTrainer

    tok, base = tiny
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    rows = [{"prompt": "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n", "chosen": "Short.<|im_end|>",
             "rejected": "Long and cut", "chosen_finished": True, "rejected_finished": False}]
    args = DPOConfig(output_dir=str(tmp_path), report_to=[], per_device_train_batch_size=1, max_steps=1, bf16=False)
    eos = tok.eos_token_id
    plain = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    assert plain.train_dataset[0]["rejected_ids"][-1] == eos  # the defect: TRL ends the cut answer
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    ours = cut_aware(DPOTrainer)(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    row = ours.train_dataset[0]
    assert row["rejected_ids"] == tok("Long and cut", add_special_tokens=False)["input_ids"]
    assert row["chosen_ids"][-1] == eos and row["chosen_ids"].count(eos) == 1
