"""Model specs: tiny, default, folders, hub ids offline, adapters, 4-bit, scalar head, bad paths."""

import json

import pytest
import torch

from salmon_lib import models
from salmon_lib.models import ModelConfig, ModelLoadError, load_model, resolve_model_dir


def _logits(model, tok, text="The quick brown fox"):
    ids = tok([text], return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_tiny_is_deterministic_per_seed():
    tok, a = load_model(ModelConfig(spec="tiny", seed=0))
    _, b = load_model(ModelConfig(spec="tiny", seed=0))
    _, c = load_model(ModelConfig(spec="tiny", seed=1))
    assert a.config.num_hidden_layers == 2 and len(tok) == a.config.vocab_size
    assert torch.equal(_logits(a, tok), _logits(b, tok))
    assert not torch.allclose(_logits(a, tok), _logits(c, tok))
    assert a.dtype == torch.float32 and a.device.type == "cpu"


def test_default_model_is_converted_once_and_reused(monkeypatch):
    folder = resolve_model_dir("default")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config, "the GGUF quantizer must not be saved"
    monkeypatch.setattr(models, "_convert_default", lambda target: pytest.fail("converted again"))
    tok, model = load_model("default")
    assert model.config.num_hidden_layers == 30
    assert tok.decode(tok("<|im_start|>user").input_ids) == "<|im_start|>user"


def test_local_folder_spec_loads_the_same_weights():
    folder = resolve_model_dir("tiny")
    tok, a = load_model("tiny")
    _, b = load_model(str(folder))
    assert torch.equal(_logits(a, tok), _logits(b, tok))


def test_hub_id_offline_fails_fast_with_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="hub is unreachable.*pass the folder as the model spec"):
        load_model("someone/not-downloaded-model")


def test_bad_specs_name_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="neither 'default', 'tiny', an existing folder nor a Hub id"):
        resolve_model_dir(str(tmp_path / "missing" / "deep" / "model"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=f"{empty} is not a model folder: expected a config.json"):
        resolve_model_dir(str(empty))
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(ModelLoadError, match="is a file, not a model folder"):
        resolve_model_dir(str(tmp_path / "file.bin"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=str(corrupt)):
        load_model(str(corrupt))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    src = resolve_model_dir("tiny")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (no_weights / name).write_bytes((src / name).read_bytes())
    with pytest.raises(ModelLoadError, match=f"{no_weights} holds a config.json but no weights"):
        load_model(str(no_weights))


def _save_lora(model, path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(path)
    return peft_model


def test_lora_adapter_loads_with_identical_outputs(tmp_path):
    tok, base = load_model("tiny")
    plain = _logits(base, tok)
    peft_model = _save_lora(base, tmp_path / "lora")
    expected = _logits(peft_model.eval(), tok)
    assert not torch.allclose(plain, expected), "a random LoRA must change the outputs"
    _, loaded = load_model(ModelConfig(spec="tiny", adapter=str(tmp_path / "lora")))
    assert torch.allclose(_logits(loaded, tok), expected, atol=1e-6)
    with pytest.raises(ModelLoadError, match="is a LoRA adapter, not a model"):
        resolve_model_dir(str(tmp_path / "lora"))


def test_adapter_for_another_base_is_refused(tmp_path):
    _, default = load_model("default")
    _save_lora(default, tmp_path / "big_lora")
    with pytest.raises(ModelLoadError, match="does not fit this base model.*size mismatch"):
        load_model(ModelConfig(spec="tiny", adapter=str(tmp_path / "big_lora")))
    with pytest.raises(ModelLoadError, match="not a LoRA adapter folder"):
        load_model(ModelConfig(spec="tiny", adapter=str(tmp_path)))


def test_4bit_load_on_cpu_runs_forward():
    import bitsandbytes as bnb

    tok, model = load_model(ModelConfig(spec="tiny", quantization="4bit"))
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert torch.isfinite(_logits(model, tok)).all()


def test_scalar_head_variant():
    tok, model = load_model("tiny", head="score")
    ids = tok(["one", "two words here"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**ids).logits
    assert out.shape == (2, 1)
    assert model.config.pad_token_id == tok.pad_token_id


def test_cuda_requested_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(ModelLoadError, match="no CUDA device is visible"):
        load_model(ModelConfig(spec="tiny", device="cuda"))


@pytest.mark.slow
def test_default_conversion_from_scratch(tmp_path):
    cfg = ModelConfig(spec="default", cache_dir=str(tmp_path))
    folder = resolve_model_dir(cfg)
    assert folder == tmp_path / models.DEFAULT_DIR_NAME
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    tok, fresh = load_model(cfg)
    _, cached = load_model("default")
    assert torch.equal(_logits(fresh, tok), _logits(cached, tok))
