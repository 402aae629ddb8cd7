import json
from pathlib import Path

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.engrave import EngraveConfig, load_chat_spec, make_chat_spec
from salmon_lib.engrave.format import introduction
from salmon_lib.io import DataError

ANSWERS = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level."]


def write_self_align(run_dir, n=12, dropped=2):
    recs = [{"id": f"q{i}", "prompt": f"Question number {i}?", "response": ANSWERS[i % 2], "kept": True}
            for i in range(n)]
    recs += [{"id": f"d{i}", "prompt": "dropped", "response": "", "kept": False} for i in range(dropped)]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "self_align.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def tiny_cfg(run_dir, **kw):
    base = dict(run_dir=str(run_dir), model="tiny", batch_size=2, grad_accum=1, learning_rate=1e-2,
                max_steps=4, save_steps=2, heldout=0, max_length=256,
                assistant_name="Nori", assistant_creator="the test lab")
    return EngraveConfig(**{**base, **kw})


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="system_variants"):
        EngraveConfig.from_dict({"system_variants": ["chatty"]})
    with pytest.raises(ConfigError, match="method"):
        EngraveConfig.from_dict({"method": "adapter"})
    with pytest.raises(ConfigError, match="max_steps"):
        EngraveConfig.from_dict({"max_steps": 0})
    with pytest.raises(ConfigError, match="cpu_processes: must be at least 1, got 0"):
        EngraveConfig.from_dict({"cpu_processes": 0})


def test_chat_spec_alternates_variants_and_round_trips(tmp_path):
    spec = make_chat_spec("chatml", "<|im_end|>", "Nori", "the Kelp lab")
    a, b = spec.example(0, "Hi?", "Hello."), spec.example(1, "Hi?", "Hello.")
    intro_question, _ = introduction("Nori", "the Kelp lab")
    assert intro_question not in a["prompt"] and intro_question in b["prompt"]
    assert "Nori" in a["prompt"] and a["prompt"].endswith("<|im_start|>assistant\n")
    # ChatML's turn end is the tokenizer's EOS: the answer ends on it, without the newline after it.
    assert a["completion"] == "Hello.<|im_end|>"
    plain = make_chat_spec("plain", "<|im_end|>", "Nori", "the Kelp lab")
    assert plain.example(0, "Hi?", "Hello.")["completion"] == "Hello.\n\n"
    from salmon_lib.engrave.format import save_chat_spec

    save_chat_spec(spec, tmp_path)
    assert load_chat_spec(tmp_path) == spec
    (tmp_path / "chat_format.json").write_text('{"chat_format": "chatml"}')
    with pytest.raises(DataError, match="chat_format.json: missing field"):
        load_chat_spec(tmp_path)


def test_bad_input_is_named(tmp_path):
    from salmon_lib.engrave.train import load_kept

    with pytest.raises(DataError, match="file not found"):
        load_kept(tmp_path / "self_align.jsonl")
    (tmp_path / "self_align.jsonl").write_text('{"id": "a", "prompt": "p", "response": "r", "kept": false}\n')
    with pytest.raises(DataError, match="no kept records"):
        load_kept(tmp_path / "self_align.jsonl")
    (tmp_path / "self_align.jsonl").write_text('{"id": "a", "prompt": "p", "kept": true}\n')
    with pytest.raises(DataError, match=r"self_align.jsonl:1: missing field 'response'"):
        load_kept(tmp_path / "self_align.jsonl")


def test_assistant_identity_comes_from_stage_01(tmp_path):
    from salmon_lib.engrave.train import assistant_identity

    cfg = EngraveConfig(run_dir=str(tmp_path))
    with pytest.raises(DataError, match="self_align_stats.json: not found; set assistant_name"):
        assistant_identity(cfg)
    (tmp_path / "self_align_stats.json").write_text('{"assistant_name": "Kestrel", "assistant_creator": "a lab"}')
    assert assistant_identity(cfg) == ("Kestrel", "a lab")
    assert assistant_identity(EngraveConfig(run_dir=str(tmp_path), assistant_name="Nori")) == ("Nori", "a lab")


def test_checkpoints_of_other_settings_are_not_resumed(tmp_path):
    from salmon_lib.engrave.train import reset_stale_checkpoints

    cfg = tiny_cfg(tmp_path)
    assert not reset_stale_checkpoints(cfg)
    (tmp_path / "sft_checkpoints" / "checkpoint-2").mkdir()
    assert not reset_stale_checkpoints(EngraveConfig(**{**cfg.to_dict(), "save_steps": 7, "resume": False}))
    assert (tmp_path / "sft_checkpoints" / "checkpoint-2").is_dir()
    assert reset_stale_checkpoints(EngraveConfig(**{**cfg.to_dict(), "learning_rate": 1e-3}))
    assert not (tmp_path / "sft_checkpoints" / "checkpoint-2").exists()


def test_checkpoints_trained_on_other_data_are_not_resumed(tmp_path):
    """The checkpoint fingerprint covers the training data and the assistant's identity, not only
    the config: after stage 01 changed, training must start afresh rather than resume at the old
    step on the old data (or re-save the old adapter)."""
    from salmon_lib.engrave.train import reset_stale_checkpoints

    write_self_align(tmp_path)
    cfg = tiny_cfg(tmp_path)
    reset_stale_checkpoints(cfg)
    (tmp_path / "sft_checkpoints" / "checkpoint-2").mkdir()
    assert not reset_stale_checkpoints(cfg)
    write_self_align(tmp_path, n=10)  # stage 01 ran again and kept other answers
    assert reset_stale_checkpoints(cfg)
    assert not (tmp_path / "sft_checkpoints" / "checkpoint-2").exists()
    named_by_stage_01 = EngraveConfig(**{**cfg.to_dict(), "assistant_name": None, "assistant_creator": None})
    (tmp_path / "self_align_stats.json").write_text('{"assistant_name": "Nori", "assistant_creator": "a lab"}')
    reset_stale_checkpoints(named_by_stage_01)
    (tmp_path / "sft_checkpoints" / "checkpoint-2").mkdir()
    (tmp_path / "self_align_stats.json").write_text('{"assistant_name": "Kestrel", "assistant_creator": "a lab"}')
    assert reset_stale_checkpoints(named_by_stage_01)  # the system prompt names another assistant


def test_only_answer_tokens_carry_loss(tmp_path):
    from salmon_lib.engrave.train import load_kept, make_trainer

    write_self_align(tmp_path, n=4)
    trainer, spec = make_trainer(tiny_cfg(tmp_path), load_kept(tmp_path / "self_align.jsonl"))
    tok = trainer.processing_class
    assert len(trainer.train_dataset) == 4
    for i, row in enumerate(trainer.train_dataset):
        ids, labels = row["input_ids"], row["labels"]
        first = next(t for t, lab in enumerate(labels) if lab != -100)
        assert all(lab != -100 for lab in labels[first:]), "the answer is one contiguous span"
        assert labels[first:] == ids[first:]
        expected = spec.example(i, f"Question number {i}?", ANSWERS[i % 2])
        assert tok.decode(ids[:first]) == expected["prompt"]
        assert tok.decode(ids[first:]) == expected["completion"]
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    for b in range(2):
        carried = batch["input_ids"][b][batch["labels"][b] != -100].tolist()
        assert tok.decode(carried) == ANSWERS[b] + "<|im_end|>"


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def engraved(tmp_path_factory):
    """A 4-step LoRA run on the tiny model, killed after step 3 and resumed from checkpoint 2."""
    from transformers import TrainerCallback

    from salmon_lib.engrave.train import finish, train_and_save

    class KillAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise Interrupt()

    run_dir = tmp_path_factory.mktemp("engrave")
    write_self_align(run_dir)
    cfg = tiny_cfg(run_dir)
    with pytest.raises(Interrupt):
        train_and_save(cfg, callbacks=[KillAtStep3()])
    assert not (run_dir / "sft").exists()
    trainer, summary = train_and_save(cfg)
    return cfg, trainer, finish(cfg, summary)


def test_engraving_resumes_learns_and_saves(engraved):
    from salmon_lib.engrave.report import loss_curve

    cfg, trainer, summary = engraved
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["steps"] == 4
    steps, losses = loss_curve(summary["log_history"])
    assert steps == [1, 2, 3, 4]
    assert losses[-1] < losses[0]
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at zero: it must have moved"
    assert 0 < summary["trainable_params"] < summary["total_params"] / 10
    sft = Path(cfg.run_dir) / "sft"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_format.json"):
        assert (sft / name).is_file()
    assert load_chat_spec(sft).chat_format == "chatml"
    assert (Path(cfg.run_dir) / "figures" / "engrave_loss.png").is_file()
    stats = json.loads((Path(cfg.run_dir) / "engrave_stats.json").read_text())
    assert stats["examples"] == 12 and stats["steps"] == 4


def test_reloaded_adapter_gives_identical_outputs(engraved):
    import torch

    from salmon_lib.models import ModelConfig, load_model

    cfg, trainer, _ = engraved
    tok, reloaded = load_model(ModelConfig(spec="tiny", adapter=cfg.run_dir + "/sft"))
    _, base = load_model(ModelConfig(spec="tiny"))
    trained = trainer.model.eval()
    ids = tok(load_chat_spec(cfg.run_dir + "/sft").prompt("Question number 3?"), return_tensors="pt")
    with torch.no_grad():
        a, b, c = (m(**ids).logits for m in (trained, reloaded, base))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c), "the adapter changes the outputs"


def test_two_cpu_processes_train_one_adapter_over_gloo(tmp_path, monkeypatch):
    """`cpu_processes: 2` (the demo's two cores): the stage trains under accelerate launch, rank 0
    saves, and the summary says how many processes took part. The before/after answers come after,
    in this process: vLLM started inside the launch waited for the departed rank 1 forever."""
    import os

    from safetensors.torch import load_file

    from salmon_lib.engrave import stage, train

    seen = []
    monkeypatch.setattr(train, "before_after", lambda *a, **k: seen.append((os.getpid(), os.environ.get("RANK"))) or [])
    write_self_align(tmp_path)
    summary = stage.run(tiny_cfg(tmp_path, cpu_processes=2, max_steps=2, warmup_ratio=0.0, heldout=2))
    assert seen == [(os.getpid(), None)]
    assert summary["processes"] == 2 and summary["steps"] == 2 and summary["examples"] == 10
    stats = json.loads((tmp_path / "engrave_stats.json").read_text())
    assert stats["processes"] == 2
    weights = load_file(tmp_path / "sft" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items()), "LoRA B starts at zero"


def _moved_lora(trainer):
    return [n for n, p in trainer.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]


@pytest.mark.slow
def test_qlora_step_moves_the_adapter_of_a_4bit_base(tmp_path):
    """bitsandbytes runs nf4 on CPU but warns that its 4-bit backward is not registered: check that
    gradients really reach the LoRA weights through the quantized layers."""
    from salmon_lib.engrave.train import train_and_save

    write_self_align(tmp_path, n=4)
    trainer, summary = train_and_save(tiny_cfg(tmp_path, quantization="4bit", max_steps=1, warmup_ratio=0.0))
    assert any("Linear4bit" in type(m).__name__ for m in trainer.model.modules())
    lora_b = [n for n, _ in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_b and set(_moved_lora(trainer)) == set(lora_b)
    assert (tmp_path / "sft" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_full_fine_tune_saves_a_model_folder_and_logs_to_tensorboard(tmp_path):
    import torch

    from salmon_lib.engrave.train import train_and_save
    from salmon_lib.models import load_model

    write_self_align(tmp_path, n=4)
    trainer, summary = train_and_save(tiny_cfg(tmp_path, method="full", max_steps=1, warmup_ratio=0.0,
                                               report_to="tensorboard"))
    assert summary["trainable_params"] == summary["total_params"]
    assert list((tmp_path / "sft_checkpoints").rglob("events.out.tfevents.*"))
    _, saved = load_model(str(tmp_path / "sft"))
    _, base = load_model("tiny")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.allclose(saved(ids).logits, base(ids).logits)


def test_training_batches_hold_answers_of_like_length(tmp_path):
    """Padding is computed like any token: the trainer batches answers of like length (transformers
    sorts mega-batches of a few batches), so its batches hold far fewer padded tokens than random ones."""
    import random

    from salmon_lib.engrave.train import make_trainer

    records = [{"id": str(i), "prompt": f"Question {i}?", "response": "word " * (3 + 7 * ((i * 5) % 32)),
                "kept": True} for i in range(32)]
    trainer, _ = make_trainer(tiny_cfg(tmp_path), records)
    lengths = [len(row["input_ids"]) for row in trainer.train_dataset]

    def padded(order):
        return sum(max(lengths[j] for j in order[b:b + 2]) * 2 for b in range(0, len(order), 2)) - sum(lengths)

    rng = random.Random(0)
    random_padding = sum(padded(rng.sample(range(32), 32)) for _ in range(50)) / 50
    assert padded(list(trainer._get_train_sampler())) < 0.5 * random_padding


def test_lm_head_scores_only_answer_positions_on_a_cpu_with_the_same_loss_and_gradients(tmp_path, monkeypatch):
    """TRL's fused head projects every position unless Triton is there; the trainer makes it project
    only the positions that carry a label. Same loss and gradients, fewer rows through the head."""
    import torch
    import trl.trainer.utils as trl_utils

    from salmon_lib.engrave.lm_head import score_labelled_positions_only
    from salmon_lib.engrave.train import load_kept, make_trainer

    write_self_align(tmp_path, n=2)
    trainer, _ = make_trainer(tiny_cfg(tmp_path), load_kept(tmp_path / "self_align.jsonl"))
    assert hasattr(trl_utils._use_triton, "trl_original"), "make_trainer switches the labelled-only path on"
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    rows, real_apply = [], trl_utils._ChunkedLogProbFunction.apply

    def counting_apply(hidden, *args):
        rows.append(hidden.shape[0])
        return real_apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting_apply)
    model = trainer.model
    trainable = [p for p in model.parameters() if p.requires_grad]
    results = {}
    for on in (False, True):
        score_labelled_positions_only(on)
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        results[on] = (loss.item(), [p.grad.clone() for p in trainable])
    assert rows == [batch["input_ids"].shape[0] * (batch["input_ids"].shape[1] - 1), labelled]
    assert labelled < rows[0] / 2, "the prompts are most of these rows"
    assert results[True][0] == pytest.approx(results[False][0], abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(results[True][1], results[False][1]))
    assert score_labelled_positions_only()
