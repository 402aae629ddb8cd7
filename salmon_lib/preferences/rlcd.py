"""RLCD (Yang et al. 2023, arXiv 2307.12950): preference pairs labelled by construction.

For each prompt one principle is drawn (by weight, boosted by the prompt's type, among the
principles that are sampled and have a negative definition). The SFT model writes one answer
with the principle as its system prompt and one with the negative definition; the first is
preferred under the principle and the second under its negation, so every pair gives two
examples whose labels differ only by the principle text, which is exactly what a
principle-following reward model has to learn. No judge decides a label.

The contrast is sharpened, and measured, with the contrastive score of `judge_modes` (log p of an
answer under the principle minus under its negation): with `candidates` > 1 each side keeps the
sample that scores most for its side (best of k); every record keeps both answers' scores, so
the stats show the margin and the length gap per principle, and `confirm` keeps only pairs the
score agrees with (each filter's drops are counted). Records are keyed by prompt id in a
`RecordLog`, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Sequence

from ..chat_format import ChatFormat
from ..scoring.judge_modes import Criterion, response_values

# Stronger than the judge's wording: the model is told the principle overrides its habits.
RLCD_SYSTEM = ("You are an AI assistant. This instruction comes before everything else: {text} "
               "Write your whole reply in that way.")


def record_id(prompt_id: str) -> str:
    return f"rlcd-{prompt_id}"


def draw_principle(principle_set, prompt: dict, seed: int):
    """One negatable, sampled principle for this prompt, drawn by weight with `seed` and the
    prompt id alone (so the draw does not depend on which other prompts exist)."""
    pool = [p for p in principle_set.principles if getattr(p, "sampled", True) and p.negative_definition]
    if not pool:
        raise ValueError(f"{principle_set.path or principle_set.name}: RLCD needs a sampled principle with a "
                         "negative definition, and there is none")
    rng = random.Random(f"{seed}:{prompt['id']}:rlcd")
    return rng.choices(pool, weights=[p.effective_weight(prompt.get("question_type")) for p in pool])[0]


def system_prompt(text: str) -> str:
    return RLCD_SYSTEM.format(text=" ".join(text.split()))


def _prompts(fmt: ChatFormat, prompt: dict, principle) -> tuple[str, str]:
    """The generation prompts written under the principle and under its negation."""
    return tuple(fmt.prompt(prompt["prompt"], system=system_prompt(principle.text(negated)))
                 for negated in (False, True))


def pair_signatures(fmt: ChatFormat, prompts: Sequence[dict], principle_set, seed: int,
                    settings: dict) -> dict[str, str]:
    """{record id: signature}: the drawn principle's wording on both sides, both rendered prompts,
    the seed and the settings (model and adapter content, sampling), so a change of any of them
    makes that prompt's pair again."""
    from ..provenance import signature

    out = {}
    for p in prompts:
        pr = draw_principle(principle_set, p, seed)
        out[record_id(p["id"])] = signature({**settings, "seed": seed, "prompts": _prompts(fmt, p, pr),
                                             "criterion": [pr.definition, pr.negative_definition]})
    return out


def generate_pairs(gen, fmt: ChatFormat, prompts: Sequence[dict], principle_set, log, signatures: dict[str, str], *,
                   adapter: str | None,
                   seed: int, temperature: float = 0.7, top_p: float = 1.0, max_new_tokens: int = 256,
                   candidates: int = 1, min_chars: int = 16, batch_size: int = 16, progress: bool = True) -> None:
    """Append one record per prompt not yet in `log`: `{id, prompt_id, prompt, question_type,
    principle, response_pos, response_neg, value_pos, value_neg, margin, tokens, truncated,
    candidates, dropped, signature}` (only for prompts whose record is not current under
    `signatures`). Each prompt samples with its own seed, so its pair does not depend on its batch.
    `value_*` is the kept answer's contrastive score (positive: it reads
    as written under the principle); `margin = value_pos - value_neg`."""
    from tqdm.auto import tqdm

    if candidates > 1 and temperature == 0:
        raise ValueError("best-of-k (candidates > 1) needs temperature > 0: greedy decoding gives k identical answers")
    from ..provenance import derive_seed

    todo = [p for p in prompts if not log.current(record_id(p["id"]), signatures[record_id(p["id"])])]
    for start in tqdm(range(0, len(todo), batch_size), desc="RLCD pairs", unit="batch", disable=not progress):
        batch = todo[start:start + batch_size]
        drawn = [draw_principle(principle_set, p, seed) for p in batch]
        rendered = [_prompts(fmt, p, pr) for p, pr in zip(batch, drawn)]
        texts = [r[side] for side in (0, 1) for r in rendered]
        seeds = [derive_seed(seed, p["id"], "rlcd", side) for side in (0, 1) for p in batch]
        comps = gen.generate(texts, n=candidates, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens, stop=fmt.stop, seed=seeds, adapter=adapter)
        pos, neg = comps[:len(batch)], comps[len(batch):]
        items = [(p["prompt"], c.text, Criterion(pr.name, pr.definition, pr.negative_definition),
                  c.finish_reason == "stop") for p, pr, side in zip(batch * 2, drawn * 2, pos + neg) for c in side]
        values = response_values(gen, fmt, items, ["contrastive"], adapter=adapter)["contrastive"]
        records = []
        for i, (p, pr) in enumerate(zip(batch, drawn)):
            vp = values[i * candidates:(i + 1) * candidates]
            vn = values[(len(batch) + i) * candidates:(len(batch) + i + 1) * candidates]
            kp = max(range(candidates), key=lambda k: vp[k])
            kn = min(range(candidates), key=lambda k: vn[k])
            cp, cn = pos[i][kp], neg[i][kn]
            rp, rn = cp.text.strip(), cn.text.strip()
            dropped = "too_short" if min(len(rp), len(rn)) < min_chars else "identical" if rp == rn else None
            records.append({
                "id": record_id(p["id"]), "prompt_id": p["id"], "prompt": p["prompt"],
                "question_type": p.get("question_type"), "principle": pr.name,
                "response_pos": rp, "response_neg": rn, "value_pos": vp[kp], "value_neg": vn[kn],
                "margin": vp[kp] - vn[kn], "tokens": [cp.num_tokens, cn.num_tokens],
                "truncated": [cp.finish_reason == "length", cn.finish_reason == "length"],
                "candidates": candidates, "dropped": dropped, "signature": signatures[record_id(p["id"])],
            })
        log.append(records)


def examples(records: Sequence[dict], principle_set, *, confirm: bool = False,
             min_margin: float = 0.0) -> tuple[list[dict], dict]:
    """Two `preferences.jsonl` examples per kept pair (the principle prefers the answer written
    under it; its negation prefers the other), and what each filter dropped. With `confirm`, a
    pair whose contrastive margin is not above `min_margin` is dropped."""
    out, drops = [], Counter()
    for rec in records:
        if rec["dropped"]:
            drops[rec["dropped"]] += 1
            continue
        if confirm and not rec["margin"] > min_margin:
            drops["not_confirmed"] += 1
            continue
        p = principle_set.by_name(rec["principle"])
        for negated in (False, True):
            chosen, rejected = rec["response_pos"], rec["response_neg"]
            if negated:
                chosen, rejected = rejected, chosen
            out.append({
                "id": f"{rec['id']}:{'neg' if negated else 'pos'}", "pair_id": rec["id"], "prompt": rec["prompt"],
                "chosen": chosen, "rejected": rejected,
                "principles": [{"name": p.name, "text": p.text(negated), "negated": negated}],
                # the contrastive score changes sign with the principle, so the margin favours `chosen` either way
                "dominant": p.name, "score_gap": rec["margin"], "source": "rlcd",
                "flags": {"rule": None, "label_noise": False},
            })
    return out, {"records": len(records), "pairs_kept": len(out) // 2, "examples": len(out), "dropped": dict(drops)}


def contrast_stats(records: Sequence[dict]) -> dict:
    """Per principle: kept pairs, mean words and tokens of the answers written under the principle
    and under its negation, mean contrastive margin and the share of pairs it confirms."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if not r["dropped"]:
            by[r["principle"]].append(r)

    def summary(rs):
        n = len(rs)
        return {"n": n,
                "words_pos": sum(len(r["response_pos"].split()) for r in rs) / n,
                "words_neg": sum(len(r["response_neg"].split()) for r in rs) / n,
                "tokens_pos": sum(r["tokens"][0] for r in rs) / n, "tokens_neg": sum(r["tokens"][1] for r in rs) / n,
                "truncated": sum(sum(r["truncated"]) for r in rs),
                "mean_margin": sum(r["margin"] for r in rs) / n,
                "confirmed": sum(r["margin"] > 0 for r in rs) / n}

    kept = [r for rs in by.values() for r in rs]
    return {"overall": summary(kept) if kept else {"n": 0},
            "by_principle": {name: summary(rs) for name, rs in sorted(by.items())}}
