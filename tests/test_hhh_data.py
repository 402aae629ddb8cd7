"""The HHH evaluation pairs (never a training input), read one way by every stage."""

import json
from collections import Counter
from pathlib import Path

import pytest

from salmon_lib import hhh_data
from salmon_lib.chat_format import get_format
from salmon_lib.io import DataError
from salmon_lib.paths import find_file

SHARED = find_file("../shared/data/hhh_eval.json", beside_project=True)
FIXTURE = Path(__file__).parent / "fixtures" / "hhh_like.json"


@pytest.mark.skipif(SHARED is None, reason="../shared/data/hhh_eval.json is absent (the project ships no copy)")
def test_reads_the_shared_hhh_file():
    items = hhh_data.load_hhh(SHARED)
    assert Counter(it["type"] for it in items) == {"honest": 61, "helpful": 59, "harmless": 58, "other": 43}
    for it in items:
        assert it["prompt"] and it["chosen"] and it["rejected"] and it["chosen"] != it["rejected"]
        assert "Human: " not in it["prompt"][:7] and "\n\nHuman: " not in it["chosen"] + it["rejected"]


def write(tmp_path, data):
    path = tmp_path / "hhh.json"
    path.write_text(json.dumps(data))
    return path


def test_multi_turn_context_becomes_the_request(tmp_path):
    ctx = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: "
    items = hhh_data.load_hhh(write(tmp_path, [{"chosen": ctx + "4.", "rejected": ctx + "5.", "type": "honest"}]))
    assert items == [{"id": "hhh-0", "type": "honest", "chosen": "4.", "rejected": "5.",
                      "prompt": "User: Hi there\n\nAssistant: Hello!\n\nUser: What is 2+2?"}]


def test_malformed_items_name_the_item_and_field(tmp_path):
    with pytest.raises(DataError, match="item 0: missing or non-string field 'type'"):
        hhh_data.load_hhh(write(tmp_path, [{"chosen": "x", "rejected": "y"}]))
    with pytest.raises(DataError, match="item 0: chosen and rejected must share the context"):
        hhh_data.load_hhh(write(tmp_path, [{"chosen": "\n\nHuman: a\n\nAssistant: b",
                                       "rejected": "\n\nHuman: c\n\nAssistant: d", "type": "other"}]))


def test_settings_resolve_or_say_why_they_are_skipped(tmp_path):
    assert hhh_data.hhh_source("") == (None, "the HHH setting is empty")
    source, why = hhh_data.hhh_source(str(tmp_path / "absent.json"))
    assert source is None and "file not found" in why
    assert hhh_data.hhh_source(str(FIXTURE)) == (str(FIXTURE), None)
    items = hhh_data.load_hhh(FIXTURE)
    assert hhh_data.sample_hhh(items, 2, seed=1) == hhh_data.sample_hhh(items, 2, seed=1)
    assert [it["id"] for it in hhh_data.sample_hhh(items, 0, seed=1)] == ["hhh-0", "hhh-1", "hhh-2"]
    assert hhh_data.types_in_order(["other", "honest", "helpful", "harmless", "x"]) == list(hhh_data.HHH_TYPES) + ["x"]


class Recorder:
    """A reward model that records what it is asked to score (longer answers score higher)."""

    def __init__(self):
        self.prompts = set()

    def score(self, items, batch_size=16, progress=False):
        self.prompts |= {prompt for prompt, _, _ in items}
        return [float(len(response)) for _, response, _ in items]


class JudgeRecorder:
    def __init__(self):
        self.requests = set()

    def score_options(self, prompts, options, adapter=None):
        self.requests |= {p.split("### Request\n")[1].split("\n\n### Output (a)")[0] for p in prompts}
        return [[-0.5, -1.0] for _ in prompts]


def test_judge_and_reward_model_read_the_same_bare_requests_in_one_type_order():
    """Stage 03's judge and stage 04's reward model read the same bare HHH request (no "Human: ..."
    prefix, as in the training data) and report the types in the same order."""
    from salmon_lib.preferences.judge_accuracy import accuracy, judge_hhh
    from salmon_lib.reward.evaluate import hhh_accuracy

    rm = Recorder()
    result = hhh_accuracy(rm, str(FIXTURE), {"helpful": "Be helpful.", "honest": "Be honest."})
    judge = JudgeRecorder()
    items = hhh_data.load_hhh(FIXTURE)
    principles = {t: ("P", "Be good.") for t in hhh_data.HHH_TYPES}
    judged = accuracy(judge_hhh(judge, get_format("chatml"), items, principles))
    bare = {"How do I boil an egg?", "Tell me a fact.",
            "User: Hi\n\nAssistant: Hello! How can I help?\n\nUser: Name a colour."}
    assert rm.prompts == judge.requests == bare
    assert list(result["by_type"]) == [k for k in judged if k != "overall"] == ["helpful", "honest", "other"]
