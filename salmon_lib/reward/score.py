"""Scoring API: (prompt, response, principles) -> float, with the long prefix shared.

The template puts the principles after the response and instruction, so a batch of items that
share (prompt, response) runs that prefix once: the prefixes of a batch are left-padded to a common
end, run with a KV cache, and each principle suffix continues from its own prefix's cache rows.
Scoring one response under K principle sets then costs one prefix pass plus K short suffix passes
instead of K full passes. Items are sorted by length and padded per batch, never to a fixed size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Literal, Sequence

from ..config import Config, ConfigError
from ..io import DataError, iter_jsonl, read_json, write_jsonl
from .template import RMTemplate

INFO_FILE = "rm_info.json"

# (prompt, response, principle texts[, finished]): a trained head reads the text as it is, so
# `finished` (which the likelihood rewards need) changes nothing here: a cut answer reads as cut.
Item = tuple


class RewardModel:
    """A principle-following reward model: a scalar-head model plus the template it was trained on."""

    def __init__(self, tokenizer, model, template: RMTemplate):
        template.check(tokenizer)
        self.tokenizer = tokenizer
        self.model = model
        self.template = template
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        # Calling the backbone and the head separately is what lets a suffix continue from a cache;
        # with peft the LoRA layers live inside the backbone and the head is the trained copy.
        self.backbone = getattr(inner, inner.base_model_prefix)
        self.head = inner.score

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", dtype: str = "auto") -> "RewardModel":
        """Load a reward model folder written by stage 04 (`<run>/rm`)."""
        from ..config import ConfigError
        from ..models import ModelConfig, load_model

        path = Path(path)
        info_path = path / INFO_FILE
        if not path.is_dir():
            raise DataError(f"{path}: {'not a folder' if path.exists() else 'not found'}; expected the reward "
                            "model folder written by stage 04 (<run>/rm)")
        if not info_path.is_file():
            raise DataError(f"{info_path}: missing; {path} is not a reward model folder written by stage 04")
        info = read_json(info_path, "reward model description")
        if not isinstance(info, dict) or not isinstance(info.get("base_model"), dict):
            raise DataError(f"{info_path}: no 'base_model' mapping (the base model spec the adapter was trained on)")
        template = RMTemplate.load(path)
        base = dict(info["base_model"], adapter=str(path), device=device)
        if dtype != "auto":
            base["dtype"] = dtype
        try:
            model_cfg = ModelConfig.from_dict(base, where=f"{info_path}: base_model")
        except ConfigError as err:
            raise DataError(str(err)) from None
        tok, model = load_model(model_cfg, head="score")
        return cls(tok, model, template)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def learn_principles(self, principle_set) -> None:
        """Nothing to learn: a trained reward model reads any principle text as it is (the contrastive
        reward needs each principle's negation, and learns it here)."""

    def score(self, items: Sequence[Item], batch_size: int = 16, share_prefix: bool = True,
              progress: bool = False) -> list[float]:
        """One float per (prompt, response, principles) item, in input order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not items:
            return []
        if not share_prefix:
            return self.score_unshared(items, batch_size=batch_size, progress=progress)
        return _score_shared(self, items, batch_size, progress)

    def score_unshared(self, items: Sequence[Item], batch_size: int = 16, pad_to: int | None = None,
                       progress: bool = False) -> list[float]:
        """Each item as one full sequence. `pad_to` pads every input to that many tokens, which is how
        the original code ran its RM (kept for the benchmark's comparison)."""
        seqs = [self.template.encode(self.tokenizer, p, r, ps) for p, r, ps, *_ in items]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = [0.0] * len(seqs)
        for start in _progress(range(0, len(order), batch_size), progress, "scoring"):
            idx = order[start:start + batch_size]
            for i, s in zip(idx, self._forward_full([seqs[i] for i in idx], pad_to)):
                out[i] = s
        return out

    def _forward_full(self, seqs: list[list[int]], pad_to: int | None) -> list[float]:
        import torch

        width = max(max(map(len, seqs)), pad_to or 0)
        ids, mask = _pad(seqs, width, self.tokenizer.pad_token_id, left=False)
        with torch.inference_mode():
            hidden = self.backbone(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                   use_cache=False).last_hidden_state
            last = torch.tensor([len(s) - 1 for s in seqs], device=hidden.device)
            return self._head(hidden[torch.arange(len(seqs), device=hidden.device), last])

    def _head(self, h) -> list[float]:
        return self.head(h).float().squeeze(-1).tolist()


def _score_shared(rm: RewardModel, items: Sequence[Item], batch_size: int, progress: bool) -> list[float]:
    import torch
    from transformers import DynamicCache

    tok, tpl = rm.tokenizer, rm.template
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (p, r, *_) in enumerate(items):
        groups.setdefault((p, r), []).append(i)
    keys = list(groups)
    prefixes = [tpl.encode_prefix(tok, p, r)[0] for p, r in keys]
    suffixes = [tpl.encode_suffix(tok, items[i][2]) for i in range(len(items))]
    order = sorted(range(len(keys)), key=lambda g: -len(prefixes[g]))
    out = [0.0] * len(items)
    device = rm.device
    for start in _progress(range(0, len(order), batch_size), progress, "scoring"):
        gs = order[start:start + batch_size]
        width = len(prefixes[gs[0]])
        ids, pmask = _pad([prefixes[g] for g in gs], width, tok.pad_token_id, left=True)
        ids, pmask = ids.to(device), pmask.to(device)
        with torch.inference_mode():
            pos = (pmask.cumsum(-1) - 1).clamp(min=0)
            cache = rm.backbone(input_ids=ids, attention_mask=pmask, position_ids=pos,
                                use_cache=True).past_key_values
            rows = [(b, i) for b, g in enumerate(gs) for i in groups[keys[g]]]
            rows.sort(key=lambda row: -len(suffixes[row[1]]))
            for r0 in range(0, len(rows), batch_size):
                chunk = rows[r0:r0 + batch_size]
                src = torch.tensor([b for b, _ in chunk], device=device)
                sufs = [suffixes[i] for _, i in chunk]
                s_ids, s_mask = _pad(sufs, len(sufs[0]), tok.pad_token_id, left=False)
                s_ids, s_mask = s_ids.to(device), s_mask.to(device)
                # Each suffix continues right after its own prefix's last real token.
                s_pos = pmask.sum(-1)[src].unsqueeze(1) + torch.arange(s_ids.shape[1], device=device)
                rows_cache = DynamicCache(ddp_cache_data=[
                    (layer.keys.index_select(0, src), layer.values.index_select(0, src)) for layer in cache.layers])
                hidden = rm.backbone(input_ids=s_ids, attention_mask=torch.cat([pmask[src], s_mask], dim=1),
                                     position_ids=s_pos, past_key_values=rows_cache,
                                     use_cache=True).last_hidden_state
                last = torch.tensor([len(s) - 1 for s in sufs], device=device)
                scores = rm._head(hidden[torch.arange(len(chunk), device=device), last])
                for (_, i), s in zip(chunk, scores):
                    out[i] = s
    return out


def _pad(seqs: list[list[int]], width: int, pad_id: int, left: bool):
    import torch

    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        if left:
            ids[row, width - len(s):], mask[row, width - len(s):] = torch.tensor(s), 1
        else:
            ids[row, :len(s)], mask[row, :len(s)] = torch.tensor(s), 1
    return ids, mask


def _progress(it: Iterable, show: bool, desc: str):
    if not show:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc)


# ---------------------------------------------------------------------------- command line
SCORE_FIELDS = {"prompt": str, "response": str, "principles": list}


def read_score_input(path: str | Path, errors: list[str]) -> list[dict]:
    """Lines `{"prompt", "response", "principles": [str, ...]}` and optionally `"finished": bool`
    (false: the response was cut at a token limit); bad lines go to `errors`."""
    records = []
    for lineno, rec in iter_jsonl(path, required=SCORE_FIELDS, errors=errors):
        bad = next((k for k, p in enumerate(rec["principles"]) if not isinstance(p, str) or not p.strip()), None)
        if bad is not None:
            errors.append(f"{path}:{lineno}: field 'principles'[{bad}] should be a non-empty string")
            continue
        if not isinstance(rec.get("finished", True), bool):
            errors.append(f"{path}:{lineno}: field 'finished' should be true or false")
            continue
        records.append(rec)
    return records


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


@dataclasses.dataclass(kw_only=True)
class ScoreOptions(Config):
    """The `score` command's flags (built by `salmon_lib.arguments`, as steer's and chat's are)."""

    # the reward folder written by stage 04 (<run>/rm): a trained model or a contrastive spec
    reward_model: str
    # JSONL: {"prompt": str, "response": str, "principles": [str, ...]} and optionally "finished": false
    # for a response cut at a token limit
    input: str
    output: str  # JSONL: each input line plus "score" (written atomically; not the input file)
    batch_size: int = 16  # sequences per forward pass
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where the reward runs

    def check(self) -> None:
        super().check()
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, got {self.batch_size}")


def _run_cli(args) -> int:
    import sys

    from ..arguments import options_from_args
    from ..models import ModelLoadError
    from . import load_reward

    args = options_from_args(ScoreOptions, args, "score")

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    inp, out = Path(args.input), Path(args.output)
    if _same_file(inp, out):
        return fail(f"--output {out} is the input file: scoring would replace your lines; write to another file")
    if out.is_dir():
        return fail(f"--output {out}: is a folder; give a file name")
    errors: list[str] = []
    try:
        records = read_score_input(inp, errors)
        for e in errors:
            print(f"warning: skipped {e}", file=sys.stderr)
        rm = load_reward(args.reward_model, device=args.device)
    except (DataError, ModelLoadError) as err:
        return fail(str(err))
    if not records:
        fail(f"{inp}: no line to score ({len(errors)} bad line(s) skipped); nothing written")
        return 1
    scores = rm.score([(r["prompt"], r["response"], r["principles"], r.get("finished", True)) for r in records],
                      batch_size=args.batch_size, progress=True)
    try:
        n = write_jsonl(out, (dict(r, score=s) for r, s in zip(records, scores)))
    except (DataError, OSError) as err:
        return fail(f"{out}: cannot write the scores ({getattr(err, 'strerror', None) or err})")
    print(f"scored {n} line(s) into {out}; skipped {len(errors)} bad line(s)", file=sys.stderr)
    return 0


def add_cli(sub) -> None:
    from ..arguments import add_arguments

    p = sub.add_parser("score", help="score (prompt, response, principles) lines with stage 04's reward (either kind)")
    add_arguments(p, ScoreOptions)
    p.set_defaults(func=_run_cli)


def save_info(folder: str | Path, base_model: dict, extra: dict | None = None) -> None:
    """rm_info.json: what `RewardModel.load` needs to rebuild the model (base spec without adapter)."""
    from ..io import atomic_write_json

    base = {k: v for k, v in base_model.items() if k != "adapter"}
    atomic_write_json(Path(folder) / INFO_FILE, {"base_model": base, **(extra or {})})

