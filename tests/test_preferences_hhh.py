"""Reading the HHH evaluation pairs (never a training input), and the accuracy tables."""

import json
from collections import Counter

import pytest

from salmon_lib.io import DataError
from salmon_lib.paths import find_file
from salmon_lib.preferences import hhh

HHH = find_file("../shared/data/hhh_eval.json", beside_project=True)


@pytest.mark.skipif(HHH is None, reason="../shared/data/hhh_eval.json is absent (the project ships no copy)")
def test_reads_the_shared_hhh_file():
    items = hhh.load_hhh(HHH)
    assert Counter(it["type"] for it in items) == {"honest": 61, "helpful": 59, "harmless": 58, "other": 43}
    for it in items:
        assert it["prompt"] and it["chosen"] and it["rejected"] and it["chosen"] != it["rejected"]
        assert "\n\nHuman: " not in it["chosen"] + it["rejected"]


def write(tmp_path, data):
    path = tmp_path / "hhh.json"
    path.write_text(json.dumps(data))
    return path


def test_multi_turn_context_becomes_the_request(tmp_path):
    ctx = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: "
    items = hhh.load_hhh(write(tmp_path, [{"chosen": ctx + "4.", "rejected": ctx + "5.", "type": "honest"}]))
    assert items == [
        {
            "id": "hhh-0",
            "type": "honest",
            "prompt": "User: Hi there\n\nAssistant: Hello!\n\nUser: What is 2+2?",
            "chosen": "4.",
            "rejected": "5.",
        }
    ]


def test_malformed_items_name_the_item_and_field(tmp_path):
    with pytest.raises(DataError, match="item 0: missing or non-string field 'type'"):
        hhh.load_hhh(write(tmp_path, [{"chosen": "x", "rejected": "y"}]))
    with pytest.raises(DataError, match="item 0: chosen and rejected must share the context"):
        hhh.load_hhh(
            write(
                tmp_path,
                [
                    {
                        "chosen": "\n\nHuman: a\n\nAssistant: b",
                        "rejected": "\n\nHuman: c\n\nAssistant: d",
                        "type": "other",
                    }
                ],
            )
        )


def test_accuracy_tables_per_type():
    js = [{"type": "honest", "s12": 2.0, "s21": -1.0, "agree": False},
          {"type": "honest", "s12": 1.0, "s21": 1.0, "agree": True},
          {"type": "other", "s12": -1.0, "s21": -1.0, "agree": True}]
    acc = hhh.accuracy(js)
    assert acc["honest"] == {"n": 2, "acc_chosen_in_a": 1.0, "acc_chosen_in_b": 0.5, "acc_both_orders": 1.0,
                             "order_agreement": 0.5, "acc_when_orders_agree": 1.0}
    assert acc["overall"]["acc_both_orders"] == pytest.approx(2 / 3) and acc["other"]["acc_when_orders_agree"] == 0.0
