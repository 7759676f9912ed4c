"""Adversarial run of `vtg serve`: hostile and careless clients against one server, while good requests keep coming.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.serve.attack     # writes bench/serve/attack.json and the README table
    .venv/bin/python -m bench.serve.attack --render              # README table from the committed attack.json only

A tiny random Qwen2.5-VL is built and served (default limits but `body_timeout_s: 5`, so stalled clients are cut
off within the run). Phases, each with good grounding requests mixed in: oversized frames (a few-kB 4096x4096 video:
16.8 Mpx a frame, over the 8.3 Mpx limit), chunked bodies of 2.5 MiB with no length, slow clients that stop sending
half-way, bad Unicode (lone surrogates in JSON, bodies that are not UTF-8), then everything mixed at concurrency 16
and 100. Throughout, /health is polled every 0.1 s and the RSS of the server's processes (the API server and the
engine core) sampled. Reported: status counts per kind, 5xx, peak RSS against the idle RSS before the attack, and
/health latency under attack. Targets: no 5xx, peak RSS under 2x idle, /health p95 under 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import measured_line, provenance, read_json, table, update_readme, write_json

HERE = Path(__file__).resolve().parent
LONE = '{"video": "%s", "query": "the red \\ud800 square"}'


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


class Watch:
    """/health latency and the server processes' RSS, sampled in the background."""

    def __init__(self, url: str, pid: int):
        import psutil

        self.url, self.proc = url, psutil.Process(pid)
        self.health: list[tuple[float, float, int]] = []  # (t, latency, status)
        self.rss: list[int] = []
        self._stop = threading.Event()

    def rss_now(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:  # a child that exited in between
                pass
        return total

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    status = client.get(self.url + "/health").status_code
                except httpx.HTTPError:
                    status = 0
                self.health.append((time.time(), time.perf_counter() - t0, status))
                self.rss.append(self.rss_now())
                self._stop.wait(0.1)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


async def _good(client: httpx.AsyncClient, video: str) -> int:
    r = await client.post(
        "/v1/grounding", json={"video": video, "query": "the red square", "samples": 1, "max_tokens": 16}
    )
    return r.status_code


async def _huge(client: httpx.AsyncClient, video: str) -> int:
    return (await client.post("/v1/grounding", json={"video": video, "query": "q"})).status_code


async def _chunked(client: httpx.AsyncClient, _video: str) -> int:
    async def body():
        for _ in range(40):
            yield b"x" * 65536

    try:
        r = await client.post("/v1/grounding", content=body(), headers={"Content-Type": "application/json"})
        return r.status_code
    except httpx.HTTPError:  # the server answered 413 and closed while the body was still going out
        return 413


async def _slow(client: httpx.AsyncClient, _video: str) -> int | str:
    host, port = client.base_url.host, client.base_url.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /v1/grounding HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 500\r\n\r\n{"video": '
    )
    await writer.drain()
    try:
        line = await asyncio.wait_for(reader.readline(), 60)
        return int(line.split()[1]) if line else 0
    except TimeoutError:
        return "no answer in 60 s"
    finally:
        writer.close()


async def _lone_surrogate(client: httpx.AsyncClient, video: str) -> int:
    r = await client.post(
        "/v1/grounding", content=(LONE % video).encode(), headers={"Content-Type": "application/json"}
    )
    return r.status_code


async def _not_utf8(client: httpx.AsyncClient, video: str) -> int:
    body = b'{"video": "' + video.encode() + b'", "query": "\xff\xfe"}'
    return (await client.post("/v1/grounding", content=body, headers={"Content-Type": "application/json"})).status_code


ATTACKS = {
    "oversized frames": _huge,
    "chunked 2.5 MiB body": _chunked,
    "slow client": _slow,
    "lone surrogate": _lone_surrogate,
    "body not UTF-8": _not_utf8,
}


async def _phase(url: str, kinds: list[str], videos: dict, concurrency: int, n: int, seed: int) -> Counter:
    """n requests at `concurrency`: the given attack kinds and good requests, shuffled."""
    rng = random.Random(seed)
    jobs = [rng.choice(kinds) for _ in range(n)]
    statuses: Counter = Counter()
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(kind: str):
            async with sem:
                fn = _good if kind == "good" else ATTACKS[kind]
                video = videos["huge"] if kind == "oversized frames" else rng.choice(videos["good"])
                try:
                    statuses[(kind, await fn(client, video))] += 1
                except httpx.HTTPError as e:
                    statuses[(kind, f"client error: {type(e).__name__}")] += 1

        await asyncio.gather(*(one(k) for k in jobs))
    return statuses


def _setup(tmp: Path) -> tuple[str, Path, Path]:
    import numpy as np

    from vtg.data.synth import SynthConfig, encode_mp4, generate
    from vtg.train.tiny_model import build_tiny_model

    model = str(build_tiny_model("qwen2.5-vl", tmp / "tiny"))
    world = tmp / "world"
    generate(SynthConfig(n_videos=8, seed=0, fps=2.0, size=56, min_duration=8.0, max_duration=16.0), world, workers=1)
    huge = world / "videos" / "huge.mp4"
    encode_mp4(np.zeros((2, 4096, 4096, 3), np.uint8), huge, 2.0)
    return model, world, huge


def section(res: dict) -> str:
    rows = []
    for phase in res["phases"]:
        for kind, counts in phase["statuses"].items():
            rows.append((phase["name"], phase["concurrency"], kind, ", ".join(f"{s}: {n}" for s, n in counts.items())))
    s = res["summary"]
    return "\n\n".join(
        [
            f"Command: `{res['command']}`  \n{measured_line(res)}  \n{res['setup']}",
            table(["phase", "concurrency", "request", "statuses"], rows),
            table(
                ["", "measured", "target"],
                [
                    ("5xx responses", s["server_5xx"], 0),
                    (
                        "peak RSS / idle RSS (API server + engine core)",
                        f"{s['peak_rss_gb']} / {s['idle_rss_gb']} GB = {s['rss_ratio']}x",
                        "< 2x",
                    ),
                    (
                        "/health under attack: p50 / p95 / max (s)",
                        f"{s['health_p50_s']} / {s['health_p95_s']} / {s['health_max_s']} ({s['health_polls']} polls, "
                        f"{s['health_failed']} not 200)",
                        "p95 < 0.5",
                    ),
                ],
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / "attack.json"))
    ap.add_argument("--render", action="store_true", help="only re-render README.md from the committed attack.json")
    args = ap.parse_args(argv)
    if args.render:
        update_readme(HERE / "README.md", section(read_json(HERE / "attack.json")), tag="attack")
        return 0
    from tests.support.server import start_server

    with tempfile.TemporaryDirectory(prefix="vtg-bench-attack-") as tmp:
        tmp = Path(tmp)
        model, world, huge = _setup(tmp)
        recipe = tmp / "serve.yaml"
        recipe.write_text(
            "limits:\n  body_timeout_s: 5\n  max_frames: 16\n  max_tokens: 32\n  max_concurrency: 8\n"
            "  max_queue: 256\n  request_timeout_s: 300\n"
        )
        server = start_server(
            ["--model", model, "--config", str(recipe), "--allowed-local-media-path", str(world)], tmp / "server.log"
        )
        try:
            videos = {"huge": str(huge), "good": [str(p) for p in sorted((world / "videos").glob("v*.mp4"))]}
            asyncio.run(_phase(server.url, ["good"], videos, 2, 4, 0))  # warm-up
            watch = Watch(server.url, server.proc.pid)
            idle = 0
            for _ in range(10):  # the idle server, after a warm-up
                idle = max(idle, watch.rss_now())
                time.sleep(0.1)
            phases = []
            with watch:
                t_attack = time.time()
                plan = [(kind, 8, 24) for kind in ATTACKS] + [("mixed", 16, 160), ("mixed", 100, 300)]
                for i, (kind, conc, n) in enumerate(plan):
                    kinds = list(ATTACKS) if kind == "mixed" else [kind]
                    t0 = time.perf_counter()
                    counts = asyncio.run(_phase(server.url, kinds + ["good"], videos, conc, n, seed=i))
                    print(f"[attack] {kind} c={conc}: {dict(counts)} in {time.perf_counter() - t0:.1f} s", flush=True)
                    by_kind: dict[str, dict] = {}
                    for (k, status), count in sorted(counts.items(), key=str):
                        by_kind.setdefault(k, {})[str(status)] = count
                    phases.append({"name": kind, "concurrency": conc, "requests": n, "statuses": by_kind})
            metrics = httpx.get(server.url + "/metrics", timeout=10).text
        finally:
            server.stop()
    server_5xx = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("vtg_requests_total") and 'status="5' in line
    )
    lat = [lat for t, lat, _ in watch.health if t >= t_attack]
    peak = max(watch.rss)
    res = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.serve.attack",
        **provenance(),
        "setup": (
            "Tiny random Qwen2.5-VL, vLLM CPU engine; limits: defaults (max_frame_pixels 8.3 Mpx, 1 MiB JSON "
            "bodies) with body_timeout_s 5, max_concurrency 8, max_queue 256; good requests: /v1/grounding on "
            "8-16 s 56x56 synthetic videos, 1 sample, 16 tokens."
        ),
        "phases": phases,
        "summary": {
            "server_5xx": int(server_5xx),
            "idle_rss_gb": round(idle / 1e9, 2),
            "peak_rss_gb": round(peak / 1e9, 2),
            "rss_ratio": round(peak / idle, 2),
            "health_polls": len(lat),
            "health_failed": sum(1 for t, _, st in watch.health if t >= t_attack and st != 200),
            "health_p50_s": round(statistics.median(lat), 3),
            "health_p95_s": round(_pct(lat, 0.95), 3),
            "health_max_s": round(max(lat), 3),
        },
    }
    write_json(args.out, res)
    if Path(args.out).resolve() == (HERE / "attack.json").resolve():
        update_readme(HERE / "README.md", section(res), tag="attack")
    print(section(res))
    s = res["summary"]
    return 0 if s["server_5xx"] == 0 and s["rss_ratio"] < 2 and s["health_p95_s"] < 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
