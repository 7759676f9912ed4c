"""Windows of long videos (vtg.data.windows) and seeking (vtg.data.video.FrameCursor): where windows lie, and that
decoding by seeking gives exactly the frames and times of a full decode, each frame decoded at most once."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vtg.data import video as V
from vtg.data.windows import Window, around, plan_windows, read_windows, to_video
from vtg.errors import UserError

SAMPLING = V.FrameSampling(fps=2.0, min_pixels=3136, max_pixels=4096, max_frames=64)


def encode(path, n: int, fps: float, *, gop: int = 25, pts=None, size: int = 64) -> str:
    """An H.264 video whose frame i shows its own index (a grey level and a corner code), keyframes every `gop`."""
    with av.open(str(path), "w") as c:
        rate = Fraction(fps).limit_denominator(1001)
        s = c.add_stream("libx264", rate=rate)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000) if pts is not None else 1 / rate
        s.options = {"crf": "20", "preset": "veryfast", "g": str(gop), "bf": "2"}
        for i in range(n):
            a = np.full((size, size, 3), (i * 37) % 256, np.uint8)
            a[:16, :16] = (i * 11) % 256
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i if pts is None else pts[i]
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def frames_in_order(path: str, indices: list[int], size: tuple[int, int]):
    """The reference: the frames at `indices` from decoding the whole stream in order (no seeking)."""
    with av.open(path) as c:
        info = V._stream_info(c, path)
        cursor = V.FrameCursor(c, info.fps, V.NO_BUDGET, path, seek_min_gap_s=0)
        frames, times = [], []
        for i in indices:
            assert cursor.get(i)
            frames.append(V._resized(cursor.rgb_array(), size))
            times.append(cursor.seconds())
    return torch.stack(frames), times


# ---- where windows lie -----------------------------------------------------------------------------------------


def test_windows_cover_the_video_with_overlap_and_a_full_length_tail():
    ws = plan_windows(70.0, 20.0, 15.0)
    assert [(w.start, w.end) for w in ws] == [(0, 20), (15, 35), (30, 50), (45, 65), (50, 70)]
    assert all(b.start < a.end for a, b in zip(ws, ws[1:]))  # every border lies inside another window
    assert plan_windows(60.0, 20.0, 20.0)[-1] == Window(40.0, 60.0)  # no extra window when the stride ends on it
    assert plan_windows(12.0, 20.0, 15.0) == [Window(0.0, 12.0)]  # shorter than a window: one window, the video
    assert plan_windows(20.0, 20.0, 15.0) == [Window(0.0, 20.0)]
    with pytest.raises(UserError, match="stride_s <= window_s"):
        plan_windows(70.0, 20.0, 25.0)


def test_a_window_around_a_moment_stays_inside_the_video():
    assert around(30.0, 20.0, 100.0) == Window(20.0, 40.0)
    assert around(3.0, 20.0, 100.0) == Window(0.0, 20.0)
    assert around(99.0, 20.0, 100.0) == Window(80.0, 100.0)
    assert around(5.0, 20.0, 12.0) == Window(0.0, 12.0)


# ---- decoding --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """100 s at 25 fps, a keyframe every second: seeks land close to their frame."""
    return encode(tmp_path_factory.mktemp("windows") / "long.mp4", 2500, 25.0, gop=25)


def test_windows_decoded_by_seeking_equal_a_full_decode(long_clip):
    windows = [Window(5.0, 25.0), Window(20.0, 40.0), Window(70.0, 90.0), Window(80.5, 100.0)]
    stats = {}
    got = list(read_windows(long_clip, windows, SAMPLING, seek_min_gap_s=2.0, stats=stats))
    assert stats["seeks"] >= 1  # the gap 40 s -> 70 s is sought over, not decoded through
    assert stats["frames_decoded"] < 2500
    for w, v in zip(windows, got):
        first = round(v.metadata.offset * 25)
        indices = [first + i for i in v.metadata.frames_indices]
        frames, times = frames_in_order(long_clip, indices, tuple(v.frames.shape[2:]))
        assert torch.equal(v.frames, frames), w
        assert v.metadata.timestamps == [round(t - times[0], 6) for t in times], w
        assert v.metadata.offset == pytest.approx(times[0]) and v.metadata.offset == pytest.approx(w.start, abs=0.04)


def test_a_window_is_sampled_like_a_clip_of_that_span(long_clip, tmp_path):
    """Frame 0 at time 0, the clip's duration, its frame count: the model sees a window as a file of that span."""
    (window,) = read_windows(long_clip, [Window(30.0, 50.0)], SAMPLING)
    clip = V.read_video(encode(tmp_path / "clip.mp4", 500, 25.0, gop=25), SAMPLING)
    for key in ("frames_indices", "timestamps", "duration", "total_num_frames", "sampled_fps"):
        assert getattr(window.metadata, key) == getattr(clip.metadata, key), key
    assert window.metadata.processor_dict() == clip.metadata.processor_dict()
    assert window.frames.shape == clip.frames.shape
    assert to_video((2.5, 4.0), window) == (32.5, 34.0)


def test_each_frame_is_decoded_once_per_pass_and_memory_holds_pending_windows_only(long_clip, tmp_path):
    short = encode(tmp_path / "short.mp4", 625, 25.0, gop=25)  # 25 s
    held = {}
    for path, duration in ((short, 25.0), (long_clip, 100.0)):
        stats = {}
        windows = plan_windows(duration, 10.0, 7.5)  # overlapping: frames shared by two windows
        n = sum(1 for _ in read_windows(path, windows, SAMPLING, stats=stats))
        assert n == len(windows)
        assert stats["frames_decoded"] <= duration * 25  # every frame at most once, overlaps included
        held[duration] = stats["max_held_frames"]
    assert held[100.0] == held[25.0]  # four times the video, the same frames in memory


def test_read_video_seeks_over_long_gaps_and_gives_the_same_frames(long_clip):
    sparse = V.FrameSampling(nframes=8, min_pixels=3136, max_pixels=4096)  # a frame every 12.5 s
    seeking = V.read_video(long_clip, sparse)
    with av.open(long_clip) as c:
        assert V._stream_info(c, long_clip).fps == 25.0
    frames, times = frames_in_order(long_clip, seeking.metadata.frames_indices, tuple(seeking.frames.shape[2:]))
    assert torch.equal(seeking.frames, frames)
    assert seeking.metadata.timestamps == [round(t, 6) for t in times]


def test_a_stream_off_the_frame_grid_is_decoded_in_order_instead(tmp_path):
    """Variable frame rate: indices cannot be told from times, so the cursor falls back to counting frames."""
    pts = [round(i * 40 + (15 if i % 7 == 3 else 0)) for i in range(750)]  # ms; some frames late
    path = encode(tmp_path / "vfr.mp4", 750, 25.0, gop=25, pts=pts)
    indices = [0, 10, 400, 401, 700]
    with av.open(path) as c:
        info = V._stream_info(c, path)
        cursor = V.FrameCursor(c, info.fps, V.NO_BUDGET, path, seek_min_gap_s=1.0)
        got = []
        for i in indices:
            assert cursor.get(i)
            got.append(V._resized(cursor.rgb_array(), (56, 56)))
        assert cursor.seeks >= 1 and cursor.min_gap is None  # it sought, saw times off the grid, and restarted
    frames, _ = frames_in_order(path, indices, (56, 56))
    assert torch.equal(torch.stack(got), frames)


def test_a_window_past_the_end_of_the_stream_is_a_clear_error(long_clip):
    with pytest.raises(V.VideoError, match="long.mp4"):
        list(read_windows(long_clip, [Window(95.0, 130.0)], SAMPLING))
