"""Validation rules of the record schema (vtg.data.records): what is fixed and counted, what is rejected."""

from __future__ import annotations

import json
import re

import pytest

from vtg.data.records import (
    RecordError,
    ValidationReport,
    load_records,
    read_jsonl,
    to_hf_dataset,
    validate,
    validate_all,
    write_jsonl,
)


def rec(**kw):
    d = {"id": "a", "video": "v.mp4", "duration": 10.0, "query": "q", "moments": [[1.0, 2.0]]}
    d.update(kw)
    return d


def test_end_past_duration_and_negative_start_clamped_and_counted():
    report = ValidationReport()
    r = validate(rec(moments=[[-0.5, 3.0], [8.0, 12.5]]), line=7, report=report)
    assert r.moments == [[0.0, 3.0], [8.0, 10.0]]
    assert report.fixes == {"clamped negative start to 0": 1, "clamped end to duration": 1}
    assert report.fix_examples[0].startswith("line 7 id 'a'")


@pytest.mark.parametrize(
    "moments, message",
    [
        ([[3.0, 3.0]], "moment 0 [3.0, 3.0] has zero length"),
        ([[1.0, 2.0], [5.0, 4.0]], "moment 1 [5.0, 4.0] is reversed"),
        ([[10.0, 12.0]], "starts at or after the duration 10s"),
        ([[-5.0, -1.0]], "ends at or before 0 s: nothing of it is in the video"),  # clamping would empty it
        ([[-3.0, 0.0]], "ends at or before 0 s"),
        ([[1.0]], "must be a pair of finite numbers"),
        ([["a", "b"]], "must be a pair of finite numbers"),
    ],
)
def test_bad_moments_rejected_with_line_and_id(moments, message):
    with pytest.raises(RecordError, match="^line 3 id 'a': .*" + re.escape(message)):
        validate(rec(moments=moments), line=3)


def test_flagged_zero_length_window_is_kept_for_the_official_table():
    r = validate({**rec(moments=[[3.0, 3.0]]), "zero_length_window": True})
    assert r.moments == [[3.0, 3.0]] and r.extra["zero_length_window"] is True
    assert validate({**rec(moments=[[0.0, 0.0]]), "zero_length_window": True}).moments == [[0.0, 0.0]]
    for bad in ([[-1.0, -1.0]], [[10.0, 10.0]], [[4.0, 3.0]]):  # before 0, at the end, reversed: still rejected
        with pytest.raises(RecordError):
            validate({**rec(moments=bad), "zero_length_window": True})
    with pytest.raises(RecordError, match="zero length"):
        validate({**rec(moments=[[3.0, 3.0]]), "zero_length_window": "yes"})  # only a true flag


def test_reversed_swapped_only_when_asked():
    report = ValidationReport()
    assert validate(rec(moments=[[5.0, 4.0]]), report=report, fix_reversed=True).moments == [[4.0, 5.0]]
    assert report.fixes["swapped reversed moment"] == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"query": "  "}, "'query' is empty"),
        ({"duration": 0}, "'duration' must be > 0"),
        ({"duration": "long"}, "'duration' must be a number"),
        ({"id": ""}, "'id' must be a non-empty string"),
    ],
)
def test_bad_fields_rejected(change, message):
    with pytest.raises(RecordError, match=message):
        validate(rec(**change))


def test_duplicate_ids_reported_and_empty_moments_allowed():
    records, report = validate_all([(1, rec()), (2, rec(moments=[])), (3, rec(id="b"))])
    assert len(records) == 3 and records[1].moments == []
    assert report.errors == ["duplicate ids (kept, but ids must be unique): ['a']"]


def test_read_jsonl_names_bad_lines_and_load_records_raises(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(rec()) + "\n\n{oops\n" + json.dumps(rec(id="c", moments=[[2, 2]])) + "\n")
    records, report = read_jsonl(f)
    assert [r.id for r in records] == ["a"] and report.n_read == 3
    assert report.errors[0].startswith("line 3: not valid JSON") and report.errors[1].startswith("line 4 id 'c'")
    with pytest.raises(RecordError, match=r"2 invalid record\(s\)"):
        load_records(f)


def test_hf_dataset_keeps_extras_missing_from_the_first_row():
    rs = [validate(rec()), validate(rec(id="b", saliency=[1, 2]))]
    ds = to_hf_dataset(rs)
    assert ds["saliency"] == [None, [1, 2]]


def test_jsonl_lines_end_at_newline_only(tmp_path):
    """vtg writes U+2028, U+2029 and U+0085 unescaped inside JSON strings; a reader that split lines on them (as
    str.splitlines does) dropped the record and shifted every later line number."""
    f = tmp_path / "r.jsonl"
    odd = "a\u2028b\u2029c\u0085d\re"
    write_jsonl([rec(query=odd), rec(id="b"), rec(id="c", moments=[[3, 3]])], f)
    records, report = read_jsonl(f)
    assert [r.id for r in records] == ["a", "b"] and records[0].query == odd
    assert report.errors == ["line 3 id 'c': moment 0 [3, 3] has zero length"]
    f.write_bytes(f.read_bytes() + b'{"id": "\xff"}\n')
    _, report = read_jsonl(f)
    assert report.errors[-1] == "line 4: not UTF-8 (invalid start byte at byte 8 of the line)"
    from vtg.data.curate import read_scores
    from vtg.eval.qvhighlights import load_jsonl

    g = tmp_path / "q.jsonl"
    g.write_text(json.dumps({"qid": 1, "query": odd}, ensure_ascii=False) + "\n" + json.dumps({"qid": 2}) + "\n")
    assert [d["qid"] for d in load_jsonl(g)] == [1, 2]
    scores = tmp_path / "s.jsonl"
    scores.write_text(
        "".join(
            json.dumps({"id": i, "score": 0.5, "absent": False, "note": odd}, ensure_ascii=False) + "\n"
            for i in ("a", "b")
        )
    )
    assert [d["id"] for d in read_scores(scores, records)] == ["a", "b"]


def test_every_rejected_line_is_reported(tmp_path):
    f = tmp_path / "r.jsonl"
    write_jsonl([rec(id=str(i), moments=[[5, 5]]) for i in range(25)] + [rec(id="ok")], f)
    with pytest.raises(RecordError) as e:
        load_records(f)
    assert "… and 15 more rejected; every rejected line: " in str(e.value)
    full = (tmp_path / "r.jsonl.rejected.txt").read_text().splitlines()
    assert len(full) == 25 and full[-1].startswith("line 25 id '24'")


def test_duplicate_ids_in_a_file_are_reported(tmp_path):
    f = tmp_path / "r.jsonl"
    write_jsonl([rec(), rec()], f)
    assert read_jsonl(f)[1].errors == ["duplicate ids (kept, but ids must be unique): ['a']"]
