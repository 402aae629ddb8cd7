"""Which policies a run has, and their answers through the generation interface.

Every policy is the same base model with a different LoRA adapter (none for the base model), so
one generator serves them all and switches adapters. Each is prompted with the chat spec saved
beside its adapter (`chat_format.json`), or with SFT's when it has none (the base model, hand-made
adapters): exactly as it was trained. Answers are appended to `<run>/eval/answers.jsonl` as they are
made, keyed by the adapter's content hash and the sampling settings, so an interrupted stage resumes
and a retrained policy is answered afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Sequence

from .. import models
from ..engrave.format import SPEC_FILE, ChatSpec, load_chat_spec
from ..io import DataError, RecordLog
from .prompts import EvalPrompt

log = logging.getLogger(__name__)

# the folder suffix of a controllability arm trained for a seed after the first (experiment.arm_name)
REPLICATE = re.compile(r"\.seed\d+$")

ANSWERS = "eval/answers.jsonl"


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str  # "base", "sft", "rl" (stage 05's policy/), "arm:<set>" (a controllability arm) or a user's name
    adapter: str | None  # LoRA adapter folder; None: the base model itself
    kind: str  # base, sft, rl, arm or extra
    spec: ChatSpec  # how it is prompted

    def prompt(self, user: str) -> str:
        return self.spec.prompt(user)


def adapter_digest(adapter: str | None) -> str:
    """Content hash of an adapter's weights, config and chat spec: a retrained policy gets a new one."""
    return models.adapter_digest(adapter, also=(SPEC_FILE,))


def _adapter_policy(name: str, folder: Path, kind: str, fallback: ChatSpec, what: str) -> Policy:
    if not (folder / "adapter_config.json").is_file():
        hint = " (a fully fine-tuned model folder cannot share the base with the others)" \
            if (folder / "config.json").is_file() else ""
        raise DataError(f"{folder}: {what} holds no LoRA adapter (adapter_config.json){hint}")
    spec = load_chat_spec(folder) if (folder / SPEC_FILE).is_file() else fallback
    return Policy(name, str(folder), kind, spec)


def discover(run_dir: str | Path, include_base: bool = True, extra: dict[str, str] | None = None) -> list[Policy]:
    """base (optional), sft/, stage 05's `policy/`, every `rl_arms/<arm>/policy/`, then the extras."""
    run = Path(run_dir)
    sft_dir = run / "sft"
    if not (sft_dir / SPEC_FILE).is_file():
        raise DataError(f"{sft_dir / SPEC_FILE}: not found; run stage 02 (engrave) first")
    spec = load_chat_spec(sft_dir)
    out = [Policy("base", None, "base", spec)] if include_base else []
    out.append(_adapter_policy("sft", sft_dir, "sft", spec, "the SFT folder"))
    if (run / "policy").is_dir():
        out.append(_adapter_policy("rl", run / "policy", "rl", spec, "stage 05's policy folder"))
    for folder in sorted((run / "rl_arms").glob("*/policy")):
        if REPLICATE.search(folder.parent.name):  # another seed's arm: the controllability experiment's alone
            continue
        out.append(_adapter_policy(f"arm:{folder.parent.name}", folder, "arm", spec, "an RL arm's policy folder"))
    for name, path in (extra or {}).items():
        folder = Path(path).expanduser()
        folder = folder if folder.is_absolute() else run / folder
        out.append(_adapter_policy(name, folder, "extra", spec, f"extra policy {name!r}"))
    return out


def arm_policy(run_dir: str | Path, arm: str) -> Policy:
    """The policy of `rl_arms/<arm>/`, prompted with its own chat spec (else SFT's)."""
    run = Path(run_dir)
    return _adapter_policy(f"arm:{arm}", run / "rl_arms" / arm / "policy", "arm", load_chat_spec(run / "sft"),
                           "an RL arm's policy folder")


def open_generator(model: str, backend: str, policies: Sequence[Policy], batch_size: int, progress: bool = True,
                   score_cache: str | Path | None = None, processes: int = 1, merge_adapters: bool = False,
                   dtype: str = "auto"):
    """One generator on the base model that can serve every policy's adapter (`merge_adapters`: see
    `generation.make_generator`), its weights in `dtype` (a `ModelConfig.dtype`)."""
    from ..generation import make_generator
    from ..models import ModelConfig

    # vLLM checks each adapter against its limits (rank, features) and tries it once at start; with
    # `auto`, an engine that cannot serve them falls back to HF
    adapters = [p.adapter for p in policies if p.adapter]
    return make_generator(ModelConfig(spec=model, dtype=dtype), backend, adapters=adapters, batch_size=batch_size,
                          progress=progress, score_cache=score_cache, processes=processes,
                          merge_adapters=merge_adapters)


@dataclasses.dataclass
class Sampling:
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def signature(self, model: str) -> str:
        return hashlib.sha256(json.dumps([model, dataclasses.asdict(self)]).encode()).hexdigest()[:12]


def answer(gen, policy: Policy, prompts: Sequence[EvalPrompt], sampling: Sampling, model: str, cache: RecordLog,
           n: int = 1, batch_size: int = 16, tag: str = "") -> list[list[dict]]:
    """`n` answers of `policy` per prompt: `{text, token_ids, num_tokens, finished}`, cached in `cache`
    under the engine that made them (engines draw differently from the same seed). All policies use
    the same seed, so they draw from the same random stream (paired comparisons then differ by the
    policy, not by the luck of the draw)."""
    prefix = f"{policy.name}|{adapter_digest(policy.adapter)}|{sampling.signature(model)}|{n}|{tag}|{gen.backend}"
    key = lambda p: f"{prefix}|{p.id}"  # noqa: E731
    todo = [p for p in prompts if key(p) not in cache]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        comps = gen.generate([policy.prompt(p.prompt) for p in chunk], n=n, temperature=sampling.temperature,
                             top_p=sampling.top_p, max_new_tokens=sampling.max_new_tokens,
                             stop=policy.spec.format.stop, seed=sampling.seed + start, adapter=policy.adapter)
        cache.append({"id": key(p), "policy": policy.name, "prompt_id": p.id,
                      "samples": [{"text": c.text.strip(), "token_ids": c.token_ids, "num_tokens": c.num_tokens,
                                   "finished": c.finish_reason == "stop"} for c in cs]}
                     for p, cs in zip(chunk, comps))
        log.info("%s: answered %d/%d prompts", policy.name, min(start + batch_size, len(todo)), len(todo))
    stored = {r["id"]: r["samples"] for r in cache.records() if r["id"].startswith(prefix)}
    return [stored[key(p)] for p in prompts]


def find_policy(run_dir: str | Path, name: str | None) -> Policy:
    """A policy of the run by name (base, sft, rl, arm:<set>), or an adapter folder; default: the
    RL policy when there is one, else SFT."""
    policies = {p.name: p for p in discover(run_dir)}
    if name is None:
        return policies.get("rl", policies["sft"])
    if name in policies:
        return policies[name]
    folder = Path(name).expanduser()
    if (folder / "adapter_config.json").is_file():
        return _adapter_policy(folder.name, folder, "extra", policies["sft"].spec, "--policy")
    raise DataError(f"no policy {name!r} in {run_dir}; known: {', '.join(policies)} (or give an adapter folder)")
