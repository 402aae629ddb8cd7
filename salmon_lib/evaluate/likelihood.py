"""Measures read from a policy's own token probabilities: KL to SFT, and HHH accuracy by likelihood.

KL(policy || SFT) is estimated along each policy's own sampled answers with the chain rule: the
KL between two sequence distributions equals the expectation, over sequences drawn from the first,
of the per-position KL between their next-token distributions. Summing the exact per-position KL
(over the whole vocabulary, both models at the sampling temperature) along an answer sampled at
that temperature is therefore an unbiased, never-negative estimate of the tempered sequence KL,
with far less noise than log-ratio estimates. It needs full next-token distributions, which the
generation interface does not return, so it runs on a Hugging Face model here.

HHH (Dromedary's evaluation, in the policy's own terms): for each pair, the policy reads the
conversation prompted as it was trained and the answer it assigns the higher mean log-probability
per token is its pick; accuracy is reported per category.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Sequence

log = logging.getLogger(__name__)

MAX_POSITIONS = 1024  # kept logit rows per forward pass (rows x vocab floats each, twice)


def _with_adapters(model_spec: str, adapters: Sequence[str]):
    from peft import PeftModel

    from ..models import ModelConfig, load_model

    tok, model = load_model(ModelConfig(spec=model_spec))
    names: dict[str, str] = {}
    for i, path in enumerate(dict.fromkeys(adapters)):
        names[path] = f"policy{i}"
        if isinstance(model, PeftModel):
            model.load_adapter(path, adapter_name=names[path])
        else:
            model = PeftModel.from_pretrained(model, path, adapter_name=names[path])
    model.eval()
    return tok, model, names


@contextmanager
def _active(model, names: dict[str, str], adapter: str | None):
    if adapter is None:
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield
        else:
            yield
    else:
        model.set_adapter(names[adapter])
        yield


def kl_to_reference(model_spec: str, rows: Sequence[tuple[str, list[int], str | None]], reference: str,
                    temperature: float, progress: bool = False) -> list[float]:
    """For each (rendered prompt, answer token ids, policy adapter): the summed per-position
    KL(policy || reference) along the answer, in nats, both at `temperature`."""
    import torch
    from tqdm.auto import tqdm

    if not rows:
        return []
    tok, model, names = _with_adapters(model_spec, [reference] + [a for _, _, a in rows if a])
    device = next(model.parameters()).device
    seqs = [(tok(p)["input_ids"], list(ids), a) for p, ids, a in rows]
    out = [0.0] * len(rows)
    # Rows of one adapter batch together; within it, longest first so that padding stays small.
    order = sorted(range(len(rows)), key=lambda i: (str(seqs[i][2]), -len(seqs[i][0]) - len(seqs[i][1])))
    batches, batch = [], []
    for i in order:
        keep = max(len(seqs[j][1]) for j in batch + [i]) + 1
        if batch and (seqs[i][2] != seqs[batch[0]][2] or keep * (len(batch) + 1) > MAX_POSITIONS):
            batches.append(batch)
            batch = []
        batch.append(i)
    batches.append(batch)
    for batch in tqdm(batches, desc="KL to SFT", disable=not progress):
        full = [seqs[i][0] + seqs[i][1] for i in batch]
        width, keep = max(map(len, full)), max(len(seqs[i][1]) for i in batch) + 1
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(full):  # left padding: every answer ends at the right edge
            ids[r, width - len(s):], mask[r, width - len(s):] = torch.tensor(s), 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        args = dict(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                    logits_to_keep=keep)
        with torch.inference_mode():
            with _active(model, names, seqs[batch[0]][2]):
                logp = torch.log_softmax(model(**args).logits.float() / temperature, dim=-1)
            with _active(model, names, reference):
                logq = torch.log_softmax(model(**args).logits.float() / temperature, dim=-1)
            per_position = (logp.exp() * (logp - logq)).sum(-1)  # (rows, keep)
        for r, i in enumerate(batch):
            n = len(seqs[i][1])
            # outputs predicting the answer's n tokens are the n columns before the last one
            out[i] = float(per_position[r, keep - 1 - n:keep - 1].sum())
    return out


def hhh_correct(gen, items: Sequence[dict], render, adapter: str | None) -> list[float]:
    """1.0 where the policy gives the preferred answer the higher mean log-prob per token, else 0.0
    (0.5 on an exact tie). `render(user)` is the policy's prompt; items from `salmon_lib.hhh.load_hhh`."""
    prompts = [render(it["prompt"]) for it in items for _ in (0, 1)]
    answers = [a for it in items for a in (it["chosen"], it["rejected"])]
    sums = gen.sequence_logprobs(prompts, answers, adapter=adapter)
    lengths = [max(1, len(ids)) for ids in gen.encode_pieces(answers)]
    means = [s / n for s, n in zip(sums, lengths)]
    return [1.0 if means[2 * k] > means[2 * k + 1] else 0.5 if means[2 * k] == means[2 * k + 1] else 0.0
            for k in range(len(items))]
