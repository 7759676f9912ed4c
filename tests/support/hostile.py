"""Hostile video files, built here with PyAV's libx264 (tests and `bench/serve/attack.py`).

`size_switching_mp4` writes an MP4 whose header (the first sequence parameter set) describes small frames, and whose
stream then carries new in-band parameter sets for much larger ones: a decoder that trusts the header decodes (or
allocates) what the header never announced. Each segment is encoded by its own encoder and the Annex-B streams are
joined, then remuxed without re-encoding, so every size change is a real SPS change that FFmpeg follows.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path


def _annexb(segments: list[tuple[int, int, int]], fps: int) -> bytes:
    import av

    out = bytearray()
    for count, height, width in segments:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = Fraction(1, fps)
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "40"}
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:  # flat grey: a 16000x16000 frame compresses to a few hundred kB
            plane.update(b"\x80" * plane.buffer_size)
        for i in range(count):
            frame.pts = i
            out += b"".join(bytes(p) for p in enc.encode(frame))
        out += b"".join(bytes(p) for p in enc.encode(None))
    return bytes(out)


def size_switching_mp4(path: str | os.PathLike, segments: list[tuple[int, int, int]], fps: int = 2) -> Path:
    """An MP4 of `segments` = [(frames, height, width), …] in order, at `fps`; its header shows the first size."""
    import av

    path = Path(path)
    with tempfile.NamedTemporaryFile(suffix=".h264") as raw:
        raw.write(_annexb(segments, fps))
        raw.flush()
        with av.open(raw.name, format="h264") as src, av.open(str(path), "w") as dst:
            stream = dst.add_stream_from_template(src.streams.video[0])
            stream.time_base = Fraction(1, 1000)
            k = 0
            for packet in src.demux(src.streams.video[0]):
                if packet.size == 0:
                    continue
                packet.pts = packet.dts = k * 1000 // fps
                packet.duration = 1000 // fps  # else the raw stream's own, in its own time base: a 600-s last frame
                packet.time_base, packet.stream = Fraction(1, 1000), stream
                dst.mux(packet)
                k += 1
    return path
