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


def test_jsonl_lines_that_are_no_text_are_reported_by_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "caf\xe9"}\n{"id": "\\ud800"}\n{"id": {"deep": ["ok", "\\udc00"]}}\n'
                     b'{"id": "\\u00e9 is fine"}\n')
    errors = []
    good = list(iter_jsonl(path, errors=errors))
    assert [n for n, _ in good] == [1, 5]
    assert errors == [f"{path}:2: not UTF-8 text (byte 0xe9 at column 12)",
                      f"{path}:3: field 'id' holds a lone surrogate escape such as \\ud800 (not text)",
                      f"{path}:4: field 'id.deep[1]' holds a lone surrogate escape such as \\ud800 (not text)"]
    with pytest.raises(DataError, match=r"x.jsonl:2: not UTF-8 text"):
        read_jsonl(path)


def test_readers_name_the_path_of_a_folder_or_a_file_that_is_not_utf8(tmp_path):
    from salmon_lib.io import read_json, read_text, read_yaml

    (tmp_path / "latin1.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(DataError, match=r"latin1.yaml:2: not UTF-8 text \(byte 0xe9 at column 7\)"):
        read_yaml(tmp_path / "latin1.yaml")
    for reader in (read_text, read_json, read_yaml, read_jsonl):
        with pytest.raises(DataError, match=f"{tmp_path}: is a folder, expected a"):
            reader(tmp_path)
    (tmp_path / "t.yaml").write_text("a: [1,\n")
    with pytest.raises(DataError, match=r"t.yaml:2: not valid YAML"):
        read_yaml(tmp_path / "t.yaml")
    (tmp_path / "out.json").mkdir()
    with pytest.raises(DataError, match="out.json: is a folder, so the file of that name cannot be written"):
        atomic_write_json(tmp_path / "out.json", {})


def test_record_log_refuses_a_damaged_middle_instead_of_dropping_the_rest(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(DataError, match=r"r.jsonl:2: not a record with 'id' in the middle of the file"):
        RecordLog(path)
    assert path.read_text() == '{"id": "a"}\n{"id": \n{"id": "c"}\n'


def test_temp_files_of_killed_writes_are_cleaned(tmp_path):
    from salmon_lib.io import clean_temp_files

    keep = [tmp_path / "a.jsonl", tmp_path / ".lock", tmp_path / "notes.tmp", tmp_path / ".rm.old" / "w"]
    gone = [tmp_path / ".a.jsonl.x1y2.tmp", tmp_path / "sub" / ".b.json.z.tmp", tmp_path / ".rm.staging" / "w"]
    for p in keep + gone:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    removed = clean_temp_files(tmp_path)
    assert sorted(removed) == sorted([gone[0], gone[1], gone[2].parent])
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)


@pytest.mark.parametrize("fails", [True, False])
def test_a_fresh_start_that_fails_puts_the_old_folder_back(tmp_path, fails):
    from salmon_lib.io import aside_path, restored_on_failure

    folder = tmp_path / "ckpt"
    (folder / "checkpoint-2").mkdir(parents=True)

    def fresh_start():
        with restored_on_failure(folder):
            os.replace(folder, aside_path(folder))
            (folder / "checkpoint-1").mkdir(parents=True)
            if fails:
                raise RuntimeError("training failed")

    if fails:
        with pytest.raises(RuntimeError):
            fresh_start()
    else:
        fresh_start()
    assert sorted(p.name for p in folder.iterdir()) == (["checkpoint-2"] if fails else ["checkpoint-1"])
    assert not aside_path(folder).exists()


def test_replace_folder_swaps_in_the_staged_folder(tmp_path):
    from salmon_lib.io import replace_folder

    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "old.txt").write_text("old")
    (tmp_path / ".rm.staging").mkdir()
    (tmp_path / ".rm.staging" / "new.txt").write_text("new")
    replace_folder(tmp_path / ".rm.staging", tmp_path / "rm")
    assert [p.name for p in (tmp_path / "rm").iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]
