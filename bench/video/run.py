"""Video decode time per video: PyAV's per-frame `to_ndarray(format="rgb24")` (a new swscale context every frame)
against one `VideoReformatter` per stream (what `vtg.data.video` does), both with frame threading "AUTO" as the
reader sets it, plus the product's own reader `vtg.data.video.read_video` (probe + frame sampling + decode, with the
tiny recipes' sampling). Also checks that the two PyAV ways give identical pixels.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python -m bench.video.run            # writes bench/video/results.json
    .venv/bin/python -m bench.video.run --render       # README table from the committed results.json only

Without --videos it generates the world it measures: 100 synthetic videos (seed 0, multi kind, 8-20 s, 2 fps,
56x56) in a temporary folder; --videos takes a glob of MP4 files instead. Each way runs --rounds times; the best
round counts.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import add_result_args, measured_line, provenance, read_json, table, update_readme, write_json

HERE = Path(__file__).resolve().parent
WAYS = {
    "to_ndarray_per_frame": 'PyAV `frame.to_ndarray(format="rgb24")` (new swscale context per frame)',
    "one_reformatter_per_stream": "one `VideoReformatter` per stream (what `vtg.data.video` does)",
    "vtg_read_video": "`vtg.data.video.read_video` (probe + sampling + decode; tiny recipes' sampling)",
}


def decode_all(paths: list[str], reuse: bool) -> tuple[float, list]:
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


def read_all(paths: list[str]) -> float:
    """ms per video through the product's reader (no cache), with the tiny recipes' frame sampling."""
    from vtg.data.video import FrameSampling, read_video

    sampling = FrameSampling(fps=2.0, min_pixels=3136, max_pixels=4096, max_frames=64)
    read_video(paths[0], sampling)  # warm-up: the first call pays imports (torch) that are no decode cost
    t0 = time.perf_counter()
    for path in paths:
        read_video(path, sampling)
    return (time.perf_counter() - t0) / len(paths) * 1000


def synth_videos(folder: Path, n: int) -> str:
    from vtg.data.synth import SynthConfig, generate

    generate(
        SynthConfig(
            n_videos=n, seed=0, min_duration=8.0, max_duration=20.0, kinds=("multi",), split_fractions=(1.0, 0.0, 0.0)
        ),
        folder,
        workers=1,
    )
    return str(folder / "videos" / "*.mp4")


def measure(pattern: str, rounds: int) -> dict:
    import av
    import numpy as np

    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no files match {pattern!r}")
    best: dict[str, float] = {}
    frames: dict[str, list] = {}
    for _ in range(rounds):
        for reuse in (False, True):
            name = "one_reformatter_per_stream" if reuse else "to_ndarray_per_frame"
            ms, frames[name] = decode_all(paths, reuse)
            best[name] = min(best.get(name, ms), ms)
        ms = read_all(paths)
        best["vtg_read_video"] = min(best.get("vtg_read_video", ms), ms)
    a, b = frames["to_ndarray_per_frame"], frames["one_reformatter_per_stream"]
    return {
        "videos": len(paths),
        "frames": len(a),
        "identical_pixels": all(np.array_equal(x, y) for x, y in zip(a, b)),
        "ms_per_video": {k: round(v, 1) for k, v in best.items()},
        "rounds": rounds,
        "settings": f"PyAV {av.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
    }


def section(r: dict) -> str:
    ms = r["ms_per_video"]
    rows = [(WAYS.get(k, k), v) for k, v in ms.items()]
    return "\n\n".join(
        [
            f"Command: `{r.get('command', 'not recorded')}`  \n{measured_line(r)}  \n"
            f"{r['videos']} videos, {r['frames']} frames; {r.get('settings', r.get('machine', ''))}.",
            table(["decode", "ms per video (best round)"], rows),
            f"Identical pixels from the two PyAV ways: **{'yes' if r['identical_pixels'] else 'NO'}**. "
            f"One reformatter per stream: {ms['to_ndarray_per_frame'] / ms['one_reformatter_per_stream']:.1f}x faster "
            "than a context per frame.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", default=None, help="glob of MP4 files (default: 100 synthetic videos, generated)")
    p.add_argument("--n-videos", type=int, default=100, help="synthetic videos to generate without --videos")
    p.add_argument("--rounds", type=int, default=3)
    add_result_args(p, HERE)
    args = p.parse_args(argv)
    committed = HERE / "results.json"
    if not args.render:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        with tempfile.TemporaryDirectory(prefix="vtg_bench_video_") as tmp:
            pattern = args.videos or synth_videos(Path(tmp), args.n_videos)
            result = {
                "command": "python -m bench.video.run " + " ".join(sys.argv[1:] if argv is None else argv),
                **provenance(),
                **measure(pattern, args.rounds),
            }
        write_json(args.out, result)
        print(json.dumps(result, indent=1))
        if Path(args.out).resolve() != committed:
            return 0
    update_readme(HERE / "README.md", section(read_json(committed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
