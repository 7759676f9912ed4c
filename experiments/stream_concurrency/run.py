"""How many live streams one `vtg serve` keeps at >= 1x real time on the 2-core CPU, past bench/stream's 8.

bench/stream's throughput part stopped at 8 streams at once (all at >= 8.5x real time). This runs the same part
(`bench.stream.run.throughput`: N 10-min test videos of bench/long's distractor world read by the server at once, as
fast as the model answers, each stream's real-time factor = media seconds / wall seconds) at more levels, with the
same model and server settings, alone on the machine:

    HF_HUB_OFFLINE=1 .venv/bin/python -m experiments.stream_concurrency.run --long-out OUT --levels 8,16,32

(`OUT`: bench/long's --out.) Writes results.json here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from bench.common import read_json
    from bench.stream.run import records_of, throughput
    from tests.support.server import start_server

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--long-out", required=True)
    p.add_argument("--levels", default="8,16,32")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()
    long_out = Path(args.long_out)
    levels = [int(x) for x in args.levels.split(",")]
    model, world = long_out / "sft" / "final", long_out / "world"
    videos = [world / r["video"] for r in records_of(long_out, "world", 10) if r["moments"]]
    # fewer distinct present videos than streams: the list repeats (each stream is its own session either way)
    videos = (videos * (1 + max(levels) // len(videos)))[: max(levels)]
    with tempfile.TemporaryDirectory(prefix="vtg-stream-conc-") as tmp:
        recipe = Path(tmp) / "serve.yaml"
        recipe.write_text(f"serve:\n  limits:\n    max_streams: {max(levels)}\n    max_concurrency: 8\n")
        t0 = time.perf_counter()
        server = start_server(["--model", str(model), "--config", str(recipe),
                               "--allowed-local-media-path", str(world)], Path(tmp) / "server.log")  # fmt: skip
        engine_start = round(time.perf_counter() - t0, 1)
        try:
            rows = throughput(server.url, videos, levels)
        finally:
            server.stop()
    fps = read_json(model / "vtg_sampling.json")["fps"]
    out = {"model": str(model), "fps": fps, "engine_start_s": engine_start, "levels": levels, "throughput": rows,
           "server_limits": {"max_concurrency": 8}, "videos": "10-min present test families of bench/long's world"}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
