"""The long-video benchmark adapters (Ego4D-NLQ, MAD, VUE-TR) on hand-written files in the official release shapes
(tests/fixtures/release/{ego4d_nlq,mad,vue_tr}; made-up values, one bad entry per kind of problem)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtg.cli import main
from vtg.data.adapters import convert_files
from vtg.data.records import read_jsonl
from vtg.errors import UserError

REL = Path(__file__).parent / "fixtures" / "release"
NLQ = REL / "ego4d_nlq"
MAD = REL / "mad" / "MAD_val.json"
VUE, VUE2 = REL / "vue_tr" / "VUE-TR_ground_truth.json", REL / "vue_tr" / "VUE-TRv2_ground_truth.json"

CLIP0 = "c0ffee00-1111-4222-8333-444444444444"
ANN1, ANN2 = "a1a1a1a1-0000-4000-8000-000000000001", "a1a1a1a1-0000-4000-8000-000000000002"


def by_id(records):
    return {r.id: r for r in records}


# ---------------------------------------------------------------- ego4d-nlq


def test_nlq_times_are_clip_relative_and_duration_is_the_clips():
    records, report = convert_files("ego4d-nlq", [NLQ / "nlq_val.json"], video_dir="clips")
    recs = by_id(records)
    r = recs[f"ego4d-nlq/val/{CLIP0}/{ANN1}/0"]
    raw = json.loads((NLQ / "nlq_val.json").read_text())["videos"][0]["clips"][0]["annotations"][0]
    q = raw["language_queries"][0]
    # clip_start_sec/clip_end_sec, not the full video's video_start_sec/video_end_sec (1222.75, 1231.0)
    assert r.moments == [[12.5, 20.75]] == [[q["clip_start_sec"], q["clip_end_sec"]]]
    assert q["video_start_sec"] == r.extra["clip_start"] + r.moments[0][0] == 1222.75
    assert (r.duration, r.video, r.split, r.source) == (480.0, f"clips/{CLIP0}.mp4", "val", "ego4d-nlq")
    assert r.extra["template"] == "Objects: Where is object X before / after event Y?"
    assert (r.extra["annotation_uid"], r.extra["query_idx"], r.extra["clip_uid"]) == (ANN1, 0, CLIP0)
    assert r.extra["video_uid"] == "5f1c2a8e-0b7d-4c1e-9a3b-111111111111" and r.extra["nlq_version"] == "1"
    assert r.extra["has_labels"] is True and "slot_x" not in r.extra
    # the id keeps the query's index in its annotation, even with rejected queries before it
    assert recs[f"ego4d-nlq/val/{CLIP0}/{ANN1}/4"].moments == [[470.0, 480.0]]  # 486 s clamped to the clip
    assert recs[f"ego4d-nlq/val/{CLIP0}/{ANN2}/0"].moments == [[100.0, 104.5]]
    assert recs[f"ego4d-nlq/val/{CLIP0}/{ANN1}/4"].extra["official_moments"] == [[470.0, 486.0]]  # as written
    # a zero-length window is kept for the official table, flagged (vtg's metrics leave it out)
    zero = recs[f"ego4d-nlq/val/{CLIP0}/{ANN1}/3"]
    assert zero.extra["zero_length_window"] is True and zero.moments[0][0] == zero.moments[0][1]
    assert len(recs) == 4 and report.fixes["clamped end to duration"] == 1


def test_nlq_rejects_named_by_json_path():
    f = NLQ / "nlq_val.json"
    _, report = convert_files("ego4d-nlq", [f])
    q0 = f"{f} videos[0].clips[0].annotations"
    errs = report.errors
    assert errs[0] == f"{q0}[0].language_queries[1]: no 'query' text (missing or empty; the official VSLNet " + (
        "preparation skips these too)"
    )
    assert errs[1].startswith(f"{q0}[0].language_queries[2]: no 'query' text")  # "   "
    assert errs[2].startswith(f"{q0}[1].language_queries[1]: id 'ego4d-nlq/val/{CLIP0}/{ANN2}/1': moment 0")
    assert "reversed" in errs[2]
    assert errs[3] == f"{q0}[1].language_queries[2]: no clip_start_sec/clip_end_sec: a query of a labelled file " + (
        "needs its response window"
    )
    assert errs[4] == (
        f"{f} videos[0].clips[1].annotations[0].language_queries[0]: the clip has no numeric "
        "video_start_sec/video_end_sec to take its duration from"
    )
    assert errs[5] == f"{f} videos[0].clips[2]: expected an object with 'clip_uid' and an 'annotations' list"
    assert errs[6] == (
        f"{f} videos[1].clips[0].annotations[0]: expected an object with 'annotation_uid' and a 'language_queries' list"
    )
    assert errs[7] == f"{f} videos[2]: expected an object with 'video_uid' and a 'clips' list"
    assert len(errs) == 8 and report.n_read == 12
    assert "1 zero-length response window(s) kept, flagged zero_length_window=true" in report.summary()


def test_nlq_v2_shape_duration_from_video_times_not_clip_fields():
    recs = by_id(convert_files("ego4d-nlq", [NLQ / "nlq_train.json"])[0])
    r = recs["ego4d-nlq/train/c0ffee00-1111-4222-8333-777777777777/b2b2b2b2-0000-4000-8000-000000000001/0"]
    # video_end_sec - video_start_sec = 480.0; the clip-level clip_end_sec (480.03) is not used
    assert (r.duration, r.moments, r.extra["nlq_version"]) == (480.0, [[0.0, 43.6657]], "2")
    assert (r.extra["clip_start"], r.extra["clip_end"]) == (0.5, 480.5)
    assert len(recs) == 2 and r.split == "train"


def test_nlq_unannotated_test_is_unlabelled_not_absent():
    f = NLQ / "nlq_test_unannotated.json"
    records, report = convert_files("ego4d-nlq", [f])
    assert [r.id.rsplit("/", 1)[1] for r in records] == ["0", "1"]
    assert all(r.moments == [] and r.extra["has_labels"] is False and r.split == "test" for r in records)
    assert records[0].query == "What did I put in the sack?" and "template" not in records[0].extra
    assert report.errors == [
        f"{f} videos[0].clips[0].annotations[0].language_queries[2]: no 'query' text (missing or empty; the "
        "official VSLNet preparation skips these too)"
    ]
    assert "2 record(s) come from an unannotated (test) file" in report.summary()


# ---------------------------------------------------------------- mad


def test_mad_uses_ext_timestamps_in_seconds_and_movie_file_names():
    records, report = convert_files("mad", [MAD], video_dir="/movies", video_ext=".mkv")
    recs = by_id(records)
    r = recs["mad/val/12"]
    assert r.moments == [[2009.6, 2011.5]] and r.extra["timestamps"] == [2010.2, 2010.9]  # ext_timestamps, not these
    assert (r.duration, r.video, r.query) == (6120.4, "/movies/0001_A_MADE_UP_FILM.mkv", "He glances at the clock.")
    assert (r.split, r.source, r.extra["movie"]) == ("val", "mad", "0001_A_MADE_UP_FILM")
    assert recs["mad/val/11"].moments == [[162.547, 165.809]]
    assert recs["mad/val/13"].moments == [[5401.0, 5410.75]]  # ends past the movie: clamped
    assert len(recs) == 3 and report.fixes["clamped end to duration"] == 1


def test_mad_rejects_named_by_key():
    _, report = convert_files("mad", [MAD])
    assert report.errors == [
        f"{MAD} key '14': no 'ext_timestamps' (the window MAD's own evaluation scores against)",
        f"{MAD} key '15': id 'mad/val/15': moment 0 [90.0, 88.0] is reversed (start > end); fix the data or "
        "convert with --fix-reversed",
        f"{MAD} key '16': id 'mad/val/16': 'query' is empty",
        f"{MAD} key '17': expected an object with a 'movie' name",
    ]


# ---------------------------------------------------------------- vue-tr


def test_vue_tr_several_spans_absent_and_categories():
    records, report = convert_files("vue-tr", [VUE, VUE2], video_dir="yt")
    recs = by_id(records)
    many = recs["vue-tr/test/1"]
    assert many.moments == [[2.0, 5.0], [12.0, 20.0], [27.5, 30.0]] and many.duration == 32.625
    assert (many.video, many.source, many.split) == ("yt/aB3dE5fG7hI.mp4", "vue-tr", "test")
    assert {k: many.extra[k] for k in ("duration_category", "query_format", "query_modality", "task")} == {
        "duration_category": "ultra-short",
        "query_format": "keyword",
        "query_modality": "vision",
        "task": "temporal_retrieval",
    }
    assert (many.extra["query_id"], many.extra["video_id"]) == (1, "aB3dE5fG7hI")
    assert recs["vue-tr/test/2"].moments == []  # empty gt: the query does not happen
    assert recs["vue-tr/test/5"].moments == [[88.0, 95.0]]  # 99 clamped to the 95 s video
    # VUE-TR-V2 reuses query ids 0, 1: the source keeps the ids apart
    assert recs["vue-tr-v2/test/1"].moments == [[22.0, 211.0], [300.0, 310.5]]
    assert recs["vue-tr-v2/test/0"].source == "vue-tr-v2" and recs["vue-tr/test/0"].moments == [[0.0, 32.0]]
    assert len(recs) == 6 and not any("duplicate" in e for e in report.errors)


def test_vue_tr_rejects_named_by_index_and_split_option():
    records, report = convert_files("vue-tr", [VUE], split="bench")
    assert {r.id for r in records} == {"vue-tr/bench/0", "vue-tr/bench/1", "vue-tr/bench/2", "vue-tr/bench/5"}
    assert report.errors == [
        f"{VUE} index 3 (query_id 3): 'gt' must be a list of [start, end] spans, got '12-20'",
        f"{VUE} index 4 (query_id None): expected an object with 'query_id', 'video_id' and 'gt'",
        f"{VUE} index 6 (query_id 6): id 'vue-tr/bench/6': moment 0 [40, 30] is reversed (start > end); fix the "
        "data or convert with --fix-reversed",
    ]


# ---------------------------------------------------------------- wrong files, CLI


@pytest.mark.parametrize(
    "fmt, files, expected",
    [
        ("ego4d-nlq", [MAD], "expected Ego4D NLQ"),
        ("ego4d-nlq", [VUE], "expected Ego4D NLQ .* got a list"),
        ("mad", [NLQ / "nlq_val.json"], "expected MAD annotations"),
        ("vue-tr", [MAD], "expected VUE-TR ground truth"),
    ],
)
def test_wrong_file_for_format(fmt, files, expected):
    with pytest.raises(UserError, match=expected):
        convert_files(fmt, files)


def test_vue_tr_results_file_is_not_ground_truth(tmp_path):
    preds = tmp_path / "results_Model.json"  # the evaluator's prediction shape: "answer", no "gt"
    preds.write_text(json.dumps([{"query_id": 0, "video_id": "x", "duration": 9.0, "query": "q", "answer": [[1, 2]]}]))
    with pytest.raises(UserError, match="expected VUE-TR ground truth"):
        convert_files("vue-tr", [preds])


def test_cli_converts_a_long_benchmark(tmp_path, capsys):
    out = tmp_path / "vue.jsonl"
    assert main(["data", "convert", "vue-tr", str(VUE2), "--out", str(out), "--video-dir", "videos"]) == 0
    assert "2 read, 2 valid, 0 rejected" in capsys.readouterr().out
    records, report = read_jsonl(out)
    assert not report.errors and records[1].moments == [[22.0, 211.0], [300.0, 310.5]]
    assert records[1].extra["query_modality"] == "vision"
