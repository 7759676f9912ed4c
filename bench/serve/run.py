"""Serving benchmark: latency (p50/p95) and requests/s at several concurrencies, plus a schemathesis fuzz run.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.serve.run [--model DIR] [--requests 32] [--concurrency 1 4 16] \
        [--fuzz-examples 30]                       # writes bench/serve/results.json, fuzz-junit.xml, the README table
    .venv/bin/python -m bench.serve.run --render   # README table from the committed results.json only

Without --model a tiny random Qwen2.5-VL is built (vtg.train.tiny_model) and a small synthetic world generated.
`vtg serve` runs as a child process (`tests.support.server.start_server`). Each request: POST
/v1/chat/completions with one synthetic video (file:// under the allowed root), temperature 0, `--max-tokens` new
tokens. Zero errors are required (exit 1 otherwise). The fuzz run sends schemathesis-generated requests for every
operation of /openapi.json; request and 5xx counts come from the server's own /metrics (before/after), so they do
not depend on schemathesis' report format.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import add_result_args, measured_line, provenance, read_json, table, update_readme, write_json

HERE = Path(__file__).resolve().parent


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def _level(url: str, videos: list[str], concurrency: int, n: int, max_tokens: int) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    queue = list(range(n))

    async def worker(client: httpx.AsyncClient):
        while queue:
            i = queue.pop()
            body = {
                "model": "tiny",
                "max_tokens": max_tokens,
                "temperature": 0,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "video_url", "video_url": {"url": videos[i % len(videos)]}},
                            {"type": "text", "text": "When is the red square visible?"},
                        ],
                    }
                ],
            }
            t0 = time.perf_counter()
            r = await client.post(url + "/v1/chat/completions", json=body)
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:200]}")

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": len(errors),
        "error_samples": errors[:3],
        "p50_s": round(statistics.median(lat), 3),
        "p95_s": round(_pct(lat, 0.95), 3),
        "req_per_s": round(n / wall, 3),
        "wall_s": round(wall, 2),
    }


def _metric_counts(url: str) -> tuple[int, int]:
    """(all requests, 5xx) from the server's Prometheus counters."""
    total = five = 0
    for line in httpx.get(url + "/metrics").text.splitlines():
        m = re.match(r'vtg_requests_total\{route="[^"]*",status="(\d+)"\} ([0-9.e+]+)', line)
        if m:
            total += int(float(m.group(2)))
            five += int(float(m.group(2))) if m.group(1).startswith("5") else 0
    return total, five


def _fuzz(url: str, examples: int, out_dir: Path) -> dict:
    before = _metric_counts(url)
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(exe),
        "run",
        url + "/openapi.json",
        "-n",
        str(examples),
        "--checks",
        "not_a_server_error",
        "--seed",
        "0",
        "--request-timeout",
        "120",
        "--report",
        "junit",
        "--report-junit-path",
        "fuzz-junit.xml",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir)
    after = _metric_counts(url)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
    junit = (out_dir / "fuzz-junit.xml").read_text() if (out_dir / "fuzz-junit.xml").exists() else ""
    failures = sum(int(n) for n in re.findall(r'<testsuite [^>]*failures="(\d+)"', junit))
    shown = " ".join(cmd[1:]).replace(url, "http://127.0.0.1:PORT")  # the port is a free one, different each run
    return {
        "command": "schemathesis " + shown,
        "exit_code": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "requests": after[0] - before[0] - 1,
        "server_5xx": after[1] - before[1],
        "schemathesis_failures": failures,
        "schemathesis_tail": tail,
    }


def _setup(args, tmp: Path) -> tuple[str, Path]:
    from vtg.data.synth import SynthConfig, generate

    model = args.model
    if not model:
        from vtg.train.tiny_model import build_tiny_model

        model = str(build_tiny_model("qwen2.5-vl", tmp / "tiny"))
    world = tmp / "world"
    generate(SynthConfig(n_videos=8, seed=0, fps=2.0, size=56, min_duration=8.0, max_duration=16.0), world, workers=1)
    return model, world


def section(res: dict) -> str:
    parts = [
        f"Command: `{res['command']}`  \n{measured_line(res)}  \n"
        f"Device: {res['device']}. Model: {res['model']}; {res['max_tokens']} new tokens a request, one "
        f"{res['video']} video each; engine start {res['engine_start_s']} s.",
        table(
            ["concurrency", "requests", "errors", "p50 s", "p95 s", "req/s"],
            [
                (r["concurrency"], r["requests"], r["errors"], r["p50_s"], r["p95_s"], r["req_per_s"])
                for r in res["levels"]
            ],
        ),
    ]
    f = res.get("fuzz")
    if f:
        parts.append(
            f"Fuzz (`{f['command']}`, report `fuzz-junit.xml`): {f['requests']} requests, "
            f"**{f['server_5xx']} 5xx** (schemathesis: {f['schemathesis_failures']} failing operations, "
            f"exit {f['exit_code']}, {f['wall_s']} s)."
        )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--fuzz-examples", type=int, default=30, help="0: no fuzz run")
    add_result_args(ap, HERE, "result JSON; fuzz-junit.xml goes beside it")
    args = ap.parse_args(argv)
    committed = HERE / "results.json"
    if args.render:
        update_readme(HERE / "README.md", section(read_json(committed)))
        return 0

    from tests.support.server import start_server

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vtg-bench-serve-") as tmp:
        tmp = Path(tmp)
        model, world = _setup(args, tmp)
        recipe = tmp / "serve.yaml"
        recipe.write_text(
            f"limits:\n  max_tokens: {max(args.max_tokens, 32)}\n  max_frames: 16\n"
            f"  max_concurrency: 16\n  max_queue: 64\n  request_timeout_s: 120\n"
        )
        t0 = time.perf_counter()
        server = start_server(
            [
                "--model",
                model,
                "--config",
                str(recipe),
                "--served-model-name",
                "tiny",
                "--allowed-local-media-path",
                str(world),
            ],
            tmp / "server.log",
        )
        engine_start = round(time.perf_counter() - t0, 1)
        try:
            videos = [p.resolve().as_uri() for p in sorted((world / "videos").glob("*.mp4"))]
            asyncio.run(_level(server.url, videos, 2, 4, args.max_tokens))  # warm-up (decode cache, first batches)
            levels = [
                asyncio.run(_level(server.url, videos, c, args.requests, args.max_tokens)) for c in args.concurrency
            ]
            for r in levels:
                print(
                    f"[bench serve] c={r['concurrency']}: p50 {r['p50_s']} s, p95 {r['p95_s']} s, "
                    f"{r['req_per_s']} req/s, {r['errors']} errors",
                    flush=True,
                )
            fuzz = _fuzz(server.url, args.fuzz_examples, out.parent) if args.fuzz_examples else None
        finally:
            server.stop()
    res = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.serve.run "
        + " ".join(sys.argv[1:] if argv is None else argv),
        **provenance(),
        "device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "model": model if args.model else "tiny random Qwen2.5-VL (vtg.train.tiny_model)",
        "video": "8-16 s 56x56 synthetic",
        "max_tokens": args.max_tokens,
        "engine_start_s": engine_start,
        "levels": levels,
        "fuzz": fuzz,
    }
    write_json(out, res)
    print(section(res))
    if out.resolve() == committed:
        update_readme(HERE / "README.md", section(res))
    bad = sum(r["errors"] for r in levels) + (fuzz["server_5xx"] + fuzz["schemathesis_failures"] if fuzz else 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
