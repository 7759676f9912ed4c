"""The video control's record sets: own vs swapped videos of equal duration (vtg.eval.controls)."""

from pathlib import Path

from vtg.data.records import Record
from vtg.eval.controls import swapped_query_records, swapped_video_records, write_control_sets


def _rec(i: int, video: str, duration: float, kind: str, moments=((1.0, 2.0),)) -> Record:
    return Record(
        id=f"q{i}",
        video=video,
        duration=duration,
        query=f"when is thing {i} visible?",
        moments=[list(m) for m in moments],
        source="synth",
        split="test",
        extra={"kind": kind},
    )


def test_swaps_only_between_videos_of_equal_duration(tmp_path):
    recs = [
        _rec(0, "a.mp4", 10.0, "single"),
        _rec(1, "b.mp4", 10.0, "multi"),
        _rec(2, "c.mp4", 10.0, "single"),
        _rec(3, "d.mp4", 12.0, "single"),  # no other 12 s video: left out
        _rec(4, "a.mp4", 10.0, "absent", moments=()),
        _rec(5, "b.mp4", 10.0, "compositional"),
    ]
    own, swapped = swapped_video_records(recs, tmp_path, seed=0)
    assert [r.id for r in own] == [r.id for r in swapped] == ["q0", "q1", "q2"]
    for a, b in zip(own, swapped):
        assert a.video == str((tmp_path / Path(recs[int(a.id[1])].video)).resolve())
        assert b.video != a.video and Path(b.video).parent == tmp_path.resolve()
        assert (a.query, a.duration, a.moments) == (b.query, b.duration, b.moments)  # only the frames differ
    assert swapped_video_records(recs, tmp_path, seed=0)[1] == swapped  # seeded
    assert [r.id for r in swapped_video_records(recs, tmp_path, kinds=None)[0]] == ["q0", "q1", "q2", "q5"]


def test_write_control_sets_counts_and_files(tmp_path):
    from vtg.data.records import write_jsonl

    write_jsonl([_rec(0, "a.mp4", 10.0, "single"), _rec(1, "b.mp4", 10.0, "single")], tmp_path / "test.jsonl")
    own, swapped, n = write_control_sets(tmp_path / "test.jsonl", tmp_path / "control")
    assert n == 2 and own.read_text().count("\n") == swapped.read_text().count("\n") == 2


def test_reads_video_needs_a_ten_point_mIoU_drop():
    from vtg.eval.controls import reads_video

    assert reads_video(80.0, 70.0) and reads_video(86.2, 28.4)
    assert not reads_video(80.0, 70.5) and not reads_video(40.0, 41.0)


def _q(i: int, video: str, duration: float, moments, query: str | None = None) -> Record:
    return Record(f"q{i}", video, duration, query or f"query {i}", [list(m) for m in moments], "t", "test")


def test_swapped_query_takes_a_query_whose_answer_differs_same_video_first(tmp_path):
    recs = [
        _q(0, "a.mp4", 10.0, [(0, 2)]),
        _q(1, "a.mp4", 10.0, [(1, 3)]),  # IoU 1/3 with q0: too close to count as another answer
        _q(2, "a.mp4", 10.0, [(6, 9)]),
        _q(3, "b.mp4", 20.0, [(0, 4)]),  # alone on its video; normalized [0, 0.2]: q2's and q5's answers differ
        _q(4, "c.mp4", 10.0, []),  # absent: nothing to score a swap against
        _q(5, "c.mp4", 10.0, [(0, 10)]),  # IoU 0.3 with q2 (not below the bar), 0.2 with q0, q1, q3
    ]
    own, swapped = swapped_query_records(recs, tmp_path, seed=0, kinds=None)
    assert [r.id for r in own] == [r.id for r in swapped] == ["q0", "q1", "q2", "q3", "q5"]
    got = {r.id: (r.extra["query_from"], r.extra["same_video"]) for r in swapped}
    assert got["q0"] == got["q1"] == ("q2", True) and got["q3"] in {("q2", False), ("q5", False)}
    assert got["q2"] in {("q0", True), ("q1", True)} and got["q5"][0] in {"q0", "q1", "q3"} and not got["q5"][1]
    by_id = {r.id: r for r in recs}
    for a, b in zip(own, swapped):
        assert b.query == by_id[b.extra["query_from"]].query != a.query
        assert (a.video, a.duration, a.moments) == (b.video, b.duration, b.moments)  # only the question differs
        assert a.video == str((tmp_path / by_id[a.id].video).resolve()) and b.extra["control"] == "swapped_query"
    assert swapped_query_records(recs, tmp_path, seed=0, kinds=None)[1] == swapped  # seeded
    seeds = {swapped_query_records(recs, tmp_path, seed=s, kinds=None)[1][4].extra["query_from"] for s in range(20)}
    assert seeds == {"q0", "q1", "q3"}  # the seed picks among every partner that fits


def test_answers_differ_compares_every_moment_in_normalized_time():
    from vtg.eval.controls import answers_differ

    multi = _q(0, "a.mp4", 10.0, [(0, 1), (8, 9)])
    assert not answers_differ(multi, _q(1, "a.mp4", 10.0, [(8, 9.5)]))  # its second moment matches
    assert answers_differ(multi, _q(2, "a.mp4", 10.0, [(3, 6)]))
    assert not answers_differ(_q(3, "a.mp4", 10.0, [(0, 2)]), _q(4, "b.mp4", 40.0, [(0, 8)]))  # both [0, 0.2]


def test_write_control_sets_writes_the_question_control(tmp_path):
    from vtg.data.records import load_records, write_jsonl

    write_jsonl([_q(0, "a.mp4", 10.0, [(0, 2)]), _q(1, "a.mp4", 10.0, [(5, 9)])], tmp_path / "test.jsonl")
    own, swapped, n = write_control_sets(tmp_path / "test.jsonl", tmp_path / "qc", kinds=None, control="question")
    assert n == 2 and [r.query for r in load_records(swapped)] == ["query 1", "query 0"]
    assert [r.query for r in load_records(own)] == ["query 0", "query 1"]


def test_verdict_lines_name_the_thing_read():
    import pytest

    from vtg.errors import UserError
    from vtg.eval.controls import READS_QUESTION_MIOU_GAP, verdict

    assert verdict("question", 50.0, 50.0 - READS_QUESTION_MIOU_GAP) == "reads the question"
    assert verdict("question", 50.0, 45.0) == "does not read the question"
    assert verdict("video", 90.0, 20.0) == "reads the video" and verdict("video", 30, 29) == "does not read the video"
    with pytest.raises(UserError, match="unknown control 'audio'"):
        verdict("audio", 1.0, 0.0)


def test_eval_controls_cli_writes_both_controls(tmp_path, capsys):
    from vtg.cli import main
    from vtg.data.records import load_records, write_jsonl

    recs = [_q(0, "a.mp4", 10.0, [(0, 2)]), _q(1, "a.mp4", 10.0, [(5, 9)]), _q(2, "b.mp4", 10.0, [(1, 2)])]
    write_jsonl(recs, tmp_path / "test.jsonl")
    assert main(["eval", "controls", "--records", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "video control: 3 queries" in out and "question control: 3 queries" in out
    assert {r.extra["control"] for r in load_records(tmp_path / "c" / "video" / "swapped.jsonl")} == {"swapped_video"}
    assert {r.extra["control"] for r in load_records(tmp_path / "c" / "question" / "swapped.jsonl")} == {
        "swapped_query"
    }
    assert main(["eval", "controls", "--records", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "d")]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
