"""Windows of a long video: where they lie, and their frames decoded in one forward pass.

A window is a span of the video that the model is shown as if it were a clip of its own: its frames are sampled
exactly as a file holding only that span would be (`sample_plan` on the span's frames), its frame indices and
timestamps start at 0, and `VideoMetadata.offset` keeps where it lies in the video, so an answer about the window
maps back by adding the offset (`to_video`). That keeps a model trained on short clips on familiar ground.

`read_windows` decodes every frame that any window needs in one forward sweep of the stream (a `FrameCursor`:
each frame decoded at most once per pass, seeking over long gaps), hands each window out as soon as its last frame
is decoded and keeps only the frames of windows not yet handed out: memory does not grow with the video.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vtg.data.video import (
    NO_BUDGET,
    SEEK_MIN_GAP_S,
    DecodeBudget,
    DecodedVideo,
    FrameCursor,
    FrameSampling,
    VideoError,
    VideoInfo,
    VideoMetadata,
    _open_container,
    _resized,
    _stream_info,
    frame_size,
    local_file,
    sample_plan,
)
from vtg.errors import UserError


@dataclass(frozen=True)
class Window:
    """A span [start, end] of a video, in seconds."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def plan_windows(duration: float, window_s: float, stride_s: float) -> list[Window]:
    """Windows of `window_s` seconds every `stride_s` seconds covering [0, duration]; the last one ends at the video's
    end (it starts earlier rather than being shorter), and a video no longer than one window is one window."""
    if not (window_s > 0 and 0 < stride_s <= window_s):
        raise UserError(f"windows: need window_s > 0 and 0 < stride_s <= window_s, got {window_s}, {stride_s}")
    if duration <= window_s:
        return [Window(0.0, float(duration))]
    out, start = [], 0.0
    while start + window_s < duration:
        out.append(Window(start, start + window_s))
        start += stride_s
    out.append(Window(duration - window_s, float(duration)))  # the tail: as long as the others
    return out


def around(centre: float, window_s: float, duration: float) -> Window:
    """A window of `window_s` centred on `centre`, moved inside [0, duration]."""
    if duration <= window_s:
        return Window(0.0, float(duration))
    start = min(max(0.0, centre - window_s / 2), duration - window_s)
    return Window(start, start + window_s)


def to_video(moment: Sequence[float], window: DecodedVideo) -> tuple[float, float]:
    """A moment answered about a window, in the video's seconds."""
    off = window.metadata.offset
    return (off + float(moment[0]), off + float(moment[1]))


@dataclass(frozen=True)
class _Plan:
    window: Window
    first: int  # the span's first stream frame
    count: int  # frames in the span
    indices: list[int]  # stream frame indices sampled
    size: tuple[int, int]


def _plan(info: VideoInfo, w: Window, sampling: FrameSampling, source: str) -> _Plan:
    """The frames a clip holding exactly this span would give: the span's frames, sampled by `sample_plan`."""
    if w.start < 0 or w.end > info.duration + 1.0 / info.fps or w.length <= 0:
        raise VideoError(f"{source}: window {w.start:g}-{w.end:g}s does not lie in the video (0-{info.duration:g}s)")
    first = min(round(w.start * info.fps), info.num_frames - 1)
    count = min(max(2, round(w.length * info.fps)), info.num_frames - first)
    clip = VideoInfo(count / info.fps, info.fps, count, info.width, info.height)
    plain = dataclasses.replace(sampling, video_start=None, video_end=None)
    try:
        _, _, idx = sample_plan(clip, plain)
    except UserError as e:
        raise VideoError(f"{source}: window {w.start:g}-{w.end:g}s: {e}") from None
    size = frame_size(info.height, info.width, len(idx), plain)
    return _Plan(w, first, count, [first + i for i in idx], size)


def _window_video(plan: _Plan, frames: list, times: list[float], info: VideoInfo, source: str, sampling):
    import torch

    t_first = times[0]
    meta = VideoMetadata(
        fps=info.fps,
        total_num_frames=plan.count,
        duration=plan.count / info.fps,
        frames_indices=[i - plan.first for i in plan.indices],
        timestamps=[round(t - t_first, 6) for t in times],
        sampled_fps=len(plan.indices) / plan.count * info.fps,
        width=info.width,
        height=info.height,
        window_start=0,
        window_end=plan.count - 1,
        offset=round(t_first, 6),
    )
    return DecodedVideo(frames=torch.stack(frames), metadata=meta, source=source, sampling=sampling)


def read_windows(
    source: str | os.PathLike,
    windows: Sequence[Window],
    sampling: FrameSampling,
    budget: DecodeBudget = NO_BUDGET,
    *,
    seek_min_gap_s: float = SEEK_MIN_GAP_S,
    stats: dict | None = None,
) -> Iterator[DecodedVideo]:
    """Each window's frames as a clip of its own (see the module docstring), in the order given (sorted by start),
    from one forward pass over the video. `stats`, when given, receives frames decoded and seeks made."""
    source = str(source)
    if any(b.start < a.start for a, b in zip(windows, windows[1:])):
        raise ValueError("read_windows: windows must be sorted by start")
    with local_file(source) as path:
        yield from _read(path, source, list(windows), sampling, budget, seek_min_gap_s, stats)


def _read(path, source, windows, sampling, budget, seek_min_gap_s, stats) -> Iterator[DecodedVideo]:
    import av

    with _open_container(path, source) as container:
        info = _stream_info(container, source)
        plans = [_plan(info, w, sampling, source) for w in windows]
        for p in plans:
            budget.check_plan(info, p.count, source)  # a window decodes its span: the budget holds per window
        users: dict[int, list[int]] = {}  # stream frame -> the windows that sample it
        for k, p in enumerate(plans):
            for i in p.indices:
                users.setdefault(i, []).append(k)
        cursor = FrameCursor(container, info.fps, budget, source, seek_min_gap_s, max(p.count for p in plans))
        held: dict[int, dict[tuple[int, int], object]] = {}  # frame -> {size: resized frame}
        times: dict[int, float] = {}
        done = most = 0
        try:
            for i in sorted(users):
                if not cursor.get(i):
                    raise VideoError(f"{source}: the stream ends at frame {cursor.index + 1}, before frame {i}")
                array = cursor.rgb_array()
                held[i] = {plans[k].size: None for k in users[i]}
                for size in held[i]:
                    held[i][size] = _resized(array, size)
                times[i] = cursor.seconds()
                most = max(most, len(held))
                while done < len(plans) and plans[done].indices[-1] <= i:
                    p = plans[done]
                    yield _window_video(
                        p, [held[j][p.size] for j in p.indices], [times[j] for j in p.indices], info, source, sampling
                    )
                    done += 1
                    _release(held, times, users, done)
        except av.FFmpegError as e:
            raise VideoError(f"{source}: corrupt video, decoding failed near frame {cursor.index + 1} ({e})") from None
        finally:
            if stats is not None:
                stats["frames_decoded"] = stats.get("frames_decoded", 0) + cursor.decoded
                stats["seeks"] = stats.get("seeks", 0) + cursor.seeks
                stats["max_held_frames"] = max(stats.get("max_held_frames", 0), most)
    if done < len(plans):
        raise VideoError(f"{source}: windows after {plans[done].window.start:g}s could not be decoded")


def _release(held: dict, times: dict, users: dict, done: int) -> None:
    """Forget the frames that only windows already handed out use."""
    for i in [i for i in held if max(users[i]) < done]:
        del held[i], times[i]


def coarse_sampling(sampling: FrameSampling, fps: float | None) -> FrameSampling:
    """The model's sampling at another frame rate (the coarse pass); `fps` None keeps it."""
    if fps is None or (sampling.nframes is None and math.isclose(fps, sampling.fps)):
        return sampling
    return dataclasses.replace(sampling, fps=float(fps), nframes=None)
