"""Two answers per prompt from the SFT model: the raw material the judge compares.

Each answer of a pair comes from its own generation run (SALMON used two runs, seeds 42 and 43) at
T=0.7, stopping at the chat format's next turn; here each answer's seed derives from the pair's id,
so a pair does not depend on the batch it was sampled in. The prompt is rendered exactly as the
SFT model was trained (`render`, from sft/chat_format.json). Every pair carries the signature of
what produced it (the rendered prompt, the model and its adapter's content, the sampling settings
and the seed): a rerun samples again exactly the pairs whose signature changed. Which pairs go on
to the judge is decided when they are read (`drop_reason`): too short an answer, or two identical
ones, which can only tie. The pair id is derived from the prompt id: re-running, resuming or
subsetting never renumbers pairs (the original matched judgements to pairs by list index after a
shuffle, which broke as soon as anything changed).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

from ..provenance import derive_seed, signature


def pair_id(prompt_id: str) -> str:
    return f"pair-{prompt_id}"


def pair_signatures(prompts: Sequence[dict], render: Callable[[str], str], settings: dict) -> dict[str, str]:
    """{pair id: signature} of the pairs these prompts give under `settings` (model, adapter,
    sampling settings, seed)."""
    return {pair_id(p["id"]): signature({**settings, "prompt": render(p["prompt"])}) for p in prompts}


def sample_pairs(gen, render: Callable[[str], str], stop: Sequence[str], prompts: Sequence[dict], log,
                 signatures: dict[str, str], *, adapter: str | None, seed: int, temperature: float = 0.7,
                 top_p: float = 1.0, max_new_tokens: int = 256, batch_size: int = 32) -> None:
    """Append `{id, prompt_id, prompt, question_type, response_1, response_2, truncated, signature}`
    to `log` for every prompt `{id, prompt, ...}` whose pair is not current under `signatures`."""
    from tqdm.auto import tqdm

    todo = [p for p in prompts if not log.current(pair_id(p["id"]), signatures[pair_id(p["id"])])]
    for start in tqdm(range(0, len(todo), batch_size), desc="sampling pairs", unit="batch"):
        batch = todo[start:start + batch_size]
        texts = [render(p["prompt"]) for p in batch]
        runs = [gen.generate(texts, n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             stop=stop, adapter=adapter,
                             seed=[derive_seed(seed, pair_id(p["id"]), f"response_{k}") for p in batch])
                for k in (1, 2)]
        log.append({
            "id": pair_id(p["id"]), "prompt_id": p["id"], "prompt": p["prompt"],
            "question_type": p.get("question_type"), "response_1": c1.text.strip(), "response_2": c2.text.strip(),
            "truncated": [c1.finish_reason == "length", c2.finish_reason == "length"],
            "signature": signatures[pair_id(p["id"])],
        } for p, (c1,), (c2,) in zip(batch, *runs))


def drop_reason(pair: dict, min_chars: int) -> str | None:
    """Why a pair is not judged: an answer shorter than `min_chars`, or two identical answers
    (no principle can prefer one of them); None for a pair that is judged."""
    if min(len(pair["response_1"]), len(pair["response_2"])) < min_chars:
        return "too_short"
    if pair["response_1"] == pair["response_2"]:
        return "identical"
    return None


def pair_stats(pairs: Sequence[dict], min_chars: int) -> dict:
    kept = [p for p in pairs if drop_reason(p, min_chars) is None]
    return {
        "pairs": len(pairs),
        "kept": len(kept),
        "dropped": dict(Counter(r for r in (drop_reason(p, min_chars) for p in pairs) if r)),
        "truncated_responses": sum(sum(p["truncated"]) for p in kept),
        "mean_chars": sum(len(p["response_1"]) + len(p["response_2"]) for p in kept) / (2 * len(kept)) if kept else 0.0,
    }
