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
        ([[1.0]], "must be a pair of finite numbers"),
        ([["a", "b"]], "must be a pair of finite numbers"),
    ],
)
def test_bad_moments_rejected_with_line_and_id(moments, message):
    with pytest.raises(RecordError, match="^line 3 id 'a': .*" + re.escape(message)):
        validate(rec(moments=moments), line=3)


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
