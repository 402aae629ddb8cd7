"""Generated prompts for users without a pool: seed bootstrapping (ALMoST) and Self-Instruct
(Dromedary-1). Topic-guided red-teaming is in `tgrt.py`.

Both methods share one loop: build a batch of few-shot prompts, generate, parse candidate
prompts, drop bad ones and ones too similar (ROUGE-L) to anything already in the pool, and stop
at the target or after `max_calls` generate calls, whichever comes first. Two defects of ALMoST's
loop are fixed here: it kept the *second* generated query (the first line has no "Query:"
prefix) and it had no bound, so a model that stops producing novel queries spun forever.

`gen` is anything with the `salmon_lib.generation` generator's `generate(prompts, n, temperature,
top_p, max_new_tokens, stop, seed) -> [[Completion(text, finish_reason, ...)]]`.
"""

from __future__ import annotations

import dataclasses
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from ..chat_format import ChatFormat
from ..io import DataError, read_yaml
from .novelty import NoveltyFilter

DATA = Path(__file__).parent / "data"
SEED_QUERIES = DATA / "seed_queries.yaml"

# (text or None, meta, reason it was rejected or None)
Candidate = tuple[str | None, dict, str | None]


@dataclasses.dataclass
class Resume:
    """What a method accepted before an interruption, and where to record each new acceptance."""

    done: list[tuple[str, dict]]
    save: Callable[[str, dict], None]


@dataclasses.dataclass
class Sampling:
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 64  # per generated prompt; list-style requests get a multiple
    batch_size: int = 8
    max_calls: int = 50  # hard bound on generate calls per method
    seed: int = 0


def load_seed_queries(path: str | Path = SEED_QUERIES) -> list[str]:
    path = Path(path)
    data = read_yaml(path, "seed query file")
    queries = data.get("queries") if isinstance(data, dict) else None
    if not isinstance(queries, list) or not queries:
        raise DataError(f"{path}: expected a non-empty list under 'queries'")
    for i, q in enumerate(queries):
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{path}: queries[{i}]: expected a non-empty string, got {q!r}")
    return [q.strip() for q in queries]


def first_line(text: str) -> str:
    return text.lstrip(" \t").split("\n", 1)[0].strip()


def _generate(gen, prompts: list[str], sampling: Sampling, call: int, stop: Iterable[str], lines: int = 1):
    return gen.generate(prompts, n=1, temperature=sampling.temperature, top_p=sampling.top_p,
                        max_new_tokens=sampling.max_new_tokens * lines, stop=tuple(stop),
                        seed=sampling.seed + call)


def novelty_loop(gen, name: str, target: int, build: Callable[[random.Random, list], tuple[str, object]],
                 parse: Callable[[object, object], list[Candidate]], check: Callable[[str], str | None],
                 novelty: NoveltyFilter, sampling: Sampling, stop: Iterable[str] = (), lines: int = 1,
                 resume: Resume | None = None) -> tuple[list[tuple[str, dict]], Counter]:
    """Accepted (prompt, meta) pairs in order, and counts of what happened to every candidate.

    With `resume`, its earlier accepted prompts count toward the target (and join the novelty
    pool), and each new one is handed to its `save`. A resumed run draws other random numbers
    than an uninterrupted one would (seeds shift by the number resumed with), so it does not
    regenerate the same candidates; it is still deterministic for a given resume point."""
    from tqdm.auto import tqdm

    accepted: list[tuple[str, dict]] = list(resume.done) if resume else []
    for text, _ in accepted:
        novelty.add(text)
    offset = 1000 * len(accepted)
    rng = random.Random(f"{name}:{sampling.seed}:{len(accepted)}")
    stats: Counter = Counter({"resumed with": len(accepted)} if accepted else {})
    with tqdm(total=target, initial=min(len(accepted), target), desc=f"generating ({name})", leave=False) as bar:
        for call in range(sampling.max_calls):
            if len(accepted) >= target:
                break
            batch = [build(rng, accepted) for _ in range(sampling.batch_size)]
            outputs = _generate(gen, [p for p, _ in batch], sampling, offset + call, stop, lines)
            stats["generate calls"] += 1
            for (_, context), completions in zip(batch, outputs):
                for completion in completions:
                    for text, meta, reason in parse(completion, context):
                        stats["candidates"] += 1
                        reason = reason or check(text)
                        if reason is None and not novelty.is_novel(text):
                            reason = f"ROUGE-L >= {novelty.threshold}"
                        if reason:
                            stats[f"rejected: {reason}"] += 1
                        elif len(accepted) < target:
                            novelty.add(text)
                            accepted.append((text, meta))
                            if resume:
                                resume.save(text, meta)
                            bar.update(1)
    stats["accepted"] = len(accepted)
    stats["stopped at max_calls"] = int(len(accepted) < target)
    return accepted, stats


def check_length(text: str, min_chars: int = 10, max_chars: int = 300) -> str | None:
    if not text:
        return "empty"
    if len(text) < min_chars:
        return "too short"
    if len(text) > max_chars:
        return "too long"
    if not any(ch.isalpha() for ch in text):
        return "no letters"
    return None


# --- ALMoST-style bootstrapping ----------------------------------------------------------------

BOOTSTRAP_TASK = (
    "Below are requests that people have sent to an AI assistant. Write one more request that a "
    "person could plausibly send. Make it differ from every example in subject and wording, keep it "
    "on a single line, and do not answer it.\n\n{examples}"
)
_QUERY = re.compile(r"query\s*:", re.IGNORECASE)
_LIST_MARK = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")  # "1. ", "- ": the model started a list


def bootstrap(gen, fmt: ChatFormat, seeds: list[str], target: int, sampling: Sampling, n_shot: int = 10,
              rouge_threshold: float = 0.7, resume: Resume | None = None) -> tuple[list[tuple[str, dict]], Counter]:
    """Each request shows `n_shot` queries drawn without replacement from the seeds plus the
    queries accepted so far; the first generated line is the candidate."""
    def build(rng: random.Random, accepted: list[tuple[str, dict]]):
        pool = seeds + [q for q, _ in accepted]
        demos = rng.sample(pool, min(n_shot, len(pool)))
        examples = "\n".join(f"Query: {q}" for q in demos)
        return fmt.prompt(BOOTSTRAP_TASK.format(examples=examples), prefill="Query:"), None

    def parse(completion, _context) -> list[Candidate]:
        line = _LIST_MARK.sub("", _QUERY.split(first_line(completion.text))[0]).strip()
        truncated = completion.finish_reason == "length" and "\n" not in completion.text
        return [(line, {}, "truncated" if truncated else None)]

    novelty = NoveltyFilter(seeds, rouge_threshold)
    return novelty_loop(gen, "bootstrap", target, build, parse, check_length, novelty, sampling,
                        stop=("\n", *fmt.stop), resume=resume)


# --- Self-Instruct (Dromedary-1's vanilla instructions) ------------------------------------------

SELF_INSTRUCT_TASK = (
    "Make a list of varied instructions that someone could give an AI assistant.\n"
    "Requirements:\n"
    "1. Vary the verbs and the wording; never repeat an instruction.\n"
    "2. Vary the kind of task: open questions, writing, rewriting, classification, advice, "
    "reasoning, coding and more.\n"
    "3. A text-only assistant must be able to do it: no pictures, sound, files or web browsing.\n"
    "4. Write in English, one or two sentences per instruction.\n"
    "5. Each instruction stands on its own, without a hidden context."
)
SELF_INSTRUCT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                           "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
                           "diagram")
_ITEM = re.compile(r"^\s*(\d+)\.\s*Instruction:\s*(.*)$")
_BLACKLIST = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in SELF_INSTRUCT_BLACKLIST) + r")\b", re.IGNORECASE)


def check_instruction(text: str) -> str | None:
    words = len(text.split())
    if words < 4:
        return "fewer than 4 words"
    if words > 150:
        return "more than 150 words"
    if _BLACKLIST.search(text):
        return "needs non-text input or output"
    if text[0] in string.punctuation or not text[0].isascii():
        return "starts with punctuation or a non-ASCII character"
    return None


def self_instruct(gen, fmt: ChatFormat, seeds: list[str], target: int, sampling: Sampling, n_shot: int = 5,
                  per_request: int = 5, rouge_threshold: float = 0.7, resume: Resume | None = None,
                  ) -> tuple[list[tuple[str, dict]], Counter]:
    """Each request shows `n_shot` seeds as a numbered list and asks for more; demos come from the
    seeds only (generated instructions are not fed back, as in the original)."""

    def build(rng: random.Random, _accepted):
        demos = rng.sample(seeds, min(n_shot, len(seeds)))
        listed = "".join(f"{i}. Instruction: {q}\n" for i, q in enumerate(demos, 1))
        return fmt.prompt(SELF_INSTRUCT_TASK, prefill=f"{listed}{len(demos) + 1}. Instruction:"), len(demos) + 1

    def parse(completion, first_number: int) -> list[Candidate]:
        lines = completion.text.split("\n")
        items = [(lines[0].strip(), {})]
        for line in lines[1:]:
            m = _ITEM.match(line)
            if m:
                items.append((m.group(2).strip(), {}))
        out: list[Candidate] = [(t, m, None) for t, m in items[:per_request]]
        if completion.finish_reason == "length" and len(items) <= per_request:
            out[-1] = (out[-1][0], {}, "truncated")  # the last item may be cut off mid-sentence
        return out

    novelty = NoveltyFilter(seeds, rouge_threshold)
    return novelty_loop(gen, "self_instruct", target, build, parse, check_instruction, novelty, sampling,
                        stop=fmt.stop, lines=per_request, resume=resume)
