"""RLCD pairs on the tiny model: each answer is written under the principle or its negation, the
examples carry the right label and principle text (negation included), filters are counted, and
generation resumes without duplicates."""

import pytest

from salmon_lib import generation
from salmon_lib.chat_format import get_format
from salmon_lib.io import RecordLog
from salmon_lib.preferences import rlcd
from salmon_lib.principles import load_principles
from salmon_lib.scoring import judge_modes as jm

FMT = get_format("chatml")
PROMPTS = [{"id": f"q{i}", "prompt": p, "question_type": "general"} for i, p in
           enumerate(["Name a fruit.", "Why is the sky blue?", "Give me a tip for sleeping well."])]


@pytest.fixture(scope="module")
def gen():
    from salmon_lib.models import ModelConfig

    with generation.make_generator(ModelConfig(spec="tiny"), backend="hf", progress=False) as g:
        yield g


@pytest.fixture(scope="module")
def principles():
    return load_principles("principles/judge.yaml")


def sigs(prompts, principles, **settings):
    return rlcd.pair_signatures(FMT, prompts, principles, 0, settings)


class Spy:
    """Passes calls to the real generator and keeps the prompts it was asked to answer."""

    def __init__(self, gen):
        self.gen, self.prompts = gen, []

    def generate(self, prompts, **kw):
        self.prompts += prompts
        return self.gen.generate(prompts, **kw)

    def __getattr__(self, name):
        return getattr(self.gen, name)


def test_answers_are_written_under_the_principle_and_its_negation(gen, principles, tmp_path):
    spy = Spy(gen)
    log = RecordLog(tmp_path / "rlcd.jsonl")
    rlcd.generate_pairs(spy, FMT, PROMPTS, principles, log, sigs(PROMPTS, principles), adapter=None, seed=0,
                        max_new_tokens=8, min_chars=1, progress=False)
    records = log.records()
    assert [r["id"] for r in records] == [f"rlcd-q{i}" for i in range(3)]
    for i, r in enumerate(records):
        p = principles.by_name(r["principle"])
        assert p.sampled and p.negative_definition
        assert spy.prompts[i] == FMT.prompt(PROMPTS[i]["prompt"], system=rlcd.system_prompt(p.definition))
        assert spy.prompts[3 + i] == FMT.prompt(PROMPTS[i]["prompt"], system=rlcd.system_prompt(p.negative_definition))
        c = jm.Criterion(p.name, p.definition, p.negative_definition)
        # an answer cut at max_new_tokens is scored as cut (no end of turn)
        both = [(r["prompt"], r["response_pos"], c, not r["truncated"][0]),
                (r["prompt"], r["response_neg"], c, not r["truncated"][1])]
        values = jm.response_values(gen, FMT, both, ["contrastive"])["contrastive"]
        assert [r["value_pos"], r["value_neg"]] == pytest.approx(values, abs=1e-4)
        assert r["margin"] == pytest.approx(r["value_pos"] - r["value_neg"])
    # resuming adds nothing; a new prompt adds one record
    more = PROMPTS + [{"id": "q9", "prompt": "Count to three."}]
    again = RecordLog(tmp_path / "rlcd.jsonl")
    rlcd.generate_pairs(gen, FMT, more, principles, again, sigs(more, principles), adapter=None, seed=0,
                        max_new_tokens=8, min_chars=1, progress=False)
    ids = [r["id"] for r in again.records()]
    assert len(ids) == len(set(ids)) == 4
    # other settings make every pair again, each superseding its old record
    spy = Spy(gen)
    rlcd.generate_pairs(spy, FMT, more, principles, RecordLog(tmp_path / "rlcd.jsonl"),
                        sigs(more, principles, max_new_tokens=6), adapter=None, seed=0, max_new_tokens=6,
                        min_chars=1, progress=False)
    assert len(spy.prompts) == 8 and len(RecordLog(tmp_path / "rlcd.jsonl").records()) == 4


def test_best_of_k_keeps_the_candidate_the_contrast_favours(gen, principles, tmp_path):
    log = RecordLog(tmp_path / "rlcd.jsonl")
    calls = []
    real = jm.response_values

    def spy(g, fmt, items, modes, **kw):
        values = real(g, fmt, items, modes, **kw)
        calls.append((items, values["contrastive"]))
        return values

    rlcd.response_values = spy
    try:
        rlcd.generate_pairs(gen, FMT, PROMPTS[:2], principles, log, sigs(PROMPTS[:2], principles), adapter=None,
                            seed=0, temperature=1.0, candidates=3, max_new_tokens=8, min_chars=1, progress=False)
    finally:
        rlcd.response_values = real
    (items, values), = calls
    assert len(items) == 2 * 2 * 3  # prompts x sides x candidates, the answers under the principle first
    for i, r in enumerate(log.records()):
        pos = [(v, it[1]) for it, v in zip(items[3 * i:3 * i + 3], values[3 * i:3 * i + 3])]
        neg = [(v, it[1]) for it, v in zip(items[6 + 3 * i:9 + 3 * i], values[6 + 3 * i:9 + 3 * i])]
        assert r["value_pos"] == max(v for v, _ in pos)
        assert r["response_pos"] == max(pos, key=lambda x: x[0])[1].strip()
        assert r["response_neg"] == min(neg, key=lambda x: x[0])[1].strip()
        assert r["value_neg"] == min(v for v, _ in neg) and r["candidates"] == 3


def record(pid, principle, pos="written under the principle", neg="written under the negation", margin=1.0,
           dropped=None):
    return {"id": f"rlcd-{pid}", "prompt_id": pid, "prompt": f"prompt {pid}", "principle": principle,
            "response_pos": pos, "response_neg": neg, "value_pos": margin / 2, "value_neg": -margin / 2,
            "margin": margin, "tokens": [3, 4], "truncated": [False, False], "candidates": 1, "dropped": dropped}


def test_examples_carry_label_and_principle_both_ways(principles):
    examples, stats = rlcd.examples([record("a", "Concise")], principles)
    pos, neg = examples
    concise = principles.by_name("Concise")
    assert (pos["chosen"], pos["rejected"]) == ("written under the principle", "written under the negation")
    assert pos["principles"] == [{"name": "Concise", "text": concise.definition, "negated": False}]
    assert (neg["chosen"], neg["rejected"]) == ("written under the negation", "written under the principle")
    assert neg["principles"] == [{"name": "Concise", "text": concise.negative_definition, "negated": True}]
    assert {pos["pair_id"], neg["pair_id"]} == {"rlcd-a"} and pos["id"] != neg["id"]
    assert pos["score_gap"] == neg["score_gap"] == 1.0 and pos["source"] == "rlcd"
    assert stats == {"records": 1, "pairs_kept": 1, "examples": 2, "dropped": {}}


def test_filters_are_counted(principles):
    records = [record("a", "Concise"), record("b", "Ethical", margin=-0.5),
               record("c", "Specific", dropped="identical"), record("d", "Creative", margin=0.2)]
    _, plain = rlcd.examples(records, principles)
    assert plain["pairs_kept"] == 3 and plain["dropped"] == {"identical": 1}
    _, confirmed = rlcd.examples(records, principles, confirm=True, min_margin=0.5)
    assert confirmed["pairs_kept"] == 1 and confirmed["dropped"] == {"identical": 1, "not_confirmed": 2}


def test_contrast_stats_measure_length_and_margin_per_principle():
    stats = rlcd.contrast_stats([record("a", "Concise", pos="Yes.", neg="Well, it is a long story really.", margin=2.0),
                                 record("b", "Concise", pos="No.", neg="No, and here is why.", margin=-1.0),
                                 record("c", "Ethical", dropped="too_short")])
    concise = stats["by_principle"]["Concise"]
    assert concise["n"] == 2 and concise["words_pos"] == 1.0 and concise["words_neg"] == 6.0
    assert concise["mean_margin"] == 0.5 and concise["confirmed"] == 0.5
    assert "Ethical" not in stats["by_principle"] and stats["overall"]["n"] == 2


def test_drawn_principle_depends_on_the_prompt_id_only(principles):
    a = rlcd.draw_principle(principles, {"id": "x1", "question_type": "general"}, seed=3)
    assert a is rlcd.draw_principle(principles, {"id": "x1", "question_type": "general"}, seed=3)
    drawn = {rlcd.draw_principle(principles, {"id": f"x{i}"}, seed=3).name for i in range(60)}
    sampled = {p.name for p in principles.principles if p.sampled}
    assert drawn <= sampled and len(drawn) > 3
