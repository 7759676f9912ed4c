"""The video control's record sets: own vs swapped videos of equal duration (vtg.eval.controls)."""

from pathlib import Path

from vtg.data.records import Record
from vtg.eval.controls import swapped_video_records, write_control_sets


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
