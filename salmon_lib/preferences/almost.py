"""ALMoST-style synthetic comparisons: rank answers by how they were made, never by content.

Answers to the same prompt come from several configurations `MODEL:DEMOS:N` (a model spec, a
demonstration set "plain" or "detailed" from demos.yaml, and N few-shot dialogues). A rubric
lists the configurations best first, in tiers (configurations in one tier tie); the rules of
thumb are: a bigger model, more shots and better demonstrations win.

Comparisons follow the original's rule (almost.md §2.3) exactly: per prompt, drop BAD answers,
sort the rest by rank, walk all (higher, lower) pairs in order and emit one unless the higher
configuration or its rank was already used as the chosen side, the pair ties, or the heuristic
length filter fires (chosen shorter than rejected AND shorter than mean - std/2 of the prompt's
valid answers' lengths, population std). The result is a chain of at most K-1 pairs.

Fixed relative to the original: ties are expressible (tiers), asking for more shots than a set
holds is an error instead of a silent cap, answers are generated with a seed and stop at the
chat format's next turn, responses are keyed by prompt id instead of aligned by list index (and
carry the signature of what made them, so a rerun answers again exactly the changed ones), and
generated text is sliced at the prompt's token length by the backend instead of string-replaced,
and an answer cut off by the token limit is BAD even when it happens to end in a full stop.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..chat_format import ChatFormat
from ..io import read_yaml
from ..provenance import derive_seed, signature

DEMOS_PATH = Path(__file__).with_name("demos.yaml")
DEMO_SETS = ("plain", "detailed")


@dataclass(frozen=True)
class Configuration:
    model: str  # model spec, or "sft" for the stage's model with the run's SFT adapter
    demos: str  # "plain" or "detailed"
    shots: int  # number of demonstration dialogues shown

    @property
    def name(self) -> str:
        model = Path(self.model.rstrip("/")).name.lower() or self.model
        return f"{model}-{self.demos}-{self.shots}shot"

    @classmethod
    def parse(cls, text: str, where: str = "configuration") -> "Configuration":
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"{where}: {text!r} is not MODEL:DEMOS:SHOTS (e.g. 'default:detailed:3')")
        model, demos, shots = parts
        if demos not in DEMO_SETS:
            raise ValueError(f"{where}: demonstration set {demos!r} is not one of {', '.join(DEMO_SETS)}")
        if not shots.isdigit():
            raise ValueError(f"{where}: number of shots {shots!r} is not a non-negative integer")
        return cls(model, demos, int(shots))


def parse_rubric(tiers: Sequence[Sequence[str]]) -> list[tuple[Configuration, int]]:
    """[(configuration, rank)] from tiers listed best first; rank 0 is best."""
    out, seen = [], set()
    for rank, tier in enumerate(tiers):
        if not tier:
            raise ValueError(f"almost_rubric[{rank}]: empty tier")
        for i, text in enumerate(tier):
            c = Configuration.parse(text, f"almost_rubric[{rank}][{i}]")
            if c.name in seen:
                raise ValueError(f"almost_rubric[{rank}][{i}]: configuration {c.name!r} appears twice")
            seen.add(c.name)
            out.append((c, rank))
    if len(out) < 2:
        raise ValueError("almost_rubric: needs at least two configurations to compare")
    return out


def load_demos(path: str | Path = DEMOS_PATH) -> dict:
    path = Path(path)
    data = read_yaml(path, "ALMoST demonstration file")
    if not isinstance(data, dict) or not isinstance(data.get("preamble"), str):
        raise ValueError(f"{path}: expected a mapping with a 'preamble' string")
    for name in DEMO_SETS:
        dialogues = data.get(name)
        if not isinstance(dialogues, list) or not dialogues:
            raise ValueError(f"{path}: {name!r} must be a non-empty list of dialogues")
        for i, d in enumerate(dialogues):
            if not isinstance(d, dict) or not all(
                isinstance(d.get(k), str) and d[k].strip() for k in ("user", "assistant")
            ):
                raise ValueError(f"{path}: {name}[{i}] needs non-empty 'user' and 'assistant' strings")
    return data


def fewshot_prompt(fmt: ChatFormat, demos: dict, config: Configuration, query: str) -> str:
    dialogues = demos[config.demos]
    if config.shots > len(dialogues):
        raise ValueError(f"configuration {config.name}: {config.shots} shots asked for, "
                         f"but the {config.demos!r} set holds only {len(dialogues)} dialogues")
    messages = [{"role": "system", "content": demos["preamble"]}]
    for d in dialogues[:config.shots]:
        messages += [{"role": "user", "content": d["user"]}, {"role": "assistant", "content": d["assistant"]}]
    messages.append({"role": "user", "content": query})
    return fmt.render(messages)


_DONT_KNOW = re.compile(r"(?:don['’]t|do not) know", re.IGNORECASE)


def bad_reason(text: str, extra_markers: Sequence[str] = ()) -> str | None:
    """The original's response filters; the first that fires, or None for a usable answer.
    `extra_markers`: strings that betray a leaked turn in the chat format in use."""
    text = text.strip()
    if len(text) < 50:
        return "too_short"
    if text.endswith(("?", ":")):
        return "ends_with_question_or_colon"
    if text.lower().startswith("well"):
        return "starts_with_well"
    if text[-1] not in ".!":
        return "unfinished"
    if _DONT_KNOW.search(text):
        return "dont_know"
    if any(m in text for m in ("Human:", "<Image>", *extra_markers)):
        return "leaked_turn"
    return None


def response_signatures(fmt: ChatFormat, prompts: Sequence[dict], config: Configuration, demos: dict,
                        settings: dict) -> dict[str, str]:
    """{prompt id: signature} of the answers `config` gives under `settings` (model, adapter,
    sampling settings, seed); the few-shot prompt as rendered stands for the demonstrations."""
    return {p["id"]: signature({**settings, "prompt": fewshot_prompt(fmt, demos, config, p["prompt"])})
            for p in prompts}


def generate_responses(gen, fmt: ChatFormat, prompts: Sequence[dict], config: Configuration, demos: dict,
                       signatures: dict[str, str], *, adapter: str | None, temperature: float, top_p: float,
                       max_new_tokens: int, seed: int, log, batch_size: int = 32) -> None:
    """Answer every `{id, prompt}` whose answer in `log` is not current under `signatures`; records
    `{id, config, response, bad, signature}` where `bad` is the filter that rejected the answer (or
    null). Each answer's seed derives from the configuration and the prompt id."""
    from tqdm.auto import tqdm

    todo = [p for p in prompts if not log.current(p["id"], signatures[p["id"]])]
    markers = tuple(m.strip() for m in (fmt.assistant, *fmt.stop) if m.strip())
    for start in tqdm(range(0, len(todo), batch_size), desc=config.name, unit="batch"):
        batch = todo[start:start + batch_size]
        texts = [fewshot_prompt(fmt, demos, config, p["prompt"]) for p in batch]
        outs = gen.generate(texts, n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                            stop=fmt.stop, seed=[derive_seed(seed, config.name, p["id"]) for p in batch],
                            adapter=adapter)
        records = []
        for p, (c,) in zip(batch, outs):
            response = c.text.strip()
            reason = bad_reason(response, markers) or ("truncated" if c.finish_reason == "length" else None)
            records.append({"id": p["id"], "config": config.name, "response": response, "bad": reason,
                            "signature": signatures[p["id"]]})
        log.append(records)


def chain_pairs(candidates: Sequence[tuple[str, int, str]], length_filter: bool = True) -> tuple[list[tuple], Counter]:
    """Comparisons of one prompt. `candidates`: (configuration name, rank, response) of the
    valid (non-BAD) answers. Returns ([(chosen cfg, rejected cfg, chosen, rejected)], counts)."""
    counts = Counter()
    ordered = sorted(candidates, key=lambda c: c[1])
    if len(ordered) < 2:
        counts["prompts_with_fewer_than_2_answers"] += 1
        return [], counts
    lengths = [len(c[2]) for c in ordered]
    threshold = statistics.fmean(lengths) - statistics.pstdev(lengths) / 2
    used_configs, used_ranks, out = set(), set(), []
    for (cc, rc, c), (cr, rr, r) in itertools.combinations(ordered, 2):
        if cc in used_configs or rc in used_ranks:
            continue
        if length_filter and len(c) < len(r) and len(c) < threshold:
            counts["length_filter"] += 1
            continue
        if rc == rr:
            counts["tie"] += 1
            continue
        out.append((cc, cr, c, r))
        used_configs.add(cc)
        used_ranks.add(rc)
    return out, counts


def comparisons(
    prompts: Sequence[dict],
    responses: dict[str, dict[str, dict]],
    rubric: Sequence[tuple[Configuration, int]],
    length_filter: bool = True,
) -> tuple[list[dict], dict]:
    """Preference records (the SALMON schema: no principles, `score_gap` = rank difference) and
    counts. `responses[config name][prompt id]` is a record from `generate_responses`."""
    stats = Counter()
    bad = Counter()
    examples = []
    for p in prompts:
        candidates = []
        for cfg, rank in rubric:
            rec = responses.get(cfg.name, {}).get(p["id"])
            if rec is None:
                stats["missing_responses"] += 1
            elif rec["bad"]:
                bad[rec["bad"]] += 1
            else:
                candidates.append((cfg.name, rank, rec["response"]))
        ranks = {cfg.name: rank for cfg, rank in rubric}
        pairs, counts = chain_pairs(candidates, length_filter)
        stats.update(counts)
        for cc, cr, chosen, rejected in pairs:
            examples.append({
                "id": f"{p['id']}:{cc}>{cr}", "pair_id": p["id"], "prompt": p["prompt"],
                "chosen": chosen, "rejected": rejected, "principles": [], "dominant": None,
                "score_gap": float(ranks[cr] - ranks[cc]),
                "flags": {"rule": "rubric", "label_noise": False, "meta": f"{cc}-vs-{cr}"},
            })
    stats["examples"] = len(examples)
    stats["prompts"] = len(prompts)
    return examples, {**stats, "bad_responses": dict(bad),
                      "pairs_by_meta": dict(Counter(e["flags"]["meta"] for e in examples))}
