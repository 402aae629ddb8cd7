import json
from pathlib import Path

import pytest

from salmon_lib.prompts.readers import SourceReport, check_location, iter_rows, read_source

FIX = Path(__file__).parent / "fixtures" / "prompts"


def test_sharegpt_first_human_turn_and_errors_with_lines():
    recs, rep = read_source("sharegpt", str(FIX / "sharegpt.json"))
    assert [r["meta"]["conversation_id"] for r in recs] == ["a1", "a7", "a8", "a9"]
    assert recs[2]["prompt"].startswith("Explain recursion")  # text under `markdown`
    assert rep.skipped == {"fewer than 2 turns": 1, "first turn not from the user": 1}
    assert rep.errors == [
        f"{FIX / 'sharegpt.json'}:37: expected a JSON object, got str",
        f"{FIX / 'sharegpt.json'}:38: missing field 'conversations' (a list of turns)",
        f"{FIX / 'sharegpt.json'}:42: conversations[0]: field 'value' should be a string, got int",
    ]
    assert rep.rows == 9 and rep.kept == 4
    assert all(r["source"] == "sharegpt" and r["question_type"] == "general" for r in recs)


def test_sharegpt_syntax_error_keeps_rows_before_it(tmp_path):
    path = tmp_path / "sg.json"
    good = {"conversations": [{"from": "human", "value": "Hello there"}, {"from": "gpt", "value": "Hi"}]}
    path.write_text("[\n" + json.dumps(good) + ",\n" + json.dumps(good).replace("Hello", "Bye") + ",\n{oops\n]\n")
    recs, rep = read_source("sharegpt", str(path))
    assert [r["prompt"] for r in recs] == ["Hello there", "Bye there"]
    assert len(rep.errors) == 1 and rep.errors[0].startswith(f"{path}:4: not valid JSON")
    path.write_text('{"conversations": []}')
    recs, rep = read_source("sharegpt", str(path))
    assert recs == [] and "expected a JSON array" in rep.errors[0]


def test_sharegpt_jsonl_is_accepted(tmp_path):
    path = tmp_path / "sg.jsonl"
    conv = {"conversations": [{"from": "human", "value": "One"}, {"from": "gpt", "value": "Two"}]}
    path.write_text(json.dumps(conv) + "\nnot json\n")
    recs, rep = read_source("sharegpt", str(path))
    assert [r["prompt"] for r in recs] == ["One"] and rep.errors[0].startswith(f"{path}:2: not valid JSON")


def test_dolly_context_free_categories_only():
    recs, rep = read_source("dolly", str(FIX / "dolly.jsonl"))
    assert [r["meta"]["category"] for r in recs] == ["brainstorming", "open_qa", "creative_writing"]
    assert rep.skipped == {"category not selected": 1, "has a context passage": 1}
    assert [e.split(": ", 1)[0] for e in rep.errors] == [f"{FIX / 'dolly.jsonl'}:{n}" for n in (5, 6, 7)]
    assert "missing field 'instruction'" in rep.errors[1] and "'category' should be a string" in rep.errors[2]


def test_oasst1_roots_with_replies_in_file_order():
    recs, rep = read_source("oasst1", str(FIX / "oasst1.jsonl"))
    assert [r["prompt"] for r in recs] == ["How do volcanoes form?", "Wie backe ich Brot?",
                                          "Suggest a name for a bakery."]
    assert recs[1]["meta"]["lang"] == "de"
    assert rep.skipped == {"root without replies": 1}
    assert [e.split(": ", 1)[0] for e in rep.errors] == [f"{FIX / 'oasst1.jsonl'}:{n}" for n in (6, 7, 8, 9)]


def test_openorca_buckets_nli_and_null_cells():
    recs, rep = read_source("openorca", str(FIX / "openorca.parquet"))
    assert [r["meta"]["bucket"] for r in recs] == ["niv", "flan", "t0", "cot", "niv", "niv", "niv"]
    assert all(r["question_type"] == "reasoning" for r in recs)
    assert rep.skipped["NLI-style item"] == 2 and rep.skipped["id prefix not in niv/flan/t0/cot"] == 1
    assert rep.errors == [f"{FIX / 'openorca.parquet'}:row 8: field 'question' should be a string, got NoneType",
                          f"{FIX / 'openorca.parquet'}:row 9: field 'id' should be a string, got NoneType"]


def test_unreadable_parquet_and_missing_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    recs, rep = read_source("openorca", str(bad))
    assert recs == [] and "not a readable parquet file" in rep.errors[0]
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"id": ["niv.1"], "prompt": ["x"]}), nocol)
    recs, rep = read_source("openorca", str(nocol))
    assert recs == [] and "missing column(s) question" in rep.errors[0]


def test_locations_and_offline_hub(monkeypatch, tmp_path):
    (tmp_path / "x.csv").write_text("a")
    assert "expected a .json" in check_location(str(tmp_path / "x.csv"))
    assert "file not found" in check_location(str(tmp_path / "missing.json"))
    assert check_location("OpenAssistant/oasst1:validation") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rep = SourceReport("oasst1", "OpenAssistant/oasst1")
    assert list(iter_rows("OpenAssistant/oasst1", rep)) == []
    assert "Hub is unreachable" in rep.errors[0]
    with pytest.raises(ValueError, match="unknown source format"):
        read_source("alpaca", "x.json")
