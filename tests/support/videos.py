"""Long videos made fast for tests and benches: a grey level per frame compresses to little, so hours are written
in seconds."""

from __future__ import annotations

import os

import numpy as np


def grey_video(path: str | os.PathLike, seconds: float, fps: float = 2.0, size: int = 56):
    from vtg.data.synth import encode_mp4_chunks

    rng = np.random.default_rng(0)
    n = int(seconds * fps)
    chunks = (
        np.broadcast_to(
            rng.integers(60, 120, (min(600, n - i), 1, 1, 1), dtype=np.uint8), (min(600, n - i), size, size, 3)
        )
        for i in range(0, n, 600)
    )
    encode_mp4_chunks(chunks, path, fps)
    return path


def hls_vod(video: str | os.PathLike, folder: str | os.PathLike, segment_s: float = 2.0) -> str:
    """`video` re-encoded as an HLS VOD (H.264 in MPEG-TS segments of `segment_s`, a keyframe at each) in `folder`:
    returns the playlist's file name there (`index.m3u8`)."""
    from fractions import Fraction

    import av

    os.makedirs(folder, exist_ok=True)
    with av.open(str(video)) as src:
        stream = src.streams.video[0]
        fps = Fraction(stream.average_rate or 2).limit_denominator(1000)
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
    opts = {"hls_time": str(segment_s), "hls_playlist_type": "vod", "hls_list_size": "0",
            "hls_segment_filename": os.path.join(str(folder), "seg%03d.ts")}  # fmt: skip
    with av.open(os.path.join(str(folder), "index.m3u8"), "w", format="hls", options=opts) as dst:
        out = dst.add_stream("libx264", rate=fps)
        out.width, out.height, out.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        out.options = {"g": str(max(1, round(float(fps) * segment_s))), "sc_threshold": "0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, 1 / fps
            for packet in out.encode(frame):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return "index.m3u8"
