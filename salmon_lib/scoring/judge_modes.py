"""Judge modes that read the model's likelihood of an answer instead of a verdict token.

A small model's "Output (a)/(b)" verdicts mostly follow the slot, not the content (see judge.py),
while its likelihood of an answer under a principle still carries what the principle asks for.
Each mode gives one value per (request, response, criterion); a pair's score is the first
response's value minus the second's, so positive still means "the pair's first response is
better". These modes show no slots, so both orders give the same score: records keep
`s12 = s21 = v1 - v2` and `agree` (true unless the score is 0), and variance scaling, negation,
debiasing (a no-op) and aggregation downstream work unchanged.

Values of one response under a criterion (`text`, and its negation `opposite`):
- contrastive: log p(answer | request, text as system prompt) - log p(answer | request, opposite
  as system prompt), per answer token (the log-likelihood ratio divided by the answer's length:
  summed, a long answer outweighs a short one whatever the principle says; on the development
  probes, benchmarks/data/dev_probes.yaml, the per-token ratio picked the obeying answer 15 of 16
  times, the sum 13). Negating the criterion swaps the two prompts, so the value changes sign
  exactly. `layout="suffix"` puts the criterion after the answer instead: log p(text | request,
  answer) - log p(opposite | request, answer), which by Bayes differs from the summed system
  layout only by a term that depends on the request, not the answer (it cancels within a pair),
  and lets every criterion of a response share one pass over the request and answer.
- likelihood: the answer's mean per-token log-probability with `text` as the system prompt.
- pmi: log p(answer | request, text) - log p(answer | request), summed over the answer's tokens.
- pointwise: log p("Yes") - log p("No") when asked whether the answer follows the criterion.
- ensemble: contrastive and likelihood values, each divided by a per-criterion scale fitted on
  the values themselves (`ensemble_scales`), then summed: what a principle asks for plus general
  quality.

A finished answer is scored with the chat format's end of turn, so a criterion that changes how long
the model would write (concise, thorough) changes the probability of stopping where the answer
stops; an answer cut at the token limit is scored without it (`render.scored_answer`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Iterable, Sequence

from ..chat_format import ChatFormat
from .render import principle_prompt, scored_answer

MODES = ("pairwise", "contrastive", "likelihood", "pmi", "pointwise", "ensemble")
LIKELIHOOD_MODES = MODES[1:]
LAYOUTS = ("system", "suffix")
ENSEMBLE_PARTS = ("contrastive", "likelihood")

DESCRIBE_TURN = "Describe the reply you just gave in one sentence."
POINTWISE_TURN = ("### Request\n{request}\n\n### Answer\n{answer}\n\n### Principle\n{text}\n\n"
                  "Does the answer follow this principle? Reply Yes or No.")
POINTWISE_OPTIONS = ("Yes", "No")


@dataclasses.dataclass(frozen=True)
class Criterion:
    """A principle as the likelihood modes use it: its text and the text of its negation."""

    name: str
    text: str
    opposite: str | None = None

    def negated(self) -> "Criterion":
        if self.opposite is None:
            raise ValueError(f"principle {self.name!r} has no negative definition, so it cannot be negated")
        return Criterion(self.name, self.opposite, self.text)


def criteria_of(principle_set, names: Iterable[str] | None = None) -> list[Criterion]:
    ps = principle_set.principles if names is None else [principle_set.by_name(n) for n in names]
    return [Criterion(p.name, p.definition, p.negative_definition) for p in ps]


def _describe_prompt(fmt: ChatFormat, request: str, response: str) -> str:
    return fmt.render([{"role": "user", "content": request.strip()}, {"role": "assistant", "content": response.strip()},
                       {"role": "user", "content": DESCRIBE_TURN}])


def _pointwise_prompt(fmt: ChatFormat, request: str, response: str, text: str) -> str:
    turn = POINTWISE_TURN.format(request=request.strip(), answer=response.strip(), text=" ".join(text.split()))
    return fmt.prompt(turn)


def response_values(gen, fmt: ChatFormat, items: Sequence[tuple[str, str, Criterion]], modes: Sequence[str],
                    layout: str = "system", adapter: str | None = None) -> dict[str, list[float]]:
    """{mode: [value of each (request, response, criterion[, finished])]} for every likelihood mode
    asked for ("ensemble" gives its two parts, unscaled, under their own names). `finished` (default
    true) says whether the response ended with its end-of-turn token (`render.scored_answer`).

    All rows go to the backend in one `sequence_logprobs` call (and one `score_options` call for
    pointwise), each distinct row once: a response's conditioned passes batch together, and the
    backend computes shared prefixes once (the request under one system prompt for both responses
    of a pair; with `layout="suffix"`, the request and answer for all criteria)."""
    modes = {part for m in modes for part in (ENSEMBLE_PARTS if m == "ensemble" else (m,))}
    unknown = modes - set(LIKELIHOOD_MODES)
    if unknown:
        raise ValueError(f"unknown judge mode(s) {sorted(unknown)}; known: {', '.join(LIKELIHOOD_MODES)}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    rows: dict[tuple[str, str], int] = {}

    def row(prompt: str, continuation: str) -> int:
        return rows.setdefault((prompt, continuation), len(rows))

    plan, answers = [], []  # per item: {quantity: row index}; the continuation scored
    for request, response, c, *finished in items:
        need = {}
        answer = scored_answer(fmt, response, *finished)
        answers.append(answer)
        if modes & {"likelihood", "pmi"} or ("contrastive" in modes and layout == "system"):
            need["text"] = row(principle_prompt(fmt, request, c.text), answer)
        if "pmi" in modes:
            need["none"] = row(principle_prompt(fmt, request, None), answer)
        if "contrastive" in modes:
            if c.opposite is None:
                raise ValueError(f"contrastive mode needs a negation of principle {c.name!r}")
            if layout == "system":
                need["opposite"] = row(principle_prompt(fmt, request, c.opposite), answer)
            else:
                describe = _describe_prompt(fmt, request, response)
                need["says_text"] = row(describe, " ".join(c.text.split()))
                need["says_opposite"] = row(describe, " ".join(c.opposite.split()))
        plan.append(need)
    lp = gen.sequence_logprobs([p for p, _ in rows], [c for _, c in rows], adapter=adapter) if rows else []
    lengths = [len(ids) for ids in gen.encode_pieces(answers)]
    out: dict[str, list[float]] = {}
    if "likelihood" in modes:
        out["likelihood"] = [lp[n["text"]] / k for n, k in zip(plan, lengths)]
    if "pmi" in modes:
        out["pmi"] = [lp[n["text"]] - lp[n["none"]] for n in plan]
    if "contrastive" in modes:
        if layout == "system":
            out["contrastive"] = [(lp[n["text"]] - lp[n["opposite"]]) / k for n, k in zip(plan, lengths)]
        else:
            out["contrastive"] = [lp[n["says_text"]] - lp[n["says_opposite"]] for n in plan]
    if "pointwise" in modes:
        scores = gen.score_options([_pointwise_prompt(fmt, q, r, c.text) for q, r, c, *_ in items],
                                   list(POINTWISE_OPTIONS), adapter=adapter)
        out["pointwise"] = [y - n for y, n in scores]
    return out


def ensemble_scales(records: Iterable[dict]) -> dict[str, dict[str, float]]:
    """{principle: {part: scale}}: the root mean square of each part's pair score over the judged
    pairs, so that each part contributes on the same footing (1 when it is always 0). The RMS,
    unlike a standard deviation, does not depend on which response of a pair comes first, so
    fitting it needs no labels."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        for part, v in r["parts"].items():
            values[r["principle"]][part].append(v)
    return {name: {part: math.sqrt(sum(x * x for x in v) / len(v)) or 1.0 for part, v in parts.items()}
            for name, parts in values.items()}


def combine(records: Sequence[dict], scales: dict[str, dict[str, float]] | None = None) -> list[dict]:
    """Ensemble records with `s12 = s21 = sum of part / scale` (scales fitted on `records` unless given)."""
    scales = scales or ensemble_scales(records)
    out = []
    for r in records:
        s = sum(v / scales[r["principle"]][p] for p, v in r["parts"].items())
        out.append({**r, "s12": s, "s21": s, "agree": s != 0})
    return out


def judge_key(mode: str, layout: str = "system") -> str:
    """The mode as records name it: the contrastive score's principle-last layout is its own mode,
    so judgements of one mode are never taken for another's when a run changes mode."""
    return f"{mode}-{layout}" if mode == "contrastive" and layout != "system" else mode


def judgement_id(pair_id: str, criterion: str, key: str) -> str:
    return f"{pair_id}|{criterion}|{key}"


def likelihood_signatures(fmt: ChatFormat, pairs: Sequence[dict], criteria: Sequence[Criterion], key: str,
                          layout: str, model: dict) -> dict[str, str]:
    """{judgement id: signature}: the judge model (`model`: spec and adapter content), the chat
    format, the mode, the request, both answers and the criterion's wording on both sides, so a
    change of any of them judges that pair under that criterion again."""
    from ..provenance import signature

    return {judgement_id(p["id"], c.name, key): signature(
        {**model, "format": fmt.name, "mode": key, "layout": layout, "prompt": p["prompt"],
         "responses": [p["response_1"], p["response_2"]], "criterion": [c.text, c.opposite]})
        for p in pairs for c in criteria}


def judge_pairs_likelihood(gen, fmt: ChatFormat, pairs: Sequence[dict], criteria: Sequence[Criterion], mode: str,
                           layout: str = "system", adapter: str | None = None, batch_pairs: int = 8, log=None,
                           signatures: dict[str, str] | None = None, progress: bool = True) -> list[dict]:
    """Judge `{id, prompt, response_1, response_2}` pairs under every criterion in a likelihood
    mode. Records `{id, pair_id, principle, mode, s12, s21, agree, v1, v2}` (ensemble: `parts`,
    each part's v1 - v2, with s12 = s21 their unscaled sum until `combine` scales them) are
    appended to `log` batch by batch with their signature, as `judge.judge_pairs` does, and
    returned; with a `log`, only the pairs with a judgement not current under `signatures` (None:
    unsigned) are judged."""
    from tqdm.auto import tqdm

    if mode not in LIKELIHOOD_MODES:
        raise ValueError(f"judge mode must be one of {', '.join(LIKELIHOOD_MODES)}, got {mode!r}")
    key = judge_key(mode, layout)
    def stale(p: dict) -> bool:
        return log is None or any(not log.current(jid := judgement_id(p["id"], c.name, key), sig(jid))
                                  for c in criteria)

    def sig(jid: str) -> str | None:
        return signatures[jid] if signatures is not None else None

    todo = [p for p in pairs if stale(p)]
    out: list[dict] = []
    for start in tqdm(range(0, len(todo), batch_pairs), desc=f"judging ({mode})", unit="batch", disable=not progress):
        batch = todo[start:start + batch_pairs]
        items = [(p["prompt"], p[key], c, not cut) for p in batch for c in criteria
                 for key, cut in zip(("response_1", "response_2"), p.get("truncated", (False, False)))]
        values = response_values(gen, fmt, items, [mode], layout=layout, adapter=adapter)
        records = []
        for i, (p, c) in enumerate((p, c) for p in batch for c in criteria):
            jid = judgement_id(p["id"], c.name, key)
            rec = {"id": jid, "pair_id": p["id"], "principle": c.name, "mode": key,
                   **({"signature": sig(jid)} if log is not None else {})}
            if mode == "ensemble":
                rec["parts"] = {m: values[m][2 * i] - values[m][2 * i + 1] for m in ENSEMBLE_PARTS}
                s = sum(rec["parts"].values())
            else:
                rec["v1"], rec["v2"] = values[mode][2 * i], values[mode][2 * i + 1]
                s = rec["v1"] - rec["v2"]
            records.append({**rec, "s12": s, "s21": s, "agree": s != 0})
        if log is not None:
            log.append(records)
        out += records
    return out
