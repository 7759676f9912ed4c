"""vtg.data.video: real MP4s encoded here, decoded with PyAV; sampling parity with qwen-vl-utils; the time scale seen
by transformers' real Qwen2.5-VL / Qwen3-VL processors."""

from __future__ import annotations

import os
import re
import sys
import types

import numpy as np
import pytest
import torch

from vtg.data import video as V
from vtg.data.synth import encode_mp4
from vtg.data.video import FrameSampling, VideoError, probe_video, read_video, read_video_cached
from vtg.errors import UserError

SMALL = dict(min_pixels=56 * 56, max_pixels=56 * 56 * 4)  # keep 56×56 frames at 56×56 (qwen default would upscale)
BOX = (20, 16, 36, 32)  # x0, y0, x1, y1 of the red square
RED = np.array([230, 30, 30])


def event_clip(path, fps: float, duration: float = 12.0, start: float = 4.0, end: float = 7.0, size=(56, 56)):
    """A grey clip with a red square on screen for frames whose time i/fps lies in [start, end)."""
    n = int(round(duration * fps))
    h, w = size
    frames = np.full((n, h, w, 3), 80, np.uint8)
    x0, y0, x1, y1 = BOX
    for i in range(n):
        if start <= i / fps < end:
            frames[i, y0:y1, x0:x1] = RED
    encode_mp4(frames, path, fps)
    return path


def red_frames(video: V.DecodedVideo) -> list[float]:
    """Timestamps of the sampled frames whose box centre is red (checked in the source geometry of BOX)."""
    f = video.frames.float()
    h, w = f.shape[2:]
    cy, cx = int((BOX[1] + BOX[3]) / 2 / 56 * h), int((BOX[0] + BOX[2]) / 2 / 56 * w)
    px = f[:, :, cy, cx]
    is_red = (px[:, 0] > 180) & (px[:, 1] < 90) & (px[:, 2] < 90)
    return [t for t, r in zip(video.metadata.timestamps, is_red.tolist()) if r]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {fps: event_clip(d / f"event_{fps}fps.mp4", fps) for fps in (1, 2, 4)}


def test_decode_frames_sizes_timestamps(clips):
    v = read_video(clips[2], FrameSampling(fps=2.0, **SMALL))
    assert v.frames.dtype == torch.uint8 and tuple(v.frames.shape) == (24, 3, 56, 56)
    m = v.metadata
    assert (m.fps, m.total_num_frames, m.duration, m.width, m.height) == (2.0, 24, 12.0, 56, 56)
    assert m.frames_indices == list(range(24))
    assert m.timestamps == [i / 2 for i in range(24)]
    assert m.sampled_fps == 2.0
    assert red_frames(v) == [4.0, 4.5, 5.0, 5.5, 6.0, 6.5]
    assert probe_video(clips[2]) == V.VideoInfo(duration=12.0, fps=2.0, num_frames=24, width=56, height=56)
    # file:// URLs read the same file
    u = read_video("file://" + str(clips[2]), FrameSampling(fps=2.0, **SMALL))
    assert torch.equal(u.frames, v.frames)


def test_pixels_are_pyav_rgb24_exactly(tmp_path):
    """The decoder reuses one swscale context per stream (speed): every pixel must equal PyAV's own conversion."""
    import av

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(8, 64, 96, 3), dtype=np.uint8)  # noise: any colour-conversion change shows
    encode_mp4(frames, tmp_path / "noise.mp4", 2.0)
    v = read_video(
        tmp_path / "noise.mp4", FrameSampling(fps=2.0, image_factor=32, min_pixels=64 * 96, max_pixels=64 * 96)
    )
    with av.open(str(tmp_path / "noise.mp4")) as c:
        want = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert tuple(v.frames.shape) == (8, 3, 64, 96)
    assert np.array_equal(v.frames.permute(0, 2, 3, 1).numpy(), want)


def test_frames_are_even_multiples_of_image_factor(tmp_path):
    path = event_clip(tmp_path / "odd.mp4", 2, duration=7.5, size=(58, 90))  # 15 frames, odd count and sizes
    for factor in (28, 32):
        v = read_video(path, FrameSampling(fps=2.0, image_factor=factor))
        t, c, h, w = v.frames.shape
        assert t % 2 == 0 and c == 3 and h % factor == 0 and w % factor == 0


def test_vllm_video_and_processor_metadata(clips):
    v = read_video(clips[4], FrameSampling(fps=1.0, **SMALL))
    arr, meta = v.vllm_video()
    assert arr.dtype == np.uint8 and arr.shape == (12, 56, 56, 3)
    assert np.array_equal(arr, v.frames.permute(0, 2, 3, 1).numpy())
    assert meta["do_sample_frames"] is False and meta["fps"] == 4.0 and meta["total_num_frames"] == 48
    assert meta["frames_indices"] == list(range(0, 48, 4))
    hf = v.hf_metadata()
    assert hf.sampled_fps == pytest.approx(1.0) and hf.timestamps == [float(i) for i in range(12)]


# ------------------------------------------------------------------ parity with qwen-vl-utils


class _PyAVDecord:
    """Test adapter: decord's VideoReader API over PyAV, so qwen-vl-utils' own fetch_video runs here unchanged
    (decord is not installed; torchvision 0.28 cannot read video)."""

    def __init__(self, path):
        import av

        with av.open(path) as c:
            s = c.streams.video[0]
            self.fps = float(s.average_rate)
            self.frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]

    def __len__(self):
        return len(self.frames)

    def get_avg_fps(self):
        return self.fps

    def get_batch(self, idx):
        return types.SimpleNamespace(asnumpy=lambda: np.stack([self.frames[i] for i in idx]))


@pytest.fixture
def qwen_fetch(monkeypatch):
    from qwen_vl_utils import vision_process

    monkeypatch.setitem(sys.modules, "decord", types.SimpleNamespace(VideoReader=_PyAVDecord))
    monkeypatch.setattr(vision_process, "get_video_reader_backend", lambda: "decord")

    def fetch(path, sampling: FrameSampling):
        ele = {"video": str(path), **sampling.qwen_ele()}
        video, meta = vision_process.fetch_video(
            ele, image_patch_size=sampling.image_factor // 2, return_video_metadata=True
        )
        return video, meta

    return fetch


@pytest.mark.parametrize(
    "clip_fps,sampling",
    [
        (2, FrameSampling()),  # qwen defaults: 56×56 is upscaled to the 128-token minimum
        (2, FrameSampling(fps=1.0, **SMALL)),
        (4, FrameSampling(fps=2.0, min_frames=4, max_frames=10, **SMALL)),
        (1, FrameSampling(fps=4.0, **SMALL)),  # asks for more frames than exist
        (2, FrameSampling(nframes=7, image_factor=32)),
        (2, FrameSampling(fps=2.0, video_start=3.2, video_end=9.1, **SMALL)),
        (4, FrameSampling(fps=2.0, total_pixels=20 * 28 * 28, min_pixels=28 * 28)),
        ("odd", FrameSampling(fps=2.0, max_pixels=200 * 28 * 28, image_factor=28)),
    ],
)
def test_sampling_parity_with_qwen_vl_utils(clips, tmp_path, qwen_fetch, clip_fps, sampling):
    path = clips[clip_fps] if clip_fps != "odd" else event_clip(tmp_path / "odd.mp4", 2, size=(58, 90))
    ours = read_video(path, sampling)
    theirs, meta = qwen_fetch(path, sampling)
    assert tuple(ours.frames.shape) == tuple(theirs.shape)  # frame count and smart_resize size
    assert ours.metadata.frames_indices[0] == meta["frames_indices"][0]  # same window start
    assert ours.metadata.frames_indices[-1] <= meta["frames_indices"][-1]
    assert ours.metadata.processor_dict()["total_num_frames"] == meta["total_num_frames"]
    assert ours.metadata.fps == pytest.approx(meta["fps"])


# ------------------------------------------------------------------ windows, errors, cache


def test_video_start_end_window(clips):
    v = read_video(clips[2], FrameSampling(fps=2.0, video_start=3.0, video_end=9.0, **SMALL))
    m = v.metadata
    assert (m.window_start, m.window_end) == (6, 18)  # ceil(3.0*2), floor(9.0*2), as qwen-vl-utils
    assert len(m.frames_indices) == 12 and m.timestamps[0] == 3.0 and m.timestamps[-1] <= 9.0
    assert m.processor_dict()["total_num_frames"] == 13
    assert m.sampled_fps == pytest.approx(12 / 13 * 2)
    assert all(4.0 <= t < 7.0 for t in red_frames(v)) and len(red_frames(v)) == 6
    with pytest.raises(VideoError, match="event_2fps.mp4"):
        read_video(clips[2], FrameSampling(video_start=11.9, video_end=12.0))


def _bad_files(tmp_path, clips):
    data = clips[2].read_bytes()
    files = {
        "random.mp4": os.urandom(4096),
        "truncated.mp4": data[: len(data) // 3],
        "notes.txt": b"this is not a video\n",
        "empty.mp4": b"",
    }
    out = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        out[name] = str(tmp_path / name)
    return out


def test_bad_videos_raise_video_error_naming_the_file(tmp_path, clips):
    bad = _bad_files(tmp_path, clips)
    bad["missing.mp4"] = str(tmp_path / "missing.mp4")
    bad["a folder"] = str(tmp_path)
    for name, path in bad.items():
        with pytest.raises(VideoError) as e:
            read_video(path)
        assert path in str(e.value), (name, str(e.value))
        assert isinstance(e.value, UserError)
    with pytest.raises(VideoError, match="unsupported video URL scheme 'ftp'"):
        read_video("ftp://example.com/a.mp4")
    with pytest.raises(VideoError, match="missing.mp4"):
        probe_video(bad["missing.mp4"])


def test_zero_frame_and_audio_only_files(tmp_path):
    import av

    zero = tmp_path / "zero.mp4"
    with av.open(str(zero), "w") as c:
        s = c.add_stream("libx264", rate=2)
        s.width = s.height = 56
        s.pix_fmt = "yuv420p"
    with pytest.raises(VideoError, match="zero.mp4"):
        read_video(zero)
    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoError, match="audio.wav: contains no video stream"):
        read_video(audio)


def test_frame_sampling_config_errors():
    assert FrameSampling.from_dict({"fps": 1.0, "max_pixels": 1000}) == FrameSampling(fps=1.0, max_pixels=1000)
    with pytest.raises(UserError, match=r"unknown key\(s\): fsp \(did you mean fps\?\)"):
        FrameSampling.from_dict({"fsp": 2})
    with pytest.raises(UserError, match="either 'fps' or 'nframes'"):
        FrameSampling.from_dict({"fps": 2, "nframes": 8})
    for bad in (
        dict(fps=0),
        dict(min_pixels=10, max_pixels=5),
        dict(video_start=5, video_end=4),
        dict(max_frames=2, min_frames=4),
        dict(nframes=1),
    ):
        with pytest.raises(UserError):
            FrameSampling(**bad)


SAVED_NFRAMES = FrameSampling(nframes=16, min_pixels=3136, max_pixels=3136)
SAVED_FPS = FrameSampling(fps=1.0, max_frames=64, min_pixels=3136, max_pixels=3136)


def test_sampling_saved_with_nframes_reads_back():
    """A model trained with `nframes` saves a vtg_sampling.json that reads back (its dict gave both fps and nframes,
    which reading refuses)."""
    assert FrameSampling.from_dict(SAVED_NFRAMES.to_dict()) == SAVED_NFRAMES
    assert FrameSampling.from_dict(SAVED_FPS.to_dict()) == SAVED_FPS


def test_overrides_naming_neither_fps_nor_nframes_keep_the_saved_choice():
    # the combination that failed in eval: a model saved with nframes, a config capping max_frames
    assert SAVED_NFRAMES.updated({"max_frames": 32}) == FrameSampling(
        nframes=16, max_frames=32, min_pixels=3136, max_pixels=3136
    )
    # and a saved fps is kept too (training once reset it to the default 2.0)
    assert SAVED_FPS.updated({"max_frames": 32}) == FrameSampling(
        fps=1.0, max_frames=32, min_pixels=3136, max_pixels=3136
    )
    assert SAVED_FPS.updated({}) == SAVED_FPS and SAVED_FPS.updated(None) == SAVED_FPS


def test_an_override_naming_fps_or_nframes_replaces_the_saved_one():
    assert SAVED_NFRAMES.updated({"fps": 4.0}) == FrameSampling(fps=4.0, min_pixels=3136, max_pixels=3136)
    assert SAVED_FPS.updated({"nframes": 8}) == FrameSampling(
        nframes=8, max_frames=64, min_pixels=3136, max_pixels=3136
    )


def test_overrides_giving_both_or_an_unknown_key_are_refused_by_name():
    with pytest.raises(UserError, match="config sampling: give either 'fps' or 'nframes'"):
        SAVED_FPS.updated({"fps": 2.0, "nframes": 8}, "config sampling")
    with pytest.raises(UserError, match=r"config sampling: unknown key\(s\): max_frame \(did you mean max_frames"):
        SAVED_NFRAMES.updated({"max_frame": 32}, "config sampling")
    with pytest.raises(UserError, match="config sampling: expected a mapping"):
        SAVED_NFRAMES.updated([("max_frames", 32)], "config sampling")


def test_cache_hits_and_invalidation(tmp_path, monkeypatch):
    V.clear_cache()
    path = event_clip(tmp_path / "c.mp4", 2)
    s = FrameSampling(fps=1.0, **SMALL)
    a = read_video_cached(path, s)
    assert read_video_cached(str(path), s) is a  # hit: decoded once
    assert read_video_cached(path, FrameSampling(fps=2.0, **SMALL)) is not a  # other sampling, other entry
    event_clip(path, 2, start=1.0, end=2.0)  # rewritten file: decoded again
    os.utime(path, ns=(1, 1))
    b = read_video_cached(path, s)
    assert b is not a and red_frames(b) == [1.0]
    monkeypatch.setattr(V, "CACHE_SIZE", 2)
    read_video_cached(path, FrameSampling(fps=0.5, **SMALL))
    read_video_cached(path, FrameSampling(fps=0.25, min_frames=2, **SMALL))
    assert read_video_cached(path, s) is not b  # evicted by the LRU bound
    V.clear_cache()


def test_cache_budget_keeps_decoded_videos_by_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "CACHE_SIZE", 1)
    V.clear_cache()
    paths = [event_clip(tmp_path / f"c{i}.mp4", 2) for i in range(3)]
    s = FrameSampling(fps=1.0, **SMALL)
    first = [read_video_cached(p, s) for p in paths]
    assert read_video_cached(paths[2], s) is first[2]  # count bound: only the last one is kept
    assert read_video_cached(paths[0], s) is not first[0]
    try:
        V.set_cache_budget(1)  # 1 MB holds these three small clips
        second = [read_video_cached(p, s) for p in paths]
        assert all(read_video_cached(p, s) is v for p, v in zip(paths, second))  # all kept, each decoded once
        assert V._cache_bytes == sum(int(v.frames.numel()) for v in second)  # uint8 frames
        V.set_cache_budget(0)  # back to the count bound: the oldest two go
        assert len(V._cache) == 1 and V._cache_bytes == int(second[-1].frames.numel())
        with pytest.raises(UserError, match=">= 0 MB"):
            V.set_cache_budget(-1)
    finally:
        V.set_cache_budget(0)
        V.clear_cache()


# ------------------------------------------------------------------ THE time-scale test


def _byte_tokenizer():
    """A byte-level tokenizer with the Qwen-VL vision tokens, so processor outputs decode back to their text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        additional_special_tokens=[
            "<|vision_start|>",
            "<|vision_end|>",
            "<|image_pad|>",
            "<|video_pad|>",
            "<|endoftext|>",
        ],
    )


def _processors():
    import transformers as T

    tok = _byte_tokenizer()
    q25 = T.Qwen2_5_VLProcessor(
        image_processor=T.Qwen2VLImageProcessor(), tokenizer=tok, video_processor=T.Qwen2VLVideoProcessor()
    )
    q3 = T.Qwen3VLProcessor(
        image_processor=T.Qwen2VLImageProcessor(patch_size=16), tokenizer=tok, video_processor=T.Qwen3VLVideoProcessor()
    )
    return tok, q25, q3


PROMPT = "<|vision_start|><|video_pad|><|vision_end|>"


def processor_view(path, sample_fps: float, tok, q25, q3, with_metadata: bool = True):
    """(Qwen2.5-VL second_per_grid_ts, Qwen3-VL '<t seconds>' list) computed by the real processors from our
    frames (image_factor 28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
    out = []
    for proc, factor in ((q25, 28), (q3, 32)):
        v = read_video(path, FrameSampling(fps=sample_fps, image_factor=factor, min_pixels=factor * factor * 4))
        kwargs = v.hf_processor_kwargs()
        if not with_metadata:
            kwargs.pop("video_metadata")
        out.append(proc(text=[PROMPT], **kwargs))
    seconds = [float(x) for x in re.findall(r"<([\d.]+) seconds>", tok.decode(out[1]["input_ids"][0]))]
    return list(out[0]["second_per_grid_ts"]), seconds


@pytest.mark.parametrize("sample_fps,encodings", [(1.0, (1, 2, 4)), (2.0, (2, 4))])
def test_time_scale_is_independent_of_encoding_fps(clips, sample_fps, encodings):
    """A red square on screen 4.0–7.0 s of a 12 s clip, encoded at several frame rates: the sampled times, the event
    frames and what the Qwen2.5-VL / Qwen3-VL processors see of time must not depend on the encoding."""
    tok, q25, q3 = _processors()
    expected_ts = [k / sample_fps for k in range(int(12 * sample_fps))]
    expected_red = [t for t in expected_ts if 4.0 <= t < 7.0]
    expected_q3 = [(expected_ts[i] + expected_ts[i + 1]) / 2 for i in range(0, len(expected_ts), 2)]
    views = []
    for fps in encodings:
        v = read_video(clips[fps], FrameSampling(fps=sample_fps, **SMALL))
        assert v.metadata.timestamps == expected_ts, fps
        assert red_frames(v) == expected_red, fps
        assert v.metadata.sampled_fps == pytest.approx(sample_fps)
        spg, seconds = processor_view(clips[fps], sample_fps, tok, q25, q3)
        assert spg == [pytest.approx(2 / sample_fps)], fps  # Qwen2.5-VL: temporal patch 2 / sampled fps
        assert seconds == pytest.approx([round(t, 1) for t in expected_q3], abs=0.051), fps
        views.append((spg, seconds))
    assert all(view == views[0] for view in views)

    # control: the same frames without their metadata give a wrong time scale (this is what the test guards)
    spg, seconds = processor_view(clips[encodings[-1]], sample_fps, tok, q25, q3, with_metadata=False)
    assert spg != [pytest.approx(2 / sample_fps)]
    assert seconds != pytest.approx([round(t, 1) for t in expected_q3], abs=0.051)


def _wait_child(pid: int, seconds: float) -> int | None:
    """Exit status of child `pid`, or None (and the child killed) when it has not ended within `seconds`."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def test_garbage_is_collected_before_every_fork():
    """vtg.data.video collects garbage before a fork, so a decoder left in a reference cycle (PyAV < 18) is freed in
    the parent, with its threads, and not in a forked DataLoader worker, which then hangs joining threads it does
    not have (seen on an H200 machine with av 17). Automatic collection is off here: only the hook can free it."""
    import gc

    freed: list[int] = []

    class Cycle:
        def __del__(self):
            freed.append(os.getpid())

    gc.collect()
    gc.disable()
    try:
        cycle = Cycle()
        cycle.me = cycle
        del cycle
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        assert _wait_child(pid, 20) == 0
    finally:
        gc.enable()
    assert freed == [os.getpid()], "the cycle was not collected in the parent before the fork"


def test_a_process_forked_after_decoding_can_collect_and_exit(clips):
    """The failure itself: decode (frame threads), fork, collect in the child. With av 17 and no hook the child
    hangs for ever (measured in a scratch venv); with the locked av 18 it exits either way, so the test above is the
    one that catches a missing hook here."""
    read_video(clips[2], FrameSampling(fps=2.0, **SMALL))
    pid = os.fork()
    if pid == 0:
        import gc

        gc.collect()
        os._exit(0)
    assert _wait_child(pid, 20) == 0, "a child forked after a decode hung collecting garbage"


def test_record_videos_by_url_are_fetched_through_the_guarded_downloader(monkeypatch):
    """A record's http(s) video goes through vtg.data.fetch: a private address is refused, naming how to allow it."""
    from vtg.data.video import VideoError, read_video

    for url in ("http://127.0.0.1:9/a.mp4", "http://10.0.0.1/a.mp4", "http://169.254.169.254/latest"):
        with pytest.raises(VideoError, match="non-public address.*VTG_ALLOW_PRIVATE_URLS=1"):
            read_video(url)
    monkeypatch.setenv("VTG_ALLOW_PRIVATE_URLS", "1")  # allowed: the connection itself then fails (nothing listens)
    with pytest.raises(VideoError, match="fetching http://127.0.0.1:9/a.mp4 failed"):
        read_video("http://127.0.0.1:9/a.mp4")


def test_decode_budget_is_checked_from_the_header_before_any_frame(tmp_path, monkeypatch):
    from vtg.data.video import DecodeBudget, VideoTooLarge

    path = tmp_path / "wide.mp4"
    encode_mp4(np.zeros((4, 240, 320, 3), np.uint8), path, 2.0)
    decoded = []
    real = V._decode_indices
    monkeypatch.setattr(V, "_decode_indices", lambda *a, **k: decoded.append(1) or real(*a, **k))
    with pytest.raises(VideoTooLarge, match=r"320x240 \(76,800 pixels\) are over the limit of 50,000 \(limits.max_fr"):
        read_video(path, FrameSampling(fps=2.0), DecodeBudget(50_000, names=("limits.max_frame_pixels", "x")))
    with pytest.raises(
        VideoTooLarge, match=r"4 frames of 320x240 \(307,200 pixels\), over the limit of 300,000 \(max_de"
    ):
        read_video(path, FrameSampling(fps=2.0), DecodeBudget(max_decoded_pixels=300_000))
    assert decoded == []  # refused from the header: not a frame decoded
    assert read_video(path, FrameSampling(fps=2.0), DecodeBudget(320 * 240, 320 * 240 * 4)).frames.shape[0] == 4


def test_large_frames_are_resized_as_they_are_decoded(tmp_path):
    """Memory holds one full-size frame at a time, not every sampled frame at full size: 48 sampled 1280x720 frames
    would hold 133 MB of RGB (twice that while stacked) before they are resized to the model's size."""
    import subprocess
    import textwrap

    path = tmp_path / "hd.mp4"
    encode_mp4(np.random.default_rng(0).integers(0, 255, (48, 720, 1280, 3), dtype=np.uint8), path, 4.0)
    script = textwrap.dedent(f"""
        import resource
        from vtg.data.video import FrameSampling, read_video
        small = FrameSampling(fps=4.0, max_frames=48, max_pixels=28 * 28 * 16, min_pixels=28 * 28 * 4)
        read_video({str(path)!r}, FrameSampling(fps=4.0, nframes=2, max_pixels=28 * 28 * 16, min_pixels=28 * 28 * 4))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        video = read_video({str(path)!r}, small)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(video.frames.shape[0], (after - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    frames, grown_mb = (int(x) for x in out.stdout.split())
    assert frames == 48 and grown_mb < 60, grown_mb


@pytest.mark.parametrize("threads", [None, 1, 4])  # 4: the server's decode_threads, where the end case shows
def test_frames_over_the_limit_are_refused_wherever_they_are(tmp_path, threads):
    """Frames of 8000x8000 after a 64x64 header: refused by the decoder itself (never allocated), also when they end
    the stream, where frame threads drop the refused frame silently (that is not a truncated video)."""
    from vtg.data.video import DecodeBudget, VideoTooLarge, read_video

    from support.hostile import size_switching_mp4

    budget = DecodeBudget(500_000, None, max_threads=threads)
    for name, segments in (
        ("middle", [(2, 64, 64), (2, 8000, 8000), (4, 64, 64)]),
        ("end", [(2, 64, 64), (2, 8000, 8000)]),
    ):
        path = size_switching_mp4(tmp_path / f"{name}.mp4", segments)
        with pytest.raises(VideoTooLarge, match="8000x8000.*max_frame_pixels.*refused"):
            read_video(path, FrameSampling(nframes=4), budget)
