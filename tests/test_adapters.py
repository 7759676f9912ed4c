"""The public data set adapters on hand-written files in the official release shapes (tests/fixtures/release)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vtg.cli import main
from vtg.data.adapters import FORMATS, convert_files, didemo_consensus
from vtg.data.records import from_hf_dataset, read_jsonl, to_hf_dataset, write_jsonl
from vtg.errors import UserError

REL = Path(__file__).parent / "fixtures" / "release"
CHARADES = [REL / "charades" / "charades_sta_test.txt", REL / "charades" / "Charades_v1_test.csv"]


def by_id(records):
    return {r.id: r for r in records}


def clean(fmt, files, **kw):
    records, report = convert_files(fmt, files, **kw)
    assert not report.errors, report.summary()
    return by_id(records), report


# ---------------------------------------------------------------- each format, exact seconds


def test_charades_durations_from_quoted_csv_and_end_clamped():
    recs, report = clean("charades-sta", CHARADES, video_dir="videos")
    a, b, c = recs["charades-sta/test/000001"], recs["charades-sta/test/000002"], recs["charades-sta/test/000003"]
    assert (a.video, a.duration, a.moments, a.query) == (
        "videos/AB12C.mp4",
        30.25,
        [[3.1, 9.8]],
        "person opens the door.",
    )
    assert b.moments == [[25.0, 30.25]]  # 32.6 lies past the 30.25 s video
    assert c.duration == 12.5 and c.extra["vid"] == "XY34Z"  # row whose quoted fields hold commas and "" quotes
    assert report.fixes["clamped end to duration"] == 1 and report.n_ok == 3


def test_charades_unknown_video_and_malformed_line_named_by_line(tmp_path):
    txt = tmp_path / "charades_sta_train.txt"
    txt.write_text("AB12C 1.0 2.0##ok.\nZZZZZ 1.0 2.0##not in csv.\nAB12C 1.0##no end\nAB12C 5 3##reversed.\n")
    records, report = convert_files("charades-sta", [txt, CHARADES[1]])
    assert [r.id for r in records] == ["charades-sta/train/000001"]
    errs = "\n".join(report.errors)
    assert f"{txt}: line 2: video id 'ZZZZZ'" in errs and "Charades_v1_test.csv" in errs
    assert f"{txt}: line 3: expected 'VIDEOID START END##sentence'" in errs
    assert f"{txt}: line 4 id 'charades-sta/train/000004': moment 0" in errs and "reversed" in errs
    fixed, rep2 = convert_files("charades-sta", [txt, CHARADES[1]], fix_reversed=True)
    assert by_id(fixed)["charades-sta/train/000004"].moments == [[3.0, 5.0]]
    assert rep2.fixes["swapped reversed moment"] == 1 and rep2.n_rejected == 2


def test_activitynet_strips_sentences_and_keeps_val1_val2_apart():
    recs, _ = clean("activitynet", [REL / "activitynet" / "val_1.json", REL / "activitynet" / "val_2.json"])
    r = recs["activitynet/val_2/v_QOlSCBRmfWX/1"]
    assert r.query == "The girl dances around the room while the camera captures her movements."
    assert (r.duration, r.moments, r.split, r.video) == (82.73, [[17.37, 60.81]], "val_2", "v_QOlSCBRmfWX.mp4")
    assert recs["activitynet/val_1/v_QOlSCBRmfWX/0"].moments == [[0.0, 21.5]]
    assert recs["activitynet/val_1/v_QOlSCBRmfWX/0"].split == "val_1"
    assert len(recs) == 6


def test_tacos_frames_to_seconds_with_non_integer_fps():
    recs, _ = clean("tacos", [REL / "tacos" / "test.json"], video_dir="/data/tacos")
    r = recs["tacos/test/s13-d21/0"]
    assert r.video == "/data/tacos/s13-d21.avi"  # the release's file name is kept
    assert r.duration == pytest.approx(7346 / 29.4) == pytest.approx(249.8639455782313)
    assert r.moments[0] == pytest.approx([4.761904761904762, 11.904761904761905])
    assert recs["tacos/test/s27-d50/0"].moments[0] == pytest.approx([0.0, 20.0])
    assert r.extra["fps"] == 29.4 and r.extra["frames"] == [140, 350]


def test_didemo_mode_consensus_ties_and_all_option():
    f = [REL / "didemo" / "val_data.json"]
    recs, report = clean("didemo", f)
    assert recs["didemo/val/14"].moments == [[15.0, 20.0]]  # [3,3] three times out of four
    assert recs["didemo/val/27"].moments == [[5.0, 10.0]]  # tie [1,1] vs [2,3]: earliest wins
    assert recs["didemo/val/31"].moments == [[5.0, 10.0]]  # tie [1,1] vs [1,2]: same start, shortest wins
    r42 = recs["didemo/val/42"]
    assert (r42.duration, r42.moments) == (25.0, [[20.0, 25.0]])  # num_segments 5 → 25 s
    assert (
        recs["didemo/val/14"].duration == 30.0
        and recs["didemo/val/14"].video == "12090392@N02_13482799053_87ef417396.mov"
    )
    assert "no durations: 4 record(s)" in report.summary()
    every, rep_all = clean("didemo", f, didemo_consensus="all")
    assert every["didemo/val/14"].moments == [[15.0, 20.0], [15.0, 25.0]]
    assert every["didemo/val/42"].moments == [[15.0, 25.0], [20.0, 25.0], [20.0, 25.0]]  # [4,5] → [20,30] clamped
    assert rep_all.fixes["clamped end to duration"] == 1


def test_didemo_durations_file_caps_at_30(tmp_path):
    d = tmp_path / "d.csv"
    d.write_text(
        "video,duration\n12090392@N02_13482799053_87ef417396.mov,22.5\n54322086@N00_2408598493_aca5a6ea3d,48\n"
    )
    recs, report = clean("didemo", [REL / "didemo" / "val_data.json"], durations=str(d))
    assert recs["didemo/val/14"].duration == 22.5 and recs["didemo/val/14"].moments == [[15.0, 20.0]]
    assert recs["didemo/val/27"].duration == 30.0  # matched by stem, capped at 30 s
    assert "no durations: 2 record(s)" in report.summary()


def test_didemo_consensus_rule_directly():
    assert didemo_consensus([(2, 2), (0, 3), (0, 1), (2, 2), (0, 1)]) == [(0, 1)]
    assert didemo_consensus([(4, 4)]) == [(4, 4)]
    assert didemo_consensus([(1, 2), (0, 0), (1, 2)], "all") == [(0, 0), (1, 2)]


def test_qvhighlights_multi_windows_saliency_and_unlabelled_test():
    q = REL / "qvhighlights"
    recs, report = clean("qvhighlights", [q / "highlight_val_release.jsonl", q / "highlight_test_release.jsonl"])
    v = recs["qvhighlights/val/2579"]
    assert v.moments == [[0.0, 12.0], [80.0, 84.0]] and v.extra["has_labels"] is True
    assert v.extra["saliency_scores"][1] == [3, 3, 4] and v.extra["relevant_clip_ids"][-1] == 41
    assert (v.extra["qid"], v.extra["vid"], v.video) == (2579, "NUsG9BgSes0_210.0_360.0", "NUsG9BgSes0_210.0_360.0.mp4")
    assert recs["qvhighlights/val/5774"].moments == [[120.0, 126.0]]  # clamped to duration 126
    t = recs["qvhighlights/test/9769"]
    assert t.moments == [] and t.extra["has_labels"] is False and t.split == "test"
    assert "2 record(s) have no labels" in report.summary()


def test_timelens_bench_pairs_queries_with_spans():
    recs, report = convert_files(
        "timelens-bench", [REL / "timelens" / "charades-timelens.json"], video_dir="/data/tl/videos/charades"
    )
    recs = by_id(recs)
    assert sorted(recs) == ["charades-timelens/3MSZA/0", "charades-timelens/3MSZA/1", "charades-timelens/KVVE2/0"]
    r = recs["charades-timelens/3MSZA/1"]
    assert (r.query, r.moments, r.duration) == ("a person is putting a book on a shelf", [[0.0, 6.9]], 30.96)
    assert (r.video, r.split, r.source) == ("/data/tl/videos/charades/3MSZA.mp4", "test", "charades-timelens")
    assert len(report.errors) == 1 and "1 spans but 2 queries" in report.summary()
    with pytest.raises(UserError, match="expected TimeLens-Bench JSON"):
        convert_files("timelens-bench", [REL / "activitynet" / "val_2.json"])


def test_timerft_and_tvgbench_answer_string():
    t = REL / "timerft"
    recs, _ = clean("timerft", [t / "train_2k5.json", t / "tvgbench.json"], video_dir="vids")
    a = recs["timerft/train/000001"]
    assert (a.video, a.duration, a.moments) == ("vids/4jujhM5qhEX_00:00:39:000_00:01:24:700.mp4", 45.7, [[34.9, 41.9]])
    assert (a.extra["clip_start"], a.extra["clip_end"]) == (39.0, 84.7) and "video_start" not in a.extra
    assert "pred" not in a.extra  # a model's prediction, not ground truth
    b = recs["timerft/test/000000"]
    assert (b.query, b.moments, b.duration) == ("a person was sitting at a table.", [[13.4, 28.1]], 30.12)
    assert b.extra["dataset_name"] == "charades" and b.source == "timerft"
    raw, _ = clean("timerft", [t / "train_2k5.json"])
    assert raw["timerft/train/000000"].video == "./dataset/timer1/videos/timerft_data/QtWT8rxUuNX.mp4"


def test_timerft_jsonl_and_bad_answer(tmp_path):
    f = tmp_path / "tvg.jsonl"
    lines = [
        {"path": "a.mp4", "question": "q", "answer": "1.5-3", "duration": 10},
        {"path": "b.mp4", "question": "q", "answer": "soon", "duration": 10},
        {"video": "c.mp4", "sentence": "q", "timestamp": "x", "duration": 10},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    records, report = convert_files("timerft", [f], split="test")
    assert [r.moments for r in records] == [[[1.5, 3.0]]]
    assert report.errors == [
        f"{f}: line 2: 'answer' must be 'START-END' seconds like '13.4-28.1', got 'soon'",
        f"{f}: line 3 id 'timerft/test/000003': moment 0 must be a pair of finite numbers [start, end], got 'x'",
    ]


def test_jsonl_records_validated():
    recs, _ = clean("jsonl", [REL / "vtg" / "vtg_records.jsonl"], split="val")
    assert recs["mine/1"].moments == [] and recs["mine/1"].split == "val" and recs["mine/0"].extra["kind"] == "single"


# ---------------------------------------------------------------- bad input


def test_unknown_format_lists_valid_ones():
    with pytest.raises(UserError, match="unknown format 'charades'; valid formats: charades-sta, activitynet"):
        convert_files("charades", CHARADES)


def test_missing_file_named():
    with pytest.raises(UserError, match="nope.json: file not found"):
        convert_files("activitynet", ["nope.json"])


@pytest.mark.parametrize(
    "fmt, files, expected",
    [
        ("charades-sta", [REL / "activitynet" / "val_2.json", CHARADES[1]], "this is JSON; charades-sta expects"),
        ("charades-sta", [CHARADES[0]], "charades-sta needs"),
        ("activitynet", [REL / "didemo" / "val_data.json"], "expected ActivityNet Captions JSON"),
        ("tacos", [REL / "activitynet" / "val_2.json"], "expected the 2D-TAN TACoS JSON"),
        ("didemo", [REL / "tacos" / "test.json"], "expected DiDeMo"),
        ("qvhighlights", [REL / "timerft" / "tvgbench.json"], "this is a JSON array; expected JSONL"),
        ("activitynet", [CHARADES[0]], "not valid JSON"),
    ],
)
def test_wrong_file_for_format(fmt, files, expected):
    with pytest.raises(UserError, match=expected):
        convert_files(fmt, files)


def test_csv_without_length_column(tmp_path):
    bad = tmp_path / "Charades_v1_test.csv"
    bad.write_text("id,subject,scene\nAB12C,HR43,Kitchen\n")
    with pytest.raises(UserError, match=r"expected the Charades CSV with columns id,…,length; found columns \['id'"):
        convert_files("charades-sta", [CHARADES[0], bad])


def test_malformed_json_lines_and_keys_named(tmp_path):
    qvh = tmp_path / "highlight_val_release.jsonl"
    good = (REL / "qvhighlights" / "highlight_val_release.jsonl").read_text().splitlines()
    qvh.write_text(good[0] + "\n{not json\n" + good[1] + "\n")
    records, report = convert_files("qvhighlights", [qvh])
    assert len(records) == 2 and report.errors == [
        f"{qvh}: line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    ]
    anet = tmp_path / "val_2.json"
    anet.write_text(
        json.dumps(
            {
                "v_a": {"duration": 10, "timestamps": [[4, 2]], "sentences": ["x"]},
                "v_b": {"duration": 10, "timestamps": [[1, 2]], "sentences": []},
            }
        )
    )
    records, report = convert_files("activitynet", [anet])
    assert records == [] and report.n_read == 2
    assert report.errors[0].startswith(
        f"{anet} key 'v_a' sentence 0: id 'activitynet/val_2/v_a/0': moment 0 [4, 2] is reversed"
    )
    assert report.errors[1] == f"{anet} key 'v_b': 1 timestamps but 0 sentences: they must pair up"


def test_didemo_reversed_pair(tmp_path):
    f = tmp_path / "test_data.json"
    f.write_text(
        json.dumps(
            [
                {"annotation_id": 1, "description": "x", "video": "v.mp4", "times": [[3, 1], [3, 1]]},
                {"annotation_id": 2, "description": "y", "video": "w.mp4", "times": [[1, 1], [2, 6]]},
            ]
        )
    )
    _, report = convert_files("didemo", [f])
    assert "annotator pair 0 [3, 1] is reversed" in report.errors[0] and "index 0 (annotation_id 1)" in report.errors[0]
    assert (
        report.errors[1]
        == f"{f} index 1 (annotation_id 2): annotator pair 1 must be two segment indices in 0..5, got [2, 6]"
    )
    recs, report = convert_files("didemo", [f], fix_reversed=True)
    recs = by_id(recs)
    assert recs["didemo/test/1"].moments == [[5.0, 20.0]] and report.fixes["swapped reversed DiDeMo segment pair"] == 2


def test_same_file_twice_reports_duplicate_ids():
    _, report = convert_files("tacos", [REL / "tacos" / "test.json"] * 2)
    assert report.n_ok == 6 and "duplicate ids" in report.errors[-1] and "tacos/test/s13-d21/0" in report.errors[-1]


def test_check_video_resolves_against_root(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "s13-d21.avi").write_bytes(b"")
    records, report = convert_files(
        "tacos", [REL / "tacos" / "test.json"], video_dir="v", check_video=True, video_root=tmp_path
    )
    assert {r.id for r in records} == {"tacos/test/s13-d21/0", "tacos/test/s13-d21/1"}
    assert "video file not found" in report.errors[0] and "s27-d50.avi" in report.errors[0]


# ---------------------------------------------------------------- CLI and round trip


def test_cli_convert_writes_and_summarises(tmp_path, capsys):
    out = tmp_path / "qvh.jsonl"
    q = REL / "qvhighlights"
    assert (
        main(
            [
                "data",
                "convert",
                "qvhighlights",
                str(q / "highlight_val_release.jsonl"),
                str(q / "highlight_test_release.jsonl"),
                "--out",
                str(out),
                "--video-dir",
                "videos",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "4 read, 4 valid, 0 rejected" in text and "moments per query: 0: 2, 1: 1, 2: 1" in text
    assert "duration: 126.0–150.0s" in text and "has no labels" not in text and "have no labels" in text
    records, report = read_jsonl(out)
    assert report.n_ok == 4 and records[0].video == "videos/NUsG9BgSes0_210.0_360.0.mp4"


def test_cli_nothing_convertible_exits_2(tmp_path, capsys):
    txt = tmp_path / "charades_sta_test.txt"
    txt.write_text("garbage line\n")
    out = tmp_path / "o.jsonl"
    assert main(["data", "convert", "charades-sta", str(txt), str(CHARADES[1]), "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert "line 1: expected 'VIDEOID START END##sentence'" in cap.out and "nothing could be converted" in cap.err
    assert not out.exists()
    assert main(["data", "convert", "nope", str(txt), "--out", str(out)]) == 2
    assert "valid formats" in capsys.readouterr().err


def test_cli_validate_bad_line_exits_1(tmp_path, capsys):
    f = tmp_path / "r.jsonl"
    shutil.copy(REL / "vtg" / "vtg_records.jsonl", f)
    with open(f, "a") as fh:
        fh.write(json.dumps({"id": "x", "video": "a.mp4", "duration": 5, "query": "q", "moments": [[3, 3]]}) + "\n")
    assert main(["data", "validate", str(f)]) == 1
    assert "line 3 id 'x': moment 0 [3, 3] has zero length" in capsys.readouterr().out


def test_round_trip_write_read_hf(tmp_path):
    records = []
    for fmt, files in [
        ("charades-sta", CHARADES),
        ("qvhighlights", sorted((REL / "qvhighlights").iterdir())),
        ("tacos", [REL / "tacos" / "test.json"]),
        ("didemo", [REL / "didemo" / "val_data.json"]),
    ]:
        records += convert_files(fmt, files)[0]
    path = tmp_path / "all.jsonl"
    assert write_jsonl(records, path) == len(records) == 14
    back, report = read_jsonl(path)
    assert not report.errors and [r.to_dict() for r in back] == [r.to_dict() for r in records]
    ds = to_hf_dataset(back)
    assert len(ds) == 14 and ds["moments"] == [r.moments for r in records]
    # every source's extras survive although the first row (Charades) lacks them
    assert {"fps", "frames", "saliency_scores", "has_labels", "times"} <= set(ds.column_names)
    assert ds["has_labels"][3:7] == [False, False, True, True] and ds["saliency_scores"][5][1] == [3, 3, 4]
    again, report = from_hf_dataset(ds)
    assert not report.errors and [r.to_dict() for r in again] == [r.to_dict() for r in records]


def test_every_format_has_help_and_a_fixture():
    assert set(FORMATS) == {"charades-sta", "activitynet", "tacos", "didemo", "qvhighlights", "timerft", "jsonl"} | {
        "timelens-bench",
        "ego4d-nlq",  # the long-video ones: tests/test_adapters_long.py
        "mad",
        "vue-tr",
    }
    assert all(spec.help for spec in FORMATS.values())
