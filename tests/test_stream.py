"""vtg.stream: the frame ring keeps one window on the model's time grid, the tracker turns window answers into
moment events with hysteresis, and a stream window is the same clip `read_windows` cuts from the file."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vtg.data.video import DecodeBudget, FrameSampling
from vtg.grounding import Candidate
from vtg.stream import FrameRing, MomentTracker, StreamError, StreamSettings

SAMPLING = FrameSampling(fps=2.0, min_pixels=3136, max_pixels=12544)


def frame(value: int, size: int = 56) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


# ---- the frame ring --------------------------------------------------------------------------------------------


def test_ring_keeps_the_grid_of_a_faster_feed_and_one_window():
    ring = FrameRing(SAMPLING, fps=2.0, window_s=5.0)
    kept = [ring.push(frame(i % 250), i / 30) for i in range(30 * 20)]  # 20 s at 30 fps
    assert sum(kept) == 40  # one frame per 0.5 s tick
    assert len(ring.frames) <= 11  # one window (5 s at 2 fps) and the frame before it, never the whole stream
    w = ring.window("live")
    assert w.frames.shape[0] == 10 and w.metadata.duration == pytest.approx(5.0)
    newest_kept = ring.frames[-1][0]  # 19.5: later frames (19.53 .. 19.97) fell between ticks
    assert newest_kept == pytest.approx(19.5) and w.metadata.offset == pytest.approx(newest_kept - 4.5)
    assert w.metadata.timestamps == pytest.approx([k * 0.5 for k in range(10)])


def test_ring_repeats_frames_of_a_slower_feed_instead_of_stretching_time():
    ring = FrameRing(SAMPLING, fps=2.0, window_s=4.0)
    for i in range(9):  # one frame a second, values 0..8
        ring.push(frame(10 * i), float(i))
    w = ring.window("live")
    # 8 grid times over the last 3.5 s at 2 fps: each shows the newest frame at or before it
    assert w.frames.shape[0] == 8 and w.metadata.offset == pytest.approx(4.5)
    shown = [int(f[0, 0, 0]) for f in w.frames]
    assert shown == [40, 50, 50, 60, 60, 70, 70, 80]


def test_ring_refuses_bad_frames_by_name_and_keeps_going():
    ring = FrameRing(SAMPLING, fps=2.0, window_s=4.0, budget=DecodeBudget(max_frame_pixels=100 * 100))
    ring.push(frame(1), 1.0)
    with pytest.raises(StreamError, match=r"frame 1 \(t=1.0\).*not after"):
        ring.push(frame(2), 1.0)
    with pytest.raises(StreamError, match="not after the previous frame's 1s"):
        ring.push(frame(2), 0.5)
    with pytest.raises(StreamError, match="finite"):
        ring.push(frame(2), float("nan"))
    with pytest.raises(StreamError, match=r"RGB frame.*\(56, 56\)"):
        ring.push(np.zeros((56, 56), np.uint8), 2.0)
    with pytest.raises(StreamError, match="max_frame_pixels"):
        ring.push(frame(3, size=200), 2.0)
    assert ring.push(frame(4), 2.0)  # the stream goes on after each refusal
    assert ring.window("live").frames.shape[0] == 2


def test_stream_window_is_the_clip_read_windows_cuts_from_the_file(synth_world):
    """No train/serve drift: a window built from streamed frames equals the file's window of the same span, frames
    and time metadata alike (the model sees a stream as it saw its training clips)."""
    from vtg.data.windows import Window, read_windows
    from vtg.stream import file_frames

    video = sorted((synth_world / "videos").glob("*.mp4"))[0]
    ring = FrameRing(SAMPLING, fps=2.0, window_s=6.0)
    for f, t in file_frames(str(video), 2.0):
        ring.push(f, t)
    streamed = ring.window(str(video))
    m = streamed.metadata
    (cut,) = read_windows(str(video), [Window(m.offset, m.offset + m.duration)], SAMPLING)
    assert m.offset > 0 and streamed.frames.shape[0] == 12
    assert torch.equal(streamed.frames, cut.frames)
    assert m == cut.metadata


# ---- the tracker ---------------------------------------------------------------------------------------------


def track(settings: StreamSettings, answers):
    """Feed (window_start, now, [(start, end, score), ...]) answers to one tracker; the events' (type, start, end,
    media_time)."""
    tracker = MomentTracker("q", settings)
    out = []
    for ws, now, moments in answers:
        for e in tracker.observe(ws, now, [Candidate(*m) for m in moments]):
            out.append((e.type, e.start, e.end, e.media_time))
    return tracker, out


# the tracker's mechanics, not the chosen defaults: scores of 0.8-0.9 count, one window starts or ends a moment;
# `end_rule: seen` (a window that sees the end ends the moment) unless a test says `gone`
S = StreamSettings(window_s=10.0, stride_s=2.0, start_score=0.5, keep_score=0.3, confirm=1, release=1, end_rule="seen")


def test_tracker_announces_start_then_end_of_an_ongoing_moment():
    tracker, events = track(S, [
        (0, 10, []),
        (2, 12, [(9.0, 12.0, 0.9)]),  # running at the window's end: ongoing
        (4, 14, [(9.0, 14.0, 0.9)]),
        (6, 16, [(9.5, 14.5, 0.9)]),  # over more than edge_s before the window's end
        (8, 18, [(9.0, 14.5, 0.9)]),  # the same moment seen again: nothing new
    ])  # fmt: skip
    assert events == [("moment.started", 9.0, None, 12), ("moment.ended", 9.0, 14.5, 16)]
    assert tracker.spans(18) == [(9.0, 14.5, 0.9, False)]


def test_tracker_short_moment_is_started_and_ended_at_once():
    _, events = track(S, [(0, 10, [(3.0, 5.0, 0.8)])])
    assert events == [("moment.started", 3.0, None, 10), ("moment.ended", 3.0, 5.0, 10)]


def test_tracker_hysteresis_and_release():
    settings = StreamSettings(window_s=10.0, stride_s=2.0, start_score=0.6, keep_score=0.3, confirm=1, release=2,
                              end_rule="seen")  # fmt: skip
    tracker, events = track(settings, [
        (0, 10, [(8.0, 10.0, 0.5)]),  # under start_score: no evidence
        (2, 12, [(8.0, 12.0, 0.7)]),  # started
        (4, 14, [(8.0, 14.0, 0.4)]),  # under start_score but over keep_score: still going
        (6, 16, []),  # one window without it: not yet ended (release=2)
        (8, 18, []),  # ended where it was last seen running
    ])  # fmt: skip
    assert events == [("moment.started", 8.0, None, 12), ("moment.ended", 8.0, 14.0, 18)]
    assert tracker.spans(18) == [(8.0, 14.0, 0.7, False)]


def test_tracker_confirm_needs_successive_windows():
    settings = dataclasses.replace(S, confirm=2)
    _, events = track(settings, [
        (0, 10, [(9.0, 10.0, 0.9)]),
        (2, 12, []),  # the evidence is broken
        (4, 14, [(11.0, 14.0, 0.9)]),
        (6, 16, [(11.0, 16.0, 0.9)]),  # second in a row: started
    ])  # fmt: skip
    assert events == [("moment.started", 11.0, None, 16)]


def test_tracker_updates_the_start_when_a_window_sees_it_better_and_keeps_it_when_clipped():
    tracker, events = track(S, [
        (2, 12, [(10.0, 12.0, 0.9)]),
        (4, 14, [(8.0, 14.0, 0.9)]),  # the start seen more than update_s earlier: updated
        (10, 20, [(10.0, 20.0, 0.9)]),  # the window's left edge cuts the moment: its start says nothing
    ])  # fmt: skip
    assert events == [("moment.started", 10.0, None, 12), ("moment.updated", 8.0, None, 14)]
    assert tracker.spans(20) == [(8.0, 20.0, 0.9, True)]  # still ongoing at the stream's end


def test_tracker_second_moment_after_the_first():
    _, events = track(S, [
        (0, 10, [(2.0, 4.0, 0.9)]),
        (2, 12, [(2.0, 4.0, 0.9), (10.0, 12.0, 0.8)]),  # the old one again, and a new ongoing one
    ])  # fmt: skip
    assert [e[:3] for e in events] == [
        ("moment.started", 2.0, None), ("moment.ended", 2.0, 4.0), ("moment.started", 10.0, None)
    ]  # fmt: skip


def test_tracker_end_rule_seen_fragments_a_long_event_and_gone_keeps_it_one_moment():
    """A 12-s event (8-20 s) under 10-s windows that each answer it as ending a little before their own end (what a
    model trained on whole clips tends to say): `seen` ends it in the first such window and starts it again in the
    next; `gone` keeps one moment until `release` windows no longer show it, ended at the latest end seen."""
    windows = [
        (0, 10, [(8.0, 10.0, 0.9)]),  # ongoing
        (2, 12, [(8.0, 10.5, 0.9)]),  # "ended" at 10.5, inside the window
        (4, 14, [(8.0, 12.5, 0.9)]),
        (6, 16, [(8.0, 14.5, 0.9)]),
        (10, 20, [(10.0, 18.5, 0.9)]),
        (12, 22, [(12.0, 20.0, 0.9)]),  # the true end seen
        (14, 24, [(14.0, 20.0, 0.9)]),  # the same end again
        (16, 26, [(16.0, 20.0, 0.9)]),
        (18, 28, []),  # gone from the trailing window
        (20, 30, []),
    ]
    _, seen = track(S, windows)
    assert [e[0] for e in seen].count("moment.started") >= 4  # one fragment per window
    gone = dataclasses.replace(S, end_rule="gone", release=2)
    tracker, events = track(gone, windows)
    assert events == [("moment.started", 8.0, None, 10), ("moment.ended", 8.0, 20.0, 30)]
    assert tracker.spans(30) == [(8.0, 20.0, 0.9, False)]


def test_tracker_end_rule_gone_starts_after_the_last_end_and_moves_starts_only_earlier():
    gone = dataclasses.replace(S, end_rule="gone", release=1)
    tracker, events = track(gone, [
        (0, 10, [(3.0, 5.0, 0.8)]),  # over inside the window: started, not yet ended
        (2, 12, [(4.0, 6.0, 0.8)]),  # later and touching: more of the same moment (the start does not move later)
        (4, 14, [(8.0, 14.0, 0.9), (2.0, 6.0, 0.4)]),  # ... and a new ongoing one: touching too, so still one
        (6, 16, []),  # released
        (8, 18, [(5.0, 14.0, 0.9)]),  # overlaps the ended moment, ends before its end: that moment seen again
        (10, 20, [(17.0, 20.0, 0.9)]),  # after it: a second moment
    ])  # fmt: skip
    assert events == [("moment.started", 3.0, None, 10), ("moment.ended", 3.0, 14.0, 16),
                      ("moment.started", 17.0, None, 20)]  # fmt: skip
    assert tracker.spans(20) == [(3.0, 14.0, 0.9, False), (17.0, 20.0, 0.9, True)]


def test_settings_refuse_impossible_values():
    with pytest.raises(StreamError.__mro__[1], match="stride_s"):
        StreamSettings(window_s=4.0, stride_s=5.0)
    with pytest.raises(StreamError.__mro__[1], match="end_rule"):
        StreamSettings(end_rule="never")
    with pytest.raises(StreamError.__mro__[1], match="keep_score <= start_score"):
        StreamSettings(start_score=0.2, keep_score=0.4)
    with pytest.raises(StreamError.__mro__[1], match="unknown"):
        StreamSettings.from_dict({"windw_s": 3})
