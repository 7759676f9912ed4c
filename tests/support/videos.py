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
