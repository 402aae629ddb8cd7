import json
import os

import pytest

from salmon_lib.io import DataError, RecordLog, atomic_write_json, iter_jsonl, read_jsonl, write_jsonl


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"v": 1})

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(path, {"v": Boom()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_jsonl_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1, "prompt": "a"}\n\n{"id": 2}\n{oops\n[1]\n{"id": 3, "prompt": 5}\n')
    with pytest.raises(DataError, match=r"x.jsonl:3: missing field 'prompt'"):
        read_jsonl(path, {"id": int, "prompt": str})
    errors = []
    good = list(iter_jsonl(path, {"id": int, "prompt": str}, errors=errors))
    assert [n for n, _ in good] == [1]
    assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in errors] == ["3", "4", "5", "6"]
    assert "field 'prompt' should be str, got int" in errors[-1]
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_record_log_resumes_and_drops_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    log = RecordLog(path)
    log.append([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    log.append([{"id": "a", "v": 99}])  # already done: ignored
    with open(path, "a") as f:
        f.write('{"id": "c", "v"')  # what a kill -9 mid-write leaves
    log = RecordLog(path)
    assert set(log.done) == {"a", "b"} and "c" not in log
    log.append([{"id": "c", "v": 3}])
    assert [r["id"] for r in log.records()] == ["a", "b", "c"]
    assert [r["v"] for r in read_jsonl(path)] == [1, 2, 3]


def test_write_jsonl_counts(tmp_path):
    assert write_jsonl(tmp_path / "o.jsonl", ({"i": i} for i in range(3))) == 3
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert os.path.getsize(tmp_path / "o.jsonl") > 0


def test_record_log_supersedes_records_whose_signature_changed(tmp_path):
    path = tmp_path / "r.jsonl"
    log = RecordLog(path)
    log.append([{"id": "a", "v": 1, "signature": "s1"}, {"id": "b", "v": 2, "signature": "s1"}])
    assert log.current("a", "s1") and not log.current("a", "s2") and not log.current("c", "s1")
    log.append([{"id": "a", "v": 9, "signature": "s1"}])  # current: ignored
    log.append([{"id": "a", "v": 3, "signature": "s2"}])  # made under other inputs: supersedes
    assert [r["v"] for r in log.records()] == [3, 2]
    # only the records current under the signatures asked for, in that order: stale and unasked ones are left out
    assert [r["id"] for r in log.records({"b": "s1", "a": "s1"})] == ["b"]
    assert [r["id"] for r in log.records({"b": "s1", "a": "s2"})] == ["b", "a"]
    reopened = RecordLog(path)
    assert reopened.current("a", "s2") and [r["v"] for r in read_jsonl(path)] == [3, 2]  # one line per id
