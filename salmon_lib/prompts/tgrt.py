"""Topic-guided red-teaming (Dromedary-1): question types -> topics -> questions.

1. Topics: for each question type the model continues a numbered list of existing topics of
   that type. Kept lines are short capitalised noun phrases (<= 3 words, no end punctuation),
   deduplicated per type without regard to case; after the last round the types are cut to the
   same size, so no type dominates.
2. Questions: each request lists (type, topic) hints, fills the first few with the types' seed
   questions as worked examples and asks the model to continue; a line is taken as the question
   for the hint with the number it starts with.
The questions get no ROUGE-L filter (as in the original); (type, topic) pairs are unique instead.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from pathlib import Path

from ..chat_format import ChatFormat
from ..io import DataError, read_yaml
from .generate import DATA, Resume, Sampling, _generate, check_length

QUESTION_TYPES = DATA / "question_types.yaml"

TOPIC_TASK = (
    "We are collecting topics for one kind of question that an AI assistant tends to answer badly: "
    "{description}\nList 10 more topics of this kind.\n"
    "Requirements:\n"
    "1. Use varied words; do not repeat a topic.\n"
    "2. At most three words per topic.\n"
    "3. Each topic is a noun phrase that starts with a capital letter.\n"
    "4. Every topic must suit the kind of question above."
)
QUESTION_TASK = (
    "Write questions or instructions that a machine learning model cannot answer, or is likely to "
    "answer with wrong facts.\n"
    "Requirements:\n"
    "1. Use varied words; do not repeat a question.\n"
    "2. Mix questions and imperative instructions.\n"
    "3. Mix kinds of task.\n"
    "4. Write in English.\n"
    "5. One short sentence each.\n"
    "6. Follow the type and topic hint given for each item.\n\n"
    "Hints:\n{hints}"
)
_NUMBERED = re.compile(r"^\s*\d+\s*[.)]\s*")
# "7. type: ..., topic: ..., instruction: <question>": small models often garble the type or topic
# text they copy, so a line is matched to its hint by number.
_HINT_LINE = re.compile(r"^\s*(\d+)\.\s.*?\binstruction:(.*)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class QuestionType:
    name: str
    description: str
    seed_topic: str
    seed_question: str

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def load_question_types(path: str | Path = QUESTION_TYPES) -> list[QuestionType]:
    path = Path(path)
    data = read_yaml(path, "question type file")
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected a non-empty list of question types")
    types, names = [], set()
    for i, item in enumerate(data):
        where = f"{path}: item {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected a mapping with name, description, seed_topic, seed_question")
        for field in ("name", "description", "seed_topic", "seed_question"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise DataError(f"{where} ({item.get('name', '?')}): field {field!r} must be a non-empty string")
        unknown = set(item) - {"name", "description", "seed_topic", "seed_question"}
        if unknown:
            raise DataError(f"{where} ({item['name']}): unknown field(s) {', '.join(sorted(unknown))}")
        if item["name"] in names:
            raise DataError(f"{where}: duplicate name {item['name']!r}")
        if not valid_topic(item["seed_topic"]):
            raise DataError(f"{where} ({item['name']}): seed_topic must be <= 3 words, capitalised, "
                            f"without end punctuation; got {item['seed_topic']!r}")
        names.add(item["name"])
        types.append(
            QuestionType(**{k: item[k].strip() for k in ("name", "description", "seed_topic", "seed_question")})
        )
    return types


def valid_topic(text: str) -> bool:
    return bool(text) and len(text.split()) <= 3 and text[0].isupper() and text[-1].isalnum()


def brainstorm_topics(gen, fmt: ChatFormat, types: list[QuestionType], sampling: Sampling, rounds: int = 2,
                      max_per_type: int = 10, shown: int = 5) -> tuple[dict[str, list[str]], Counter]:
    """Topics per type name (the seed topic first). Each round asks again for every type that has
    fewer than `max_per_type`. Then the types that got new topics are cut to the smallest of them;
    a type that got none keeps only its seed topic (and so gets no questions) rather than cutting
    every other type down to nothing."""
    topics = {t.name: [t.seed_topic] for t in types}
    stats: Counter = Counter()
    rng = random.Random(f"tgrt-topics:{sampling.seed}")
    call = 0
    for _ in range(rounds):
        growing = [t for t in types if len(topics[t.name]) < max_per_type]
        for start in range(0, len(growing), sampling.batch_size):
            if call >= sampling.max_calls:
                break
            batch = growing[start:start + sampling.batch_size]
            prompts = []
            for t in batch:
                listed = rng.sample(topics[t.name], min(shown, len(topics[t.name])))
                prefill = "".join(f"{i}. {x}\n" for i, x in enumerate(listed, 1)) + f"{len(listed) + 1}."
                prompts.append(fmt.prompt(TOPIC_TASK.format(description=t.description), prefill=prefill))
            outputs = _generate(gen, prompts, sampling, call, fmt.stop, lines=2)
            call += 1
            for t, completions in zip(batch, outputs):
                have = {x.casefold() for x in topics[t.name]}
                for line in completions[0].text.split("\n")[:20]:
                    topic = _NUMBERED.sub("", line).strip()
                    stats["candidates"] += 1
                    if not valid_topic(topic):
                        stats["rejected: not a short capitalised noun phrase"] += 1
                    elif topic.casefold() in have:
                        stats["rejected: duplicate topic"] += 1
                    elif len(topics[t.name]) < max_per_type:
                        have.add(topic.casefold())
                        topics[t.name].append(topic)
                        stats["accepted"] += 1
    grown = [len(v) for v in topics.values() if len(v) > 1]
    smallest = min(grown, default=1)
    stats["types without a new topic"] = len(topics) - len(grown)
    stats["topics per type (balanced)"] = smallest
    stats["generate calls"] = call
    return {name: v[:smallest] for name, v in topics.items()}, stats


def tgrt_questions(gen, fmt: ChatFormat, types: list[QuestionType], topics: dict[str, list[str]],
                   sampling: Sampling, n_examples: int = 5, hints_per_request: int = 5,
                   resume: Resume | None = None) -> tuple[list[tuple[str, dict]], Counter]:
    """One question per (type, topic) pair beyond the seeds, as (question, meta) pairs; pairs that
    `resume` already has a question for are not asked again."""
    by_name = {t.name: t for t in types}
    done = {(m["tgrt_type"], m["topic"]) for _, m in resume.done} if resume else set()
    pairs = [(by_name[name], topic) for name, ts in topics.items() for topic in ts
             if topic != by_name[name].seed_topic and (name, topic) not in done]
    rng = random.Random(f"tgrt-questions:{sampling.seed}")
    groups = [pairs[i:i + hints_per_request] for i in range(0, len(pairs), hints_per_request)]
    accepted: list[tuple[str, dict]] = list(resume.done) if resume else []
    stats: Counter = Counter({"resumed with": len(accepted)} if accepted else {})

    first = min(n_examples, len(types)) + 1  # number of the first new hint
    calls = 0

    def prefix(i: int, t: QuestionType, topic: str) -> str:
        return f"{i}. type: {t.label}, topic: {topic}, instruction:"

    for call, start in enumerate(range(0, len(groups), sampling.batch_size)):
        if call >= sampling.max_calls:
            stats["pairs left at max_calls"] = sum(len(g) for g in groups[start:])
            break
        batch = groups[start:start + sampling.batch_size]
        prompts = []
        for group in batch:
            examples = rng.sample(types, min(n_examples, len(types)))
            items = [(t, t.seed_topic) for t in examples] + group
            hints = "\n".join(f"{i}. type: {t.label}, topic: {topic}" for i, (t, topic) in enumerate(items, 1))
            worked = "".join(f"{prefix(i, t, t.seed_topic)} {t.seed_question}\n" for i, t in enumerate(examples, 1))
            prompts.append(fmt.prompt(QUESTION_TASK.format(hints=hints),
                                      prefill=worked + prefix(len(examples) + 1, *group[0])))
        outputs = _generate(gen, prompts, sampling, call, fmt.stop, lines=len(batch[0]))
        calls += 1
        for group, completions in zip(batch, outputs):
            lines = completions[0].text.split("\n")
            found = {0: lines[0].strip()}
            for line in lines[1:]:
                m = _HINT_LINE.match(line)
                k = int(m.group(1)) - first if m else -1
                if 0 < k < len(group) and k not in found:
                    found[k] = m.group(2).strip()
            # A completion cut off by the token limit may have cut its last question short.
            cut = max(found) if completions[0].finish_reason == "length" else None
            for k, (t, topic) in enumerate(group):
                stats["pairs"] += 1
                question = found.get(k)
                reason = ("no line for this hint" if question is None else
                          "truncated" if k == cut else check_length(question))
                if reason:
                    stats[f"rejected: {reason}"] += 1
                else:
                    accepted.append((question, {"tgrt_type": t.name, "topic": topic}))
                    if resume:
                        resume.save(*accepted[-1])
    stats["generate calls"] = calls
    stats["accepted"] = len(accepted)
    return accepted, stats
