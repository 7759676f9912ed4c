"""Decode time per video, PyAV's per-frame `to_ndarray(format="rgb24")` (a new swscale context each frame) against one
`VideoReformatter` per stream (what `vtg.data.video` does), with frame threading as the reader sets it ("AUTO").
Also checks the two give identical pixels.

    # any synthetic world, e.g. bench/learning/per_kind_worlds/'s multi world (56x56, 2 fps, 8-20 s):
    OMP_NUM_THREADS=1 .venv/bin/python bench/video/decode.py --videos 'outputs/multi_only_world/videos/v001*.mp4' \
        --out bench/video/decode.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import time


def decode_all(paths, reuse: bool) -> tuple[float, list]:
    import av
    from av.video.reformatter import VideoReformatter

    frames, t0 = [], time.perf_counter()
    for path in paths:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rgb = VideoReformatter() if reuse else None
            for frame in container.decode(stream):
                frames.append(
                    rgb.reformat(frame, format="rgb24").to_ndarray() if reuse else frame.to_ndarray(format="rgb24")
                )
    return (time.perf_counter() - t0) / len(paths) * 1000, frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help="glob of MP4 files")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import av
    import numpy as np

    paths = sorted(glob.glob(args.videos))
    if not paths:
        raise SystemExit(f"no files match {args.videos!r}")
    best = {}
    for reuse in (False, True) * args.rounds:
        ms, frames = decode_all(paths, reuse)
        name = "one_reformatter_per_stream" if reuse else "to_ndarray_per_frame"
        best[name] = min(best.get(name, ms), ms)
        best.setdefault("_frames", {})[name] = frames
    a, b = best.pop("_frames").values()
    result = {
        "videos": len(paths),
        "frames": len(a),
        "identical_pixels": all(np.array_equal(x, y) for x, y in zip(a, b)),
        "ms_per_video": {k: round(v, 1) for k, v in best.items()},
        "machine": f"{platform.machine()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, PyAV {av.__version__}",
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
