"""The principle-conditioned judge: which of two outputs better follows ONE principle.

The judge prompt is defined here and nowhere else. It shows the request, output (a), output (b)
and only then the principle, and the assistant turn is pre-filled up to "Output (", so the next
token is the verdict. Because the principle comes last, the judge prompts of one pair in one
order share everything but their tail: the generation backend computes that prefix once for all
principles (`gen.score_options` shares long common prefixes).

Scores are log-odds read from the option log-probs, in the convention of SALMON: positive means
"the pair's first response is better" in both orders,
    s12 = log p(a) - log p(b)   with (response_1, response_2) shown as (a, b)
    s21 = log p(b) - log p(a)   with the order swapped.
A position bias `beta` (a preference for whatever sits in slot a) adds +beta to s12 and -beta to
s21, so it cancels in s12 + s21 but decides whether the two orders agree. Small models are
strongly position-biased judges; `position_bias`, `content_free_bias` and `debias` estimate and
remove such a per-principle offset, and `agreement_stats` shows the effect.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

from ..chat_format import ChatFormat
from ..provenance import signature

JUDGE_SYSTEM = (
    "You review answers written by an AI assistant. You are given a request, two candidate "
    "outputs and one principle. Decide which output follows the principle better. When both "
    "fall short, pick the one that falls short less."
)
PREFILL = "Output ("
OPTIONS = ("a", "b")
# Shown in place of both outputs (and the request) to measure what the judge answers when there
# is nothing to judge: its preference then is pure position bias (calibration as in Zhao et al. 2021).
CONTENT_FREE = "N/A"


def judge_user_turn(instruction: str, output_a: str, output_b: str, name: str, definition: str) -> str:
    return (
        f"### Request\n{instruction.strip()}\n\n"
        f"### Output (a)\n{output_a.strip()}\n\n"
        f"### Output (b)\n{output_b.strip()}\n\n"
        f"### Principle\n{f'{name}: ' if name else ''}{definition.strip()}\n\n"
        "Which output follows this principle better, (a) or (b)?"
    )


def judge_prompt(fmt: ChatFormat, instruction: str, output_a: str, output_b: str, name: str, definition: str) -> str:
    """The fully rendered judge prompt, ending right before the verdict token."""
    return fmt.prompt(judge_user_turn(instruction, output_a, output_b, name, definition),
                      system=JUDGE_SYSTEM, prefill=PREFILL)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def agrees(s12: float, s21: float) -> bool:
    """Both orders name the same winner (a zero score names none)."""
    return _sign(s12) != 0 and _sign(s12) == _sign(s21)


def judgement_id(pair_id: str, principle: str) -> str:
    return f"{pair_id}|{principle}"


def _both_orders(fmt: ChatFormat, pair: dict, name: str, definition: str) -> tuple[str, str]:
    r1, r2 = pair["response_1"], pair["response_2"]
    return (judge_prompt(fmt, pair["prompt"], r1, r2, name, definition),
            judge_prompt(fmt, pair["prompt"], r2, r1, name, definition))


def judgement_signatures(fmt: ChatFormat, pairs: Sequence[dict], principles: Sequence[tuple[str, str]],
                         model: dict) -> dict[str, str]:
    """{judgement id: signature}: the judge model (`model`: spec and adapter content) and both
    rendered judge prompts, which hold the judge's instructions, the request, both answers and the
    principle's wording, so a change of any of them judges that pair under that principle again."""
    return {judgement_id(p["id"], n): signature({**model, "prompts": _both_orders(fmt, p, n, d)})
            for p in pairs for n, d in principles}


def judge_pairs(
    gen,
    fmt: ChatFormat,
    pairs: Sequence[dict],
    principles: Sequence[tuple[str, str]],
    adapter: str | None = None,
    batch_pairs: int = 8,
    log=None,
    signatures: dict[str, str] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Judge every pair `{id, prompt, response_1, response_2}` under every `(name, definition)`,
    both orders. Records `{id, pair_id, principle, s12, s21, agree}` are returned (only those made
    by this call) and, with a `log` (a `RecordLog`, for resuming), appended to it batch by batch
    with their signature; then only the judgements not current under `signatures` are made."""
    from tqdm.auto import tqdm

    def stale(p: dict) -> list[tuple[str, str]]:
        if log is None:
            return list(principles)
        return [(n, d) for n, d in principles if not log.current(jid := judgement_id(p["id"], n), signatures[jid])]

    todo = [(p, todo_principles) for p in pairs if (todo_principles := stale(p))]
    out: list[dict] = []
    batches = range(0, len(todo), batch_pairs)
    for start in tqdm(batches, desc="judging", unit="batch", disable=not progress):
        batch = todo[start:start + batch_pairs]
        # Pair -> order -> principle: the prompts of one (pair, order) are adjacent and share
        # everything up to the principle, which is what the backend's prefix sharing needs.
        prompts = []
        for p, ps in batch:
            orders = [_both_orders(fmt, p, n, d) for n, d in ps]
            prompts += [o[0] for o in orders] + [o[1] for o in orders]
        scores = iter(gen.score_options(prompts, list(OPTIONS), adapter=adapter))
        records = []
        for p, ps in batch:
            first = [next(scores) for _ in ps]
            second = [next(scores) for _ in ps]
            for (name, _), (la, lb), (ra, rb) in zip(ps, first, second):
                s12, s21 = la - lb, rb - ra
                jid = judgement_id(p["id"], name)
                records.append({"id": jid, "pair_id": p["id"], "principle": name, "s12": s12, "s21": s21,
                                "agree": agrees(s12, s21),
                                **({"signature": signatures[jid]} if log is not None else {})})
        if log is not None:
            log.append(records)
        out += records
    return out


def position_bias(judgements: Iterable[dict]) -> dict[str, float]:
    """Per principle, the mean preference for slot (a), estimated from the judgements themselves:
    mean of (s12 - s21) / 2, which is zero for a judge without position bias."""
    sums: dict[str, list[float]] = defaultdict(list)
    for j in judgements:
        sums[j["principle"]].append((j["s12"] - j["s21"]) / 2)
    return {name: sum(v) / len(v) for name, v in sums.items()}


def content_free_bias(
    gen, fmt: ChatFormat, principles: Sequence[tuple[str, str]], adapter: str | None = None
) -> dict[str, float]:
    """Per principle, log p(a) - log p(b) when request and both outputs are a content-free "N/A":
    whatever the judge prefers there, it prefers for the position alone."""
    prompts = [judge_prompt(fmt, CONTENT_FREE, CONTENT_FREE, CONTENT_FREE, n, d) for n, d in principles]
    scores = gen.score_options(prompts, list(OPTIONS), adapter=adapter)
    return {name: la - lb for (name, _), (la, lb) in zip(principles, scores)}


def debias(judgements: Iterable[dict], bias: dict[str, float]) -> list[dict]:
    """Remove a per-principle slot-(a) offset: s12 - beta, s21 + beta, agreement recomputed.
    s12 + s21 (the order-averaged verdict) is unchanged; what changes is which pairs agree."""
    out = []
    for j in judgements:
        beta = bias.get(j["principle"], 0.0)
        s12, s21 = j["s12"] - beta, j["s21"] + beta
        out.append({**j, "s12": s12, "s21": s21, "agree": agrees(s12, s21)})
    return out


def agreement_stats(judgements: Iterable[dict]) -> dict[str, dict]:
    """Per principle: how often the two orders agree, how often slot (a) wins in both orders
    (pure position preference), the mean slot-(a) preference, and how many pairs were judged."""
    acc: dict[str, dict] = defaultdict(lambda: {"n": 0, "agree": 0, "a_both": 0, "b_both": 0, "bias_sum": 0.0})
    for j in judgements:
        a = acc[j["principle"]]
        a["n"] += 1
        a["agree"] += bool(j["agree"])
        # slot (a) won in order 12 when s12 > 0, and in order 21 when s21 < 0
        a["a_both"] += j["s12"] > 0 and j["s21"] < 0
        a["b_both"] += j["s12"] < 0 and j["s21"] > 0
        a["bias_sum"] += (j["s12"] - j["s21"]) / 2
    return {
        name: {"n": a["n"], "agreement": a["agree"] / a["n"], "slot_a_both_orders": a["a_both"] / a["n"],
               "slot_b_both_orders": a["b_both"] / a["n"], "mean_slot_a_preference": a["bias_sum"] / a["n"]}
        for name, a in sorted(acc.items())
    }


def finite_or_raise(judgements: Iterable[dict]) -> None:
    """A NaN or infinite score (an option token the model gives zero probability) would poison
    the per-principle variance; say which judgement it is."""
    for j in judgements:
        for key in ("s12", "s21"):
            if not math.isfinite(j[key]):
                raise ValueError(f"judgement {j['pair_id']!r} under {j['principle']!r}: {key} = {j[key]} is not finite")
