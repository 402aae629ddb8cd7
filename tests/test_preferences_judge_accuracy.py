"""The judge's accuracy tables on the HHH pairs (reading them: tests/test_hhh_data.py)."""

import pytest

from salmon_lib.preferences import judge_accuracy


def test_accuracy_tables_per_type():
    js = [{"type": "honest", "s12": 2.0, "s21": -1.0, "agree": False},
          {"type": "honest", "s12": 1.0, "s21": 1.0, "agree": True},
          {"type": "other", "s12": -1.0, "s21": -1.0, "agree": True}]
    acc = judge_accuracy.accuracy(js)
    assert acc["honest"] == {"n": 2, "acc_chosen_in_a": 1.0, "acc_chosen_in_b": 0.5, "acc_both_orders": 1.0,
                             "order_agreement": 0.5, "acc_when_orders_agree": 1.0}
    assert acc["overall"]["acc_both_orders"] == pytest.approx(2 / 3) and acc["other"]["acc_when_orders_agree"] == 0.0
