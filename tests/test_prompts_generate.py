"""Generation loops on a scripted stand-in for `salmon_lib.generation` (loop logic only: bounds,
parsing, novelty, determinism); tests with the real tiny model are in test_prompts_stage.py."""

import dataclasses
import random
import re

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.io import DataError
from salmon_lib.prompts.generate import Sampling, bootstrap, check_instruction, load_seed_queries, self_instruct
from salmon_lib.prompts.novelty import NoveltyFilter, lcs_length, rouge_l, rouge_tokens
from salmon_lib.prompts.tgrt import brainstorm_topics, load_question_types, tgrt_questions, valid_topic

FMT = get_format("chatml")
SEEDS = load_seed_queries()


@dataclasses.dataclass
class Completion:
    text: str
    finish_reason: str = "stop"


class ScriptedGen:
    """Answers each prompt with `reply(prompt, rng)`; rng is seeded by the call's seed and index."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate(self, prompts, n=1, temperature=0.7, top_p=0.95, max_new_tokens=256, stop=(), seed=0):
        self.calls.append(dict(n=len(prompts), seed=seed, stop=stop, max_new_tokens=max_new_tokens))
        out = []
        for i, p in enumerate(prompts):
            got = self.reply(p, random.Random(f"{seed}:{i}:{p}"))
            out.append([got if isinstance(got, Completion) else Completion(got)])
        return out


WORDS = "river lantern quantum recipe tax orbit violin glacier poem budget sensor myth harbour".split()


def novel_query(prompt, rng):
    return " ".join(rng.choice(WORDS) for _ in range(6)).capitalize() + "?\nQuery: ignored second line"


def test_rouge_l():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert lcs_length("a b c d".split(), "a x c d".split()) == 3
    assert rouge_l("A b c d", "a x c d") == pytest.approx(0.75)
    assert rouge_l("", "a") == 0.0
    assert rouge_tokens("Wie geht's, Welt?") == ["wie", "geht", "s", "welt"]


def test_novelty_filter_bound_agrees_with_brute_force():
    rng = random.Random(0)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(200)]
    f = NoveltyFilter(refs, threshold=0.6)
    for _ in range(100):
        cand = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        brute = max(rouge_l(cand, r) for r in refs)
        assert f.is_novel(cand) == (brute < 0.6)


def test_bootstrap_takes_first_line_and_is_deterministic():
    gen = ScriptedGen(novel_query)
    got, stats = bootstrap(gen, FMT, SEEDS, 12, Sampling(batch_size=4, seed=5))
    assert len(got) == 12 and stats["accepted"] == 12 and stats["stopped at max_calls"] == 0
    assert all("\n" not in q and "Query" not in q and q.endswith("?") for q, _ in got)
    again, _ = bootstrap(ScriptedGen(novel_query), FMT, SEEDS, 12, Sampling(batch_size=4, seed=5))
    assert again == got
    other, _ = bootstrap(ScriptedGen(novel_query), FMT, SEEDS, 12, Sampling(batch_size=4, seed=6))
    assert other != got
    prompt_seen = []
    bootstrap(
        ScriptedGen(lambda p, r: prompt_seen.append(p) or "x"), FMT, SEEDS, 1, Sampling(batch_size=1, max_calls=1)
    )
    assert prompt_seen[0].count("Query: ") == 10 and prompt_seen[0].endswith("<|im_start|>assistant\nQuery:")
    assert "\n" in gen.calls[0]["stop"]  # generation stops at the end of the first line


def test_bootstrap_feeds_accepted_queries_back_as_demonstrations():
    shown = []

    def reply(prompt, rng):
        shown.append(prompt)
        return f"Completely fresh question number {len(shown)} about {rng.choice(WORDS)} and {rng.choice(WORDS)}?"

    got, _ = bootstrap(ScriptedGen(reply), FMT, SEEDS[:10], 20, Sampling(batch_size=2))
    assert any("Completely fresh question" in p for p in shown[10:])


def test_loop_is_bounded_when_nothing_is_novel():
    gen = ScriptedGen(lambda p, r: SEEDS[0])  # always a copy of a seed
    got, stats = bootstrap(gen, FMT, SEEDS, 50, Sampling(batch_size=3, max_calls=7))
    assert got == [] and len(gen.calls) == 7 and stats["stopped at max_calls"] == 1
    assert stats["rejected: ROUGE-L >= 0.7"] == 21


def test_bootstrap_rejects_truncated_and_bad_lines():
    replies = iter([Completion("A question cut off by the token lim", "length"), "ok?", "12345 678 90",
                    "What is a sensible way to learn to juggle three balls?"])
    got, stats = bootstrap(ScriptedGen(lambda p, r: next(replies)), FMT, SEEDS, 1, Sampling(batch_size=1, max_calls=4))
    assert [q for q, _ in got] == ["What is a sensible way to learn to juggle three balls?"]
    assert (
        stats["rejected: truncated"] == 1 and stats["rejected: too short"] == 1 and stats["rejected: no letters"] == 1
    )


def test_self_instruct_parses_the_numbered_continuation():
    def reply(prompt, rng):
        n = int(re.search(r"(\d+)\. Instruction:$", prompt).group(1))
        def words(k):
            return " ".join(f"w{rng.randrange(10**6)}" for _ in range(k))

        lines = [f" Describe {words(6)}."]
        lines += [f"{n + k}. Instruction: Draw a picture of {words(3)}." if k == 1 else
                  f"{n + k}. Instruction: Suggest {words(6)}." for k in range(1, 4)]
        return "\n".join(lines)

    got, stats = self_instruct(ScriptedGen(reply), FMT, SEEDS, 6, Sampling(batch_size=2))
    assert len(got) == 6 and stats["rejected: needs non-text input or output"] >= 1
    assert check_instruction("Sort these") == "fewer than 4 words"
    assert check_instruction("¿Cómo se hace una tortilla?") == "starts with punctuation or a non-ASCII character"


def test_question_types_and_seed_files(tmp_path):
    types = load_question_types()
    assert len(types) == 20 and len({t.name for t in types}) == 20
    assert all(valid_topic(t.seed_topic) for t in types)
    assert len(SEEDS) >= 100 and len(set(SEEDS)) == len(SEEDS)
    bad = tmp_path / "types.yaml"
    bad.write_text("- name: a\n  description: d\n  seed_topic: too many words here\n  seed_question: q\n")
    with pytest.raises(DataError, match=r"item 0 \(a\): seed_topic"):
        load_question_types(bad)
    bad.write_text("- name: a\n  description: d\n  seed_topic: Ok\n")
    with pytest.raises(DataError, match="field 'seed_question'"):
        load_question_types(bad)
    bad.write_text("queries: [ok, 3]\n")
    with pytest.raises(DataError, match=r"queries\[1\]"):
        load_seed_queries(bad)


def test_tgrt_topics_then_questions():
    types = load_question_types()[:4]

    def topics_reply(prompt, rng):
        return " " + "\n".join(f"{i}. {rng.choice(WORDS).capitalize()} {w}" for i, w in enumerate(
            ["Studies", "Trends", "bad lowercase", "Rules.", "Way Too Many Words Here"], 7))

    topics, tstats = brainstorm_topics(ScriptedGen(topics_reply), FMT, types, Sampling(batch_size=3), rounds=2,
                                       max_per_type=3)
    assert all(len(v) == 3 and v[0] == t.seed_topic for t, v in zip(types, topics.values()))
    assert tstats["rejected: not a short capitalised noun phrase"] > 0

    def question_reply(prompt, rng):
        hints = re.findall(r"^(\d+)\. type: ([^,]+), topic: (.+)$", prompt.split("Hints:\n")[1].split("<|im_end|>")[0],
                           re.MULTILINE)
        first = int(re.search(r"(\d+)\. type: [^\n]*instruction:$", prompt).group(1))
        lines = [f" What is the deal with {hints[first - 1][2]} today?"]
        lines += [f"{n}. type: {t}, topic: {p}, instruction: Tell me about {p} in detail."
                  for n, t, p in hints[first:]][:-1]  # the last hint gets no line
        if len(lines) > 1:  # a garbled copy of the hint still counts by its number
            lines[1] = re.sub(r"type: [^,]+, topic: ([^,]+),", r"typo: whatever \1,", lines[1])
        return "\n".join(lines)

    gen = ScriptedGen(question_reply)
    got, qstats = tgrt_questions(gen, FMT, types, topics, Sampling(batch_size=2), hints_per_request=3)
    pairs = sum(len(v) - 1 for v in topics.values())
    assert pairs == 8 and qstats["pairs"] == pairs
    assert qstats["rejected: no line for this hint"] == 3  # groups of 3, 3, 2: each misses its last hint
    assert len(got) == pairs - qstats["rejected: no line for this hint"]
    assert all(m["topic"] in q for q, m in got)
    assert {m["tgrt_type"] for _, m in got} <= {t.name for t in types}


def test_resume_counts_earlier_prompts_and_saves_new_ones():
    from salmon_lib.prompts.generate import Resume

    first, _ = bootstrap(ScriptedGen(novel_query), FMT, SEEDS, 4, Sampling(batch_size=2, seed=1))
    saved = []
    resumed, stats = bootstrap(ScriptedGen(novel_query), FMT, SEEDS, 7, Sampling(batch_size=2, seed=1),
                               resume=Resume(first, lambda t, m: saved.append(t)))
    assert resumed[:4] == first and len(resumed) == 7 and saved == [q for q, _ in resumed[4:]]
    assert stats["resumed with"] == 4
    copies = ScriptedGen(lambda p, r: first[0][0])  # a resumed prompt is in the novelty pool
    got, stats = bootstrap(copies, FMT, SEEDS, 6, Sampling(batch_size=2, max_calls=2), resume=Resume(first, print))
    assert got == first and stats["rejected: ROUGE-L >= 0.7"] == 4
