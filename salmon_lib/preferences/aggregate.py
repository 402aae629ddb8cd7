"""From per-principle judgements to labelled preference examples (SALMON's aggregation).

1. Per principle, scale: a pair's score is mean(s12, s21) / Var(all s12 and s21 of that
   principle), and 0 when the two orders disagree (unless agreement is not required). Dividing by
   the variance puts principles whose raw log-odds live on different scales on one footing.
2. Per pair, several seeded draws: a principle subset from `PrincipleSet.sample` (size from a
   geometric distribution capped at K, each principle negated with probability p and then shown by
   its negative definition, its score flipped). The label is the sign of the dominant principle's
   score (largest magnitude); a zero dominant score gives no example.
3. Heuristic overrides and label noise, each counted.

Every random choice uses `random.Random(f"{seed}:{pair_id}:{draw}")`, so an example does not
depend on which other pairs exist or in which order they come.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from .heuristics import disclaimer_winner, language_verdict
from .judge import finite_or_raise


@dataclass
class AggregateOptions:
    draws_per_pair: int = 4  # examples drawn per pair, each with its own principle subset
    max_principles: int = 8  # cap K of the subset size
    p_continue: float = 0.8  # subset size k has P(k) ~ p_continue^(k-1) (SALMON: Geometric(0.2))
    p_negate: float = 0.5  # each drawn principle is negated with this probability
    size_cap: Literal["clip", "redraw"] = "redraw"  # sizes above K: redrawn (SALMON) or clipped to K
    require_agreement: bool = True  # a principle whose two orders disagree scores 0 for that pair
    disclaimer_rule: bool = True  # exactly one response has an "as an AI model" disclaimer -> maybe prefer the other
    disclaimer_p: float = 0.5  # probability that the disclaimer rule fires when it applies
    language_rule: bool = True  # exactly one response in the prompt's language wins; neither -> pair dropped
    language_min_chars: int = 20  # shorter texts count as of unknown language
    label_noise: float = 0.1  # probability of flipping a judge-decided label
    rule_label_noise: float = 0.25  # probability of flipping a rule-decided label


def scale_scores(
    judgements: Sequence[dict], require_agreement: bool = True
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Return ({pair_id: {principle: scaled score}}, {principle: variance})."""
    finite_or_raise(judgements)
    values: dict[str, list[float]] = defaultdict(list)
    for j in judgements:
        values[j["principle"]] += [j["s12"], j["s21"]]
    variance = {}
    for name, v in values.items():
        mean = sum(v) / len(v)
        variance[name] = sum((x - mean) ** 2 for x in v) / len(v)
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for j in judgements:
        var = variance[j["principle"]]
        keep = j["agree"] or not require_agreement
        # A principle with zero variance says nothing that tells pairs apart.
        scores[j["pair_id"]][j["principle"]] = (j["s12"] + j["s21"]) / 2 / var if keep and var > 0 else 0.0
    return dict(scores), variance


def aggregate(
    pairs: Iterable[dict],
    scores: dict[str, dict[str, float]],
    principle_set,
    opts: AggregateOptions,
    seed: int,
) -> tuple[list[dict], dict]:
    """Labelled examples `{id, pair_id, prompt, chosen, rejected, principles: [{name, text,
    negated}], dominant, score_gap, flags}` and the counts of every decision.

    `score_gap` is the dominant principle's scaled score in favour of `chosen` (negative when
    label noise or a rule overrode the judge)."""
    # only principles that can be drawn need a judgement (a set may judge more than it samples)
    names = [p.name for p in principle_set.principles if getattr(p, "sampled", True)]
    stats = Counter({k: 0 for k in ("pairs", "examples", "pairs_missing_judgements", "pairs_dropped_language",
                                    "skipped_zero_score", "rule_language", "rule_disclaimer", "rule_overrode_judge",
                                    "label_noise_flips", "chosen_is_response_1")})
    dominant_counts, size_counts, negated_counts = Counter(), Counter(), Counter()
    examples = []
    for pair in pairs:
        stats["pairs"] += 1
        pair_scores = scores.get(pair["id"], {})
        missing = [n for n in names if n not in pair_scores]
        if missing:
            stats["pairs_missing_judgements"] += 1
            continue
        r1, r2 = pair["response_1"], pair["response_2"]
        language = (language_verdict(pair["prompt"], r1, r2, opts.language_min_chars)
                    if opts.language_rule else None)
        if language == "neither":
            stats["pairs_dropped_language"] += 1
            continue
        disclaimer = disclaimer_winner(r1, r2) if opts.disclaimer_rule else None
        for draw in range(opts.draws_per_pair):
            rng = random.Random(f"{seed}:{pair['id']}:{draw}")
            drawn = principle_set.sample(rng, opts.max_principles, opts.p_continue, opts.p_negate,
                                         prompt_type=pair.get("question_type"), cap=opts.size_cap)
            signed = [(-1 if neg else 1) * pair_scores[p.name] for p, neg in drawn]
            top = max(range(len(drawn)), key=lambda i: abs(signed[i]))
            judge_winner = 1 if signed[top] > 0 else 2 if signed[top] < 0 else None
            rule = None
            if isinstance(language, int):
                winner, rule = language, "language"
            elif disclaimer is not None and rng.random() < opts.disclaimer_p:
                winner, rule = disclaimer, "disclaimer"
            else:
                winner = judge_winner
            if winner is None:
                stats["skipped_zero_score"] += 1
                continue
            overrode = rule is not None and judge_winner is not None and winner != judge_winner
            noisy = rng.random() < (opts.rule_label_noise if rule else opts.label_noise)
            if noisy:
                winner = 3 - winner
            chosen, rejected = (r1, r2) if winner == 1 else (r2, r1)
            gap = signed[top] if winner == 1 else -signed[top]
            examples.append({
                "id": f"{pair['id']}:{draw}", "pair_id": pair["id"], "prompt": pair["prompt"],
                "chosen": chosen, "rejected": rejected,
                "principles": [{"name": p.name, "text": p.text(neg), "negated": neg} for p, neg in drawn],
                "dominant": drawn[top][0].name, "score_gap": gap,
                # label_noise: this label was flipped on purpose; the reward model's held-out accuracy leaves it out
                "flags": {"rule": rule, "label_noise": noisy},
            })
            stats["examples"] += 1
            if rule is not None:
                stats[f"rule_{rule}"] += 1
            stats["label_noise_flips"] += noisy
            stats["chosen_is_response_1"] += winner == 1  # the two seeds should win about equally often
            stats["rule_overrode_judge"] += overrode
            dominant_counts[drawn[top][0].name] += 1
            size_counts[len(drawn)] += 1
            negated_counts[drawn[top][1]] += 1
    out = dict(stats)
    out["dominant_principle"] = dict(dominant_counts)
    out["subset_size"] = {str(k): v for k, v in sorted(size_counts.items())}
    out["dominant_negated"] = negated_counts[True]
    return examples, out
