"""Video reading for every part of vtg: decode with PyAV, sample frames like qwen-vl-utils, keep the true time scale.

Why this module exists (docs/video-and-time.md): stacks go silently wrong on time. Frames are sampled once here, and the
metadata that carries the time scale (source fps, sampled frame indices, their pts timestamps) travels with them
to transformers' Qwen-VL processors (`hf_processor_kwargs`) and to vLLM (`vllm_video`).

Sampling follows qwen-vl-utils 0.0.14 (`fps`/`nframes`, `min_frames`/`max_frames`, an even frame count,
`smart_resize` within the min/max/total pixel budgets, `video_start`/`video_end`); its pure functions are reused.
One deliberate difference: qwen-vl-utils picks `linspace(first, last, n)` frame indices, so the same clip encoded
at 2 and 4 fps yields different sampled times. We pick the frame on screen at each time of an even grid
(`first + floor(k * count / n)`), so the sampled times depend on the clip, not on its encoding. The frame count and
size are identical to qwen-vl-utils'.

Decoder: PyAV (its wheel bundles FFmpeg; torchcodec needs system FFmpeg, decord is absent, torchvision 0.28 has
no read_video). Timestamps come from each frame's pts, relative to the first frame. For processors, frame times
are `index / fps` (that is what transformers and vLLM compute), which equals the pts for constant-frame-rate video.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import tempfile
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vtg.errors import UserError

# qwen-vl-utils' budgets, in tokens of one merged patch (image_factor² pixels); see its vision_process.py.
VIDEO_MIN_TOKEN_NUM = 128
VIDEO_MAX_TOKEN_NUM = 768
FRAME_FACTOR = 2  # frames are paired by the temporal patch: the count is always even
MAX_DOWNLOAD_BYTES = int(os.environ.get("VTG_MAX_VIDEO_BYTES", 2 << 30))
CACHE_SIZE = 8
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv"}

# Processor kwargs for frames sampled here: don't resample frames, and don't resize them again (the processors'
# own default budget would upscale a 56×56 frame to ~100k pixels and silently override FrameSampling).
PRESAMPLED_VIDEO_KWARGS = {"do_sample_frames": False, "do_resize": False}


class VideoTooLarge(UserError):
    """A video whose decoding would cost more than the budget allows; names the limit (`DecodeBudget`)."""


class VideoError(UserError):
    """A video that cannot be read (missing, not a video, corrupt, too short, unsupported URL); names the file."""


@dataclass(frozen=True)
class FrameSampling:
    """How frames are taken from a video; keys spelled as qwen-vl-utils spells them.

    `nframes`, when set, replaces `fps` (exactly that many frames, rounded to even). Pixel budgets left as None
    take qwen-vl-utils' defaults for this `image_factor` (28 = patch 14 × merge 2 for Qwen2.5-VL, 32 for Qwen3-VL).
    """

    fps: float = 2.0
    nframes: int | None = None
    min_frames: int = 4
    max_frames: int = 768
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    video_start: float | None = None
    video_end: float | None = None
    image_factor: int = 28

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and self.fps > 0 and math.isfinite(self.fps)):
            raise UserError(f"FrameSampling: fps must be a positive number of frames per second, got {self.fps!r}")
        if self.nframes is not None and (not isinstance(self.nframes, int) or self.nframes < FRAME_FACTOR):
            raise UserError(
                f"FrameSampling: nframes must be an integer >= 2 (or unset to use fps), got {self.nframes!r}"
            )
        if not (isinstance(self.min_frames, int) and isinstance(self.max_frames, int)) or self.min_frames < 1:
            raise UserError(f"FrameSampling: min_frames must be an integer >= 1, got {self.min_frames!r}")
        if self.max_frames < max(self.min_frames, FRAME_FACTOR):
            raise UserError(
                f"FrameSampling: max_frames ({self.max_frames}) must be >= min_frames "
                f"({self.min_frames}) and >= 2; raise max_frames"
            )
        if not isinstance(self.image_factor, int) or self.image_factor < 1:
            raise UserError(
                f"FrameSampling: image_factor must be a positive integer (28 for Qwen2.5-VL, "
                f"32 for Qwen3-VL), got {self.image_factor!r}"
            )
        for key in ("min_pixels", "max_pixels", "total_pixels"):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise UserError(f"FrameSampling: {key} must be a positive number of pixels or unset, got {v!r}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise UserError(
                f"FrameSampling: min_pixels ({self.min_pixels}) > max_pixels ({self.max_pixels}); "
                "lower min_pixels or raise max_pixels"
            )
        if self.video_start is not None and self.video_start < 0:
            raise UserError(f"FrameSampling: video_start must be >= 0 seconds, got {self.video_start!r}")
        if self.video_start is not None and self.video_end is not None and self.video_end <= self.video_start:
            raise UserError(
                f"FrameSampling: video_end ({self.video_end}) must be after video_start ({self.video_start})"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "frame sampling") -> FrameSampling:
        """Build from a config/recipe dict; unknown keys (and fps together with nframes) are rejected by name."""
        if not isinstance(d, dict):
            raise UserError(f"{where}: expected a mapping of sampling keys, got {type(d).__name__}")
        from vtg.config import ConfigError, check_keys

        try:
            check_keys(d, {f.name for f in fields(cls)})
        except ConfigError as e:
            raise UserError(f"{where}: {e}") from None
        if d.get("nframes") is not None and d.get("fps") is not None:
            raise UserError(f"{where}: give either 'fps' or 'nframes', not both (as in qwen-vl-utils)")
        return cls(**{k: v for k, v in d.items() if not (k == "fps" and v is None)})

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved (`vtg_sampling.json`): `fps` is None when `nframes` replaces it, so that the dict
        reads back through `from_dict`."""
        d = asdict(self)
        if self.nframes is not None:
            d["fps"] = None
        return d

    def updated(self, overrides: dict[str, Any] | None, where: str = "sampling") -> FrameSampling:
        """These settings (a model's saved sampling) with `overrides` (FrameSampling keys) on top: the one rule
        training, eval and serving apply. `fps` and `nframes` are one choice (how many frames): an override giving
        either replaces the saved one, an override giving neither keeps it, one giving both is refused (as is an
        unknown key, by name)."""
        if overrides is None:
            return self
        if not isinstance(overrides, dict):
            raise UserError(f"{where}: expected a mapping of sampling keys, got {type(overrides).__name__}")
        base = self.to_dict()
        if any(overrides.get(k) is not None for k in ("fps", "nframes")):
            del base["fps"], base["nframes"]
        return FrameSampling.from_dict({**base, **overrides}, where)

    def qwen_ele(self) -> dict[str, Any]:
        """The same settings as a qwen-vl-utils video element (without the 'video' key)."""
        ele = {k: v for k, v in asdict(self).items() if v is not None and k != "image_factor"}
        if self.nframes is not None:
            ele.pop("fps")
            ele.pop("min_frames")
            ele.pop("max_frames")
        return ele


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds = num_frames / fps
    fps: float
    num_frames: int
    width: int
    height: int


@dataclass(frozen=True)
class DecodeBudget:
    """What decoding one video may cost: pixels per frame, and pixels decoded in all (frames are decoded in order up
    to the last sampled one). Checked from the stream's header before any frame is decoded, and again while it
    decodes, since a stream can change size after its header: the decoder itself refuses to build a frame over the
    per-frame limit (FFmpeg's `max_pixels`), and a frame larger than any before re-checks the whole plan at that
    size. None: no limit. `names` say what each limit is called where it is set."""

    max_frame_pixels: int | None = None
    max_decoded_pixels: int | None = None
    names: tuple[str, str] = ("max_frame_pixels", "max_decoded_pixels")
    max_threads: int | None = None  # decoder threads (None: FFmpeg's choice, about one per core)

    def check_frame(self, width: int, height: int, source: str) -> None:
        if self.max_frame_pixels is not None and width * height > self.max_frame_pixels:
            raise VideoTooLarge(
                f"{source}: frames of {width}x{height} ({width * height:,} pixels) are over the limit "
                f"of {self.max_frame_pixels:,} ({self.names[0]})"
            )

    def check_pixels(self, width: int, height: int, frames: int, source: str, why: str = "") -> None:
        total = width * height * frames
        if self.max_decoded_pixels is not None and total > self.max_decoded_pixels:
            raise VideoTooLarge(
                f"{source}: sampling it decodes {frames} frames of {width}x{height}{why} "
                f"({total:,} pixels), over the limit of {self.max_decoded_pixels:,} ({self.names[1]})"
            )

    def check_plan(self, info: VideoInfo, frames_decoded: int, source: str) -> None:
        self.check_frame(info.width, info.height, source)
        self.check_pixels(info.width, info.height, frames_decoded, source)

    def decoder_options(self) -> dict[str, str]:
        """FFmpeg codec options that make the decoder refuse, before allocating it, a frame over the per-frame
        limit. FFmpeg checks the width padded to its stride alignment (up to 64), hence the slack: a frame just
        over the limit is still caught by `check_frame`, one far over it is never built."""
        if self.max_frame_pixels is None:
            return {}
        return {"max_pixels": str(self.max_frame_pixels + FFMPEG_ALIGN_SLACK)}


FFMPEG_ALIGN_SLACK = 64 * 16384  # stride padding (<= 64 columns) times the tallest frame a decoder accepts
NO_BUDGET = DecodeBudget()


@dataclass
class VideoMetadata:
    """Time scale of a sampled video. `frames_indices` index the whole stream; `timestamps` are their pts (s)."""

    fps: float  # the source stream's average frame rate
    total_num_frames: int  # frames in the whole stream
    duration: float  # seconds of the whole stream
    frames_indices: list[int]
    timestamps: list[float]
    sampled_fps: float  # frames taken per second of the sampled window
    width: int  # source frame size (the delivered frames are resized, see DecodedVideo.frames)
    height: int
    window_start: int = 0  # first and last stream frame of the video_start/video_end window
    window_end: int = 0
    offset: float = 0.0  # where frame 0 lies in the source video, seconds (a window of a long video: vtg.data.windows)

    @property
    def window_num_frames(self) -> int:
        return self.window_end - self.window_start + 1

    def processor_dict(self) -> dict[str, Any]:
        """Keys of transformers' VideoMetadata. total_num_frames is the window's count, as qwen-vl-utils passes it,
        so the processors' `sampled_fps = len(indices) / total_num_frames * fps` is the true sampling rate."""
        n = self.window_num_frames
        return {
            "fps": self.fps,
            "total_num_frames": n,
            "duration": n / self.fps,
            "frames_indices": list(self.frames_indices),
            "width": self.width,
            "height": self.height,
            "video_backend": "pyav",
        }


@dataclass
class DecodedVideo:
    """Sampled frames (uint8 [T, C, H, W], T even, H and W multiples of image_factor) and their time scale.

    Cached instances are shared: never modify `frames` in place.
    """

    frames: Any  # torch.Tensor
    metadata: VideoMetadata
    source: str
    sampling: FrameSampling

    def hf_metadata(self):
        from transformers.video_utils import VideoMetadata as HFVideoMetadata

        return HFVideoMetadata(**self.metadata.processor_dict())

    def hf_processor_kwargs(self) -> dict[str, Any]:
        """Splat into a transformers Qwen2.5-VL / Qwen3-VL processor call (with `text=`): frames + metadata."""
        return {"videos": [self.frames], "video_metadata": [self.hf_metadata()], **PRESAMPLED_VIDEO_KWARGS}

    def vllm_video(self):
        """(frames ndarray [T, H, W, C] uint8, metadata dict) for vLLM's `multi_modal_data={"video": [...]}`.
        vLLM's Qwen-VL processors read fps/frames_indices/total_num_frames and `do_sample_frames`; pass
        PRESAMPLED_VIDEO_KWARGS as mm_processor_kwargs so frames are not resized again."""
        arr = self.frames.permute(0, 2, 3, 1).contiguous().numpy()
        return arr, {**self.metadata.processor_dict(), "do_sample_frames": False}


# ---------------------------------------------------------------- opening sources


def _local_path(source: str) -> str | None:
    """The local path of `source`, or None for http(s); VideoError for other schemes."""
    if source.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(source).path)
    if "://" in source:
        scheme = source.split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            return None
        raise VideoError(f"{source}: unsupported video URL scheme {scheme!r}; use a local path, file://, http(s)://")
    return source


def _download(url: str, max_bytes: int = MAX_DOWNLOAD_BYTES) -> str:
    """Fetch a URL to a temporary file (caller deletes it): `vtg.data.fetch`'s guards, a size cap."""
    from vtg.data.fetch import FetchError, fetch

    fd, tmp = tempfile.mkstemp(prefix="vtg-video-", suffix=Path(urllib.parse.urlparse(url).path).suffix or ".mp4")
    os.close(fd)
    try:
        fetch(url, tmp, max_bytes=max_bytes, allow_private=os.environ.get("VTG_ALLOW_PRIVATE_URLS") == "1")
    except FetchError as e:
        os.unlink(tmp)
        hint = " (set VTG_ALLOW_PRIVATE_URLS=1 to allow it)" if e.kind == "private" else ""
        hint = " (VTG_MAX_VIDEO_BYTES)" if e.kind == "too_large" else hint
        raise VideoError(f"{url}: {e}{hint}") from None
    return tmp


@contextlib.contextmanager
def local_file(source: str) -> Iterator[str]:
    """A local path to read `source` from: its own, or an http(s) URL fetched to a temporary file, deleted after."""
    path = _local_path(source)
    if path is not None:
        yield path
        return
    tmp = _download(source)
    try:
        yield tmp
    finally:
        os.unlink(tmp)


# PyAV before 18 leaves a frame-threaded decoder (`thread_type = "AUTO"`, below) in a reference cycle after its
# container closes, its FFmpeg threads alive until the garbage collector frees it. A process forked before then (a
# DataLoader worker) frees it in the child, where those threads do not exist, and waits for them for ever: found on
# an H200 machine with av 17, where `vtg train sft` stopped at step 0 once the step-0 video check had decoded in the
# parent (bench/gpu/README.md). Collecting before every fork frees it in the parent, with its threads.
os.register_at_fork(before=gc.collect)


def _open_container(path: str, source: str, fmt: str | None = None):
    import av

    if not os.path.exists(path):
        raise VideoError(f"{source}: video file not found")
    if os.path.isdir(path):
        raise VideoError(f"{source}: is a folder, not a video file")
    try:
        container = av.open(path, format=fmt)
    except av.FFmpegError as e:
        raise VideoError(f"{source}: not a readable video ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{source}: contains no video stream")
    return container


def _stream_info(container, source: str) -> VideoInfo:
    """fps and frame count of the first video stream; the count falls back to counting packets (no decode)."""
    import av

    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    n = stream.frames
    if not n:
        try:
            n = sum(1 for p in container.demux(stream) if p.size)
        except av.FFmpegError as e:
            raise VideoError(f"{source}: corrupt video ({e})") from None
        container.seek(0)
    if not n:
        raise VideoError(f"{source}: the video stream has zero frames")
    if not rate:
        dur = float(stream.duration * stream.time_base) if stream.duration else 0.0
        if dur <= 0:
            raise VideoError(f"{source}: cannot tell the frame rate (no rate, no duration in the stream)")
        rate = n / dur
    fps = float(rate)
    return VideoInfo(duration=n / fps, fps=fps, num_frames=int(n), width=stream.width, height=stream.height)


def probe_video(source: str | os.PathLike) -> VideoInfo:
    """Duration, fps, frame count and size without decoding frames."""
    source = str(source)
    with local_file(source) as path, _open_container(path, source) as c:
        return _stream_info(c, source)


# ---------------------------------------------------------------- sampling (pure)


def sample_plan(info: VideoInfo, sampling: FrameSampling) -> tuple[int, int, list[int]]:
    """(window_start, window_end, frame indices) for a video, with qwen-vl-utils' window and frame-count rules."""
    from qwen_vl_utils.vision_process import calculate_video_frame_range, smart_nframes

    ele = sampling.qwen_ele()
    try:
        start, end, count = calculate_video_frame_range(ele, info.num_frames, info.fps)
        n = smart_nframes(ele, total_frames=count, video_fps=info.fps)
    except (ValueError, AssertionError) as e:
        raise UserError(f"cannot sample {info.num_frames} frames at {info.fps:g} fps with {ele}: {e}") from None
    # the frame on screen at each of n evenly spaced times of the window (see the module docstring)
    return start, end, [start + (k * count) // n for k in range(n)]


def frame_size(height: int, width: int, nframes: int, sampling: FrameSampling) -> tuple[int, int]:
    """(height, width) of the sampled frames: qwen-vl-utils' fetch_video pixel budget, then smart_resize."""
    from qwen_vl_utils.vision_process import MODEL_SEQ_LEN, smart_resize

    f = sampling.image_factor
    min_pixels = sampling.min_pixels if sampling.min_pixels is not None else VIDEO_MIN_TOKEN_NUM * f * f
    total_pixels = sampling.total_pixels if sampling.total_pixels is not None else MODEL_SEQ_LEN * f * f * 0.9
    max_pixels = max(min(VIDEO_MAX_TOKEN_NUM * f * f, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05))
    if sampling.max_pixels is not None:
        max_pixels = min(sampling.max_pixels, max_pixels)
    try:
        return smart_resize(height, width, factor=f, min_pixels=min_pixels, max_pixels=max_pixels)
    except (ValueError, AssertionError) as e:
        raise UserError(f"cannot resize {width}x{height} frames with {sampling}: {e}") from None


# ---------------------------------------------------------------- decoding


# Seek instead of decoding through when the next wanted frame is this far ahead: a seek lands on the keyframe before
# it, so it pays only when the gap is longer than a group of pictures (x264's default is 250 frames, ~10 s at 25 fps).
SEEK_MIN_GAP_S = 10.0


class NotConstantRate(Exception):
    """Frame times off the 1/fps grid: indices cannot be told from timestamps, so this stream is decoded in order."""


class FrameCursor:
    """The frames of one open video stream by index, in increasing order, each decoded once.

    Frame `i` is the i-th frame the decoder outputs from the start (what a full decode counts). Small gaps are decoded
    through; over a gap of `seek_min_gap_s` or more the cursor seeks to the keyframe before the wanted frame and
    tells indices from timestamps, `round((t - t0) * fps)`, which is exact for constant-frame-rate streams. A stream
    whose times are off that grid is decoded from the start in order instead (never a wrong frame).
    """

    def __init__(
        self,
        container,
        fps: float,
        budget: DecodeBudget,
        source: str,
        seek_min_gap_s: float = SEEK_MIN_GAP_S,
        planned_frames: int = 0,
    ):
        from av.video.reformatter import VideoReformatter

        from vtg import cancel

        self.container, self.fps, self.budget, self.source = container, fps, budget, source
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.options = budget.decoder_options()  # read when the decoder opens, on first use
        if budget.max_threads is not None:
            self.stream.codec_context.thread_count = budget.max_threads
        # the budget's plan, re-checked whenever a frame is larger than any before (the header can lie)
        self.header = (self.stream.width, self.stream.height)  # the codec context's: it follows the stream later
        self.planned_frames, self.largest = planned_frames, self.header[0] * self.header[1]
        self.cancelled = cancel.token()  # the request's, when a server decodes for one (checked every frame)
        # One reformatter for the whole stream: frame.to_ndarray(format=...) builds a new swscale context per frame,
        # which made small videos ~3x slower to decode (bench/video/run.py).
        self.rgb = VideoReformatter()
        self.min_gap = max(1, int(seek_min_gap_s * fps)) if seek_min_gap_s > 0 else None
        self.index, self.frame, self.time, self.t0 = -1, None, None, None
        self.seeks = self.decoded = 0
        self._by_pts = False
        self._gop, self._last_key = 0, None  # the longest keyframe interval seen: a shorter gap is decoded through
        self._frames = container.decode(self.stream)

    def rgb_array(self):
        """The current frame as an RGB uint8 array [H, W, 3]."""
        return self.rgb.reformat(self.frame, format="rgb24").to_ndarray()

    def seconds(self) -> float:
        """The current frame's time from the first frame (its pts; index / fps when the stream has none)."""
        return self.time - self.t0 if self.time is not None else self.index / self.fps

    def get(self, index: int) -> bool:
        """Move to frame `index` (>= the current one); False when the stream ends before it."""
        try:
            if self.t0 is None:
                self._advance()  # the first frame's time is the zero of every timestamp
            if self.min_gap and index - self.index >= max(self.min_gap, self._gop):
                self._seek(index)  # once: the keyframe before a far frame can itself be far before it
            while self.index < index:
                self._advance()
            return self.index == index
        except StopIteration:
            # frame threads drop a refused frame at the end of the stream silently: cut by the limit, not truncated
            self._check_refused_size()
            return False
        except NotConstantRate:
            self._restart()
            return self.get(index)

    def _advance(self) -> None:
        import av

        from vtg import cancel

        cancel.check(self.cancelled)
        try:
            frame = next(self._frames)
        except av.FFmpegError:
            self._check_refused_size()
            raise
        self.decoded += 1
        self.budget.check_frame(frame.width, frame.height, self.source)
        if frame.width * frame.height > self.largest:
            self.largest = frame.width * frame.height
            why = f" (it grows from the header's {self.header[0]}x{self.header[1]} at frame {self.index + 1})"
            self.budget.check_pixels(frame.width, frame.height, self.planned_frames, self.source, why)
        self.frame, self.time = frame, frame.time
        if self.t0 is None:
            self.t0 = self.time if self.time is not None else 0.0
        self.index = self._index_of(self.time) if self._by_pts else self.index + 1
        if frame.key_frame:
            if self._last_key is not None and self.index > self._last_key:
                self._gop = max(self._gop, self.index - self._last_key)
            self._last_key = self.index

    def _check_refused_size(self) -> None:
        """A decoder error on a frame the decoder refused to build for its size (`decoder_options`) is the budget's."""
        ctx = self.stream.codec_context
        if self.budget.max_frame_pixels is not None and ctx.width * ctx.height > self.budget.max_frame_pixels:
            raise VideoTooLarge(
                f"{self.source}: its frames change to {ctx.width}x{ctx.height} ({ctx.width * ctx.height:,} pixels) "
                f"part-way, over the limit of {self.budget.max_frame_pixels:,} ({self.budget.names[0]}); "
                "the decoder refused to build them"
            )

    def _index_of(self, t: float | None) -> int:
        if t is None:
            raise NotConstantRate
        x = (t - self.t0) * self.fps
        k = round(x)
        if abs(x - k) > 1e-3:
            raise NotConstantRate
        return k

    def _seek(self, index: int) -> None:
        """Land on a frame at or before `index`: the keyframe before it, further back if the container's index
        overshoots; from the start as a last resort."""
        tb, here = self.stream.time_base, self.index
        for back_s in (0.0, 30.0, None):
            t = 0.0 if back_s is None else max(0.0, index / self.fps - back_s)
            self.container.seek(int((self.t0 + t) / tb), stream=self.stream, backward=True, any_frame=False)
            self._frames, self._by_pts, self._last_key = self.container.decode(self.stream), True, None
            self.seeks += 1
            self._advance()
            if self.index <= index:
                if self.index <= here:  # landed behind where it was: the keyframes are further apart than that
                    self._gop = max(self._gop, index - self.index + 1)
                return
        raise NotConstantRate  # even the start decodes past it: decode in order

    def _restart(self) -> None:
        if not self._by_pts:
            raise VideoError(f"{self.source}: frame times are not increasing; cannot decode it")
        self.container.seek(0)
        self._frames, self._by_pts, self.min_gap = self.container.decode(self.stream), False, None
        self.index, self.frame, self.time = -1, None, None


def _decode_indices(container, wanted: list[int], size: tuple[int, int], budget: DecodeBudget, source: str, fps: float):
    """Decode the wanted frame indices in order, each resized to `size` (h, w) as soon as it is decoded, so memory
    holds one full-size frame at a time; returns (frames [T, C, h, w] uint8, pts seconds, frames decoded)."""
    import av

    cursor = FrameCursor(container, fps, budget, source, planned_frames=wanted[-1] + 1 if wanted else 0)
    frames, times = [], []
    try:
        for i in wanted:
            if not cursor.get(i):
                break
            frames.append(_resized(cursor.rgb_array(), size))
            times.append(cursor.seconds())
    except av.FFmpegError as e:
        if not frames:
            raise VideoError(f"{source}: corrupt video, decoding failed ({e})") from None
    return frames, times, cursor.index + 1


def _resized(array, size: tuple[int, int]):
    """One RGB frame [H, W, C] → [C, h, w] uint8 with qwen-vl-utils' resize (bicubic, antialiased): released Qwen-VL
    checkpoints were trained on its pixels, which the decoder's own scaler would not reproduce."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    frame = torch.from_numpy(array).permute(2, 0, 1)
    if tuple(frame.shape[1:]) != size:
        frame = F.resize(frame[None], list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)[0]
    return frame.contiguous()


def _plan_and_decode(container, info: VideoInfo, sampling: FrameSampling, budget: DecodeBudget, source: str):
    try:
        start, end, idx = sample_plan(info, sampling)
    except UserError as e:
        raise VideoError(f"{source}: {e}") from None
    budget.check_plan(info, idx[-1] + 1, source)  # before any frame is decoded
    size = frame_size(info.height, info.width, len(idx), sampling)
    return (start, end, idx, *_decode_indices(container, idx, size, budget, source, info.fps))


def _read_local(path: str, source: str, sampling: FrameSampling, budget: DecodeBudget) -> DecodedVideo:
    with _open_container(path, source) as container:
        info = _stream_info(container, source)
        start, end, idx, arrays, times, decoded = _plan_and_decode(container, info, sampling, budget, source)
    if len(arrays) < len(idx):
        # the container promised more frames than decode: sample again from what really decodes
        if decoded < FRAME_FACTOR:
            raise VideoError(f"{source}: corrupt or truncated video, only {decoded} frame(s) decode")
        info = VideoInfo(decoded / info.fps, info.fps, decoded, info.width, info.height)
        with _open_container(path, source) as container:
            start, end, idx, arrays, times, decoded = _plan_and_decode(container, info, sampling, budget, source)
        if len(arrays) < len(idx):
            raise VideoError(f"{source}: corrupt video, frames stop decoding at {decoded}")
    import torch

    frames = torch.stack(arrays)
    count = end - start + 1
    meta = VideoMetadata(
        fps=info.fps,
        total_num_frames=info.num_frames,
        duration=info.duration,
        frames_indices=idx,
        timestamps=[round(t, 6) for t in times],
        sampled_fps=len(idx) / count * info.fps,
        width=info.width,
        height=info.height,
        window_start=start,
        window_end=end,
    )
    return DecodedVideo(frames=frames, metadata=meta, source=source, sampling=sampling)


def read_video(
    source: str | os.PathLike, sampling: FrameSampling | None = None, budget: DecodeBudget = NO_BUDGET
) -> DecodedVideo:
    """Decode and sample a video from a local path, file:// or http(s) URL. VideoError names the file; VideoTooLarge
    the budget's limit it would exceed (checked before decoding)."""
    source = str(source)
    sampling = sampling or FrameSampling()
    with local_file(source) as path:
        return _read_local(path, source, sampling, budget)


# ---------------------------------------------------------------- decode-once cache

_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()
_cache_bytes = 0
_cache_budget = 0  # bytes of decoded frames kept beyond the last CACHE_SIZE videos (set_cache_budget)


def set_cache_budget(megabytes: int) -> None:
    """Keep decoded videos up to `megabytes` of frames (LRU), not just the last CACHE_SIZE. Training that revisits
    the same videos every epoch then decodes each once: on the tiny world decoding was half an SFT step."""
    global _cache_budget
    if megabytes < 0:
        raise UserError(f"video cache budget must be >= 0 MB, got {megabytes}")
    with _cache_lock:
        _cache_budget = int(megabytes) << 20
        _evict()


def _evict() -> None:
    global _cache_bytes
    while _cache and len(_cache) > CACHE_SIZE and _cache_bytes > _cache_budget:
        _, old = _cache.popitem(last=False)
        _cache_bytes -= _nbytes(old)


def _nbytes(video: DecodedVideo) -> int:
    return int(video.frames.numel() * video.frames.element_size())


def _cache_key(source: str, sampling: FrameSampling):
    path = _local_path(source)
    if path is None:
        return (source, sampling)
    try:
        st = os.stat(path)
    except OSError:
        return None  # read_video raises the clear error
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size, sampling)


def read_video_cached(
    source: str | os.PathLike, sampling: FrameSampling | None = None, budget: DecodeBudget = NO_BUDGET
) -> DecodedVideo:
    """read_video with a small LRU (CACHE_SIZE entries) keyed by (path, mtime, size, sampling): decode once and
    reuse the same DecodedVideo for all rollouts and the loss pass. A changed file is decoded again."""
    source = str(source)
    sampling = sampling or FrameSampling()
    key = _cache_key(source, sampling)
    if key is not None:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
    video = read_video(source, sampling, budget)
    if key is not None:
        global _cache_bytes
        with _cache_lock:
            if key not in _cache:
                _cache[key] = video
                _cache_bytes += _nbytes(video)
                _evict()
    return video


def clear_cache() -> None:
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0
