"""Two answers per prompt from the SFT model: the raw material the judge compares.

Each answer of a pair comes from its own generation run with its own seed (SALMON used two runs,
seeds 42 and 43), at T=0.7, stopping at the chat format's next turn. A pair whose answer is
shorter than `min_chars` is kept in pairs.jsonl with the reason in `dropped`, so a resumed run
does not sample it again and the stats can count it. The pair id is derived from the prompt id:
re-running, resuming or subsetting never renumbers pairs (the original matched judgements to
pairs by list index after a shuffle, which broke as soon as anything changed).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ..chat import ChatFormat


def pair_id(prompt_id: str) -> str:
    return f"pair-{prompt_id}"


def sample_pairs(gen, fmt: ChatFormat, prompts: Sequence[dict], log, *, adapter: str | None, seed: int,
                 temperature: float = 0.7, top_p: float = 1.0, max_new_tokens: int = 256, min_chars: int = 16,
                 system: str | None = None, batch_size: int = 32) -> None:
    """Append `{id, prompt_id, prompt, question_type, response_1, response_2, truncated, dropped}`
    to `log` for every prompt `{id, prompt, ...}` whose pair is not there yet."""
    from tqdm.auto import tqdm

    todo = [p for p in prompts if pair_id(p["id"]) not in log]
    for start in tqdm(range(0, len(todo), batch_size), desc="sampling pairs", unit="batch"):
        batch = todo[start:start + batch_size]
        texts = [fmt.prompt(p["prompt"], system=system) for p in batch]
        runs = [gen.generate(texts, n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             stop=fmt.stop, seed=seed + k, adapter=adapter) for k in (0, 1)]
        records = []
        for p, (c1,), (c2,) in zip(batch, *runs):
            r1, r2 = c1.text.strip(), c2.text.strip()
            records.append({
                "id": pair_id(p["id"]), "prompt_id": p["id"], "prompt": p["prompt"],
                "question_type": p.get("question_type"), "response_1": r1, "response_2": r2,
                "truncated": [c1.finish_reason == "length", c2.finish_reason == "length"],
                "dropped": "too_short" if min(len(r1), len(r2)) < min_chars else None,
            })
        log.append(records)


def pair_stats(pairs: Sequence[dict]) -> dict:
    kept = [p for p in pairs if not p["dropped"]]
    return {
        "pairs": len(pairs),
        "kept": len(kept),
        "dropped": dict(Counter(p["dropped"] for p in pairs if p["dropped"])),
        "truncated_responses": sum(sum(p["truncated"]) for p in kept),
        "identical_responses": sum(p["response_1"] == p["response_2"] for p in kept),
        "mean_chars": sum(len(p["response_1"]) + len(p["response_2"]) for p in kept) / (2 * len(kept)) if kept else 0.0,
    }
