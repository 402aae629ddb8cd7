import pytest
import torch

from salmon_lib import mixed_precision
from salmon_lib.config import ConfigError
from salmon_lib.engrave import EngraveConfig
from salmon_lib.mixed_precision import sampling_dtype, train_in_bf16
from salmon_lib.reward.config import RewardConfig
from salmon_lib.rl.config import RLConfig
from tests.test_engrave import tiny_cfg, write_self_align


@pytest.mark.parametrize("amx", [True, False])
def test_auto_takes_bf16_on_a_cpu_only_with_amx_and_float32_weights(monkeypatch, amx):
    monkeypatch.setattr(mixed_precision, "amx_available", lambda: amx)
    assert train_in_bf16("auto", False) is amx
    assert train_in_bf16("auto", False, torch.float32) is amx
    assert train_in_bf16("auto", False, torch.float64) is False, "the tests' exact float64 models stay exact"
    assert train_in_bf16("bf16", False) is True
    assert train_in_bf16("no", False) is False


def test_on_cuda_bf16_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(mixed_precision, "amx_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert train_in_bf16("auto", True) is True
    assert train_in_bf16("auto", True, torch.bfloat16) is True
    assert train_in_bf16("no", True) is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert train_in_bf16("auto", True) is False
    with pytest.raises(ValueError, match="mixed_precision: bf16 .* does not support bf16"):
        train_in_bf16("bf16", True)


@pytest.mark.parametrize("amx", [True, False])
def test_an_endpoint_engine_samples_in_bf16_where_the_hardware_is_fast_at_it(monkeypatch, amx):
    monkeypatch.setattr(mixed_precision, "amx_available", lambda: amx)
    assert sampling_dtype("auto", False) == ("bfloat16" if amx else "float32")
    assert sampling_dtype("float32", False) == "float32"
    assert sampling_dtype("bfloat16", False) == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert sampling_dtype("auto", True) == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert sampling_dtype("auto", True) == "float32"
    with pytest.raises(ValueError, match="sampling_dtype: bfloat16 .* does not support bf16"):
        sampling_dtype("bfloat16", True)
    with pytest.raises(ValueError, match="endpoint_dtype: bfloat16 .* does not support bf16"):
        sampling_dtype("bfloat16", True, "endpoint_dtype")


@pytest.mark.parametrize("stage", ["prompts", "self_align"])
@pytest.mark.parametrize("amx", [True, False])
def test_the_data_sampling_stages_start_their_engine_in_the_resolved_dtype(tmp_path, monkeypatch, stage, amx):
    """Stages 00 and 01 only sample text to keep: their engine's weights follow `sampling_dtype`."""
    import importlib

    from salmon_lib import generation
    from salmon_lib.prompts import PromptsConfig
    from tests.test_self_align_stage import setup_run

    class Started(Exception):
        pass

    def started(model_cfg, *args, **kwargs):
        raise Started(model_cfg.dtype)

    monkeypatch.setattr(mixed_precision, "amx_available", lambda: amx)
    monkeypatch.setattr(generation, "make_generator", started)
    if stage == "prompts":
        cfg = PromptsConfig(run_dir=str(tmp_path), generators=["bootstrap"], num_bootstrap=2)
    else:
        cfg = setup_run(tmp_path)
    for setting, dtype in [("auto", "bfloat16" if amx else "float32"), ("float32", "float32"),
                           ("bfloat16", "bfloat16")]:
        with pytest.raises(Started, match=f"^{dtype}$"):
            importlib.import_module(f"salmon_lib.{stage}.stage").run(
                type(cfg).from_dict({**cfg.to_dict(), "sampling_dtype": setting}))
    with pytest.raises(ConfigError, match="sampling_dtype"):
        type(cfg).from_dict({"sampling_dtype": "fp8"})


@pytest.mark.parametrize("cls", [EngraveConfig, RewardConfig, RLConfig])
def test_every_training_stage_takes_the_option_and_refuses_unknown_values(cls):
    assert cls().mixed_precision == "auto"
    assert cls.from_dict({"mixed_precision": "no"}).mixed_precision == "no"
    with pytest.raises(ConfigError, match="mixed_precision"):
        cls.from_dict({"mixed_precision": "fp16"})


@pytest.mark.parametrize("setting", ["bf16", "no"])
def test_sft_trains_in_the_chosen_precision_and_hands_back_the_model_in_its_own(tmp_path, setting):
    """Under bf16 the LoRA matmuls run in bf16 while the trained weights stay float32, and after
    training the model computes in float32 again: accelerate leaves its autocast wrapper on the
    forward, and stage 02's before/after answers and the next round's sampling use that model."""
    from salmon_lib.engrave.train import load_kept, make_trainer

    write_self_align(tmp_path, n=8)
    trainer, _ = make_trainer(tiny_cfg(tmp_path, mixed_precision=setting, max_steps=3),
                              load_kept(tmp_path / "self_align.jsonl"))
    q_proj = trainer.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    seen = []
    hook = q_proj.register_forward_hook(lambda mod, inputs, out: seen.append(out.dtype))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    expected = torch.bfloat16 if setting == "bf16" else torch.float32
    assert set(seen) == {expected}
    assert all(p.dtype == torch.float32 for n, p in trainer.model.named_parameters() if "lora" in n)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if n in before)
    seen.clear()
    with torch.no_grad():
        trainer.model(input_ids=torch.tensor([[1, 2, 3]]))
    hook.remove()
    assert seen == [torch.float32]
