"""Adversarial run of `vtg serve`: hostile and careless clients against one server, while good requests keep coming.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.serve.attack     # writes bench/serve/attack.json and the README table
    .venv/bin/python -m bench.serve.attack --render              # README table from the committed attack.json only

A tiny random Qwen2.5-VL is built and served with an API key (default limits but `body_timeout_s: 5`, so stalled
clients are cut off within the run). Phases, each with good grounding requests mixed in: oversized frames (a few-kB
4096x4096 video: 16.8 Mpx a frame, over the 8.3 Mpx limit), chunked bodies of 2.5 MiB with no length, slow clients
that stop sending half-way, bad Unicode (lone surrogates in JSON, bodies that are not UTF-8), malformed media
signatures, 100 kB headers, and files whose header lies (64x64 in the header, then 2500 frames of 3840x2160, or
frames of 16000x16000); then everything mixed at concurrency 16 and 100. Statuses are the server's answers only (a
client-side error is listed as such). Then, each lying file alone: the server's CPU seconds per request and its peak
RSS against idle (what reaches the decoder); clients that vanish (windowed requests on a 4-hour video left after
2 s; pipelined streams never read, then reset): seconds until every engine slot is free; and four 4-hour windowed
requests at once, with /health timed. Throughout, /health is polled every 0.1 s and the RSS of the server's
processes (the API server and the engine core) sampled. Targets (exit 1 when one is missed): no 5xx; peak RSS under
2x idle over the attack and under 1.5x idle for each lying file; lying files refused; /health p95 under 0.5 s under
attack and under the four 4-hour requests; every slot free within 5 s of its client leaving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
KEY = "attack-bench-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


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

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server's processes have used so far."""
        total = 0.0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:
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

    r = await client.post("/v1/grounding", content=body(), headers={"Content-Type": "application/json"})
    return r.status_code  # a server that answered and closed while the body went out shows as a client error


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


async def _bad_signature(client: httpx.AsyncClient, video: str) -> int:
    params = {"url": video, "exp": random.choice(["²", "9" * 5000, "١٢٣"]), "sig": "é" * 64}
    return (await client.get("/v1/media", params=params, headers={"Authorization": ""})).status_code  # no key


async def _huge_headers(client: httpx.AsyncClient, _video: str) -> int:
    return (await client.get("/health", headers={"X-Pad": "a" * 100_000})).status_code


async def _raw_stream_reset(client: httpx.AsyncClient, video: str) -> str:
    """Four streaming chats pipelined on one connection, never read, then an RST."""
    import socket
    import struct

    body = json.dumps(
        {
            "model": "tiny",
            "stream": True,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}}]}],
        }
    ).encode()
    req = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    sock = socket.create_connection((client.base_url.host, client.base_url.port))
    sock.sendall(req * 4)
    await asyncio.sleep(0.3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return "reset"


ATTACKS = {
    "oversized frames": _huge,
    "chunked 2.5 MiB body": _chunked,
    "slow client": _slow,
    "lone surrogate": _lone_surrogate,
    "body not UTF-8": _not_utf8,
    "bad media signature": _bad_signature,
    "100 kB headers": _huge_headers,
}
# files whose header lies: each is decoded by the server, so these measure what reaches the decoder
LYING_FILES = {
    "header 64x64, then 2680 frames 3840x2160": "grows_4k.mp4",
    "header 64x64, then 16000x16000 frames": "giant_frame.mp4",
}


async def _phase(url: str, kinds: list[str], videos: dict, concurrency: int, n: int, seed: int) -> Counter:
    """n requests at `concurrency`: the given attack kinds and good requests, shuffled."""
    rng = random.Random(seed)
    jobs = [rng.choice(kinds) for _ in range(n)]
    statuses: Counter = Counter()
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits, headers=AUTH) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(kind: str):
            async with sem:
                fn = _good if kind == "good" else _huge if kind in LYING_FILES else ATTACKS[kind]
                video = (
                    videos["huge"]
                    if kind == "oversized frames"
                    else videos[kind]
                    if kind in LYING_FILES
                    else rng.choice(videos["good"])
                )
                try:
                    statuses[(kind, await fn(client, video))] += 1
                except httpx.HTTPError as e:
                    statuses[(kind, f"client error: {type(e).__name__}")] += 1

        await asyncio.gather(*(one(k) for k in jobs))
    return statuses


def _setup(tmp: Path) -> tuple[str, Path, Path]:
    import numpy as np

    from tests.support.hostile import size_switching_mp4
    from tests.support.videos import grey_video
    from vtg.data.synth import SynthConfig, encode_mp4, generate
    from vtg.train.tiny_model import build_tiny_model

    model = str(build_tiny_model("qwen2.5-vl", tmp / "tiny"))
    world = tmp / "world"
    generate(SynthConfig(n_videos=8, seed=0, fps=2.0, size=56, min_duration=8.0, max_duration=16.0), world, workers=1)
    huge = world / "videos" / "huge.mp4"
    encode_mp4(np.zeros((2, 4096, 4096, 3), np.uint8), huge, 2.0)
    # 89 s at 30 fps, under direct_max_s (90 s): grounded in one call, whose plan at 4K (2513 frames, 20.8 Gpx) is
    # over the 20 Gpx default. (A longer one is grounded by windows, each within the budget: what an honest 4K video
    # of that length costs.)
    size_switching_mp4(world / "grows_4k.mp4", [(2, 64, 64), (2680, 2160, 3840)], fps=30)
    size_switching_mp4(world / "giant_frame.mp4", [(2, 64, 64), (2, 16000, 16000)])
    grey_video(world / "four_hours.mp4", 4 * 3600)
    return model, world, huge


def _slots_in_use(url: str) -> int:
    return httpx.get(url + "/health", timeout=30).json()["slots_in_use"]


def _seconds_until_free(url: str, limit_s: float = 60.0) -> float:
    t0 = time.monotonic()
    while _slots_in_use(url) and time.monotonic() - t0 < limit_s:
        time.sleep(0.05)
    return round(time.monotonic() - t0, 2)


async def _windowed(url: str, video: str, n: int, leave_s: float) -> list:
    """n windowed requests on a long video at once, each client leaving after leave_s."""
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=leave_s, limits=limits, headers=AUTH) as c:

        async def one():
            try:
                r = await c.post("/v1/grounding", json={"video": video, "query": "the red square", "max_tokens": 8})
                return r.status_code
            except httpx.TimeoutException:
                return "left"

        return await asyncio.gather(*(one() for _ in range(n)))


def _costs(url: str, videos: dict, watch: Watch, idle: int) -> list[dict]:
    """Each lying file alone, 4 requests one after the other: what the server answered, its CPU seconds per request
    (API server + engine core), and its peak RSS against idle."""
    rows = []
    for kind in LYING_FILES:
        cpu0, at = watch.cpu_s(), len(watch.rss)
        counts = asyncio.run(_phase(url, [kind], videos, 1, 4, seed=0))
        time.sleep(0.3)  # a last RSS sample
        rows.append(
            {
                "file": kind,
                "statuses": {str(k[1]): v for k, v in counts.items()},
                "cpu_s_per_request": round((watch.cpu_s() - cpu0) / 4, 2),
                "peak_rss_ratio": round(max(watch.rss[at:] or [idle]) / idle, 3),
            }
        )
    return rows


def _departures(url: str, videos: dict, watch: Watch) -> dict:
    """Clients that vanish: windowed requests left after 2 s, streams reset unread; then four 4-hour windowed
    requests at once, with /health timed while they run."""
    out = {}
    left = asyncio.run(_windowed(url, videos["four_hours"], 8, 2.0))
    out["windowed_left"] = {"left": left.count("left"), "slots_free_after_s": _seconds_until_free(url)}

    async def resets():
        async with httpx.AsyncClient(base_url=url) as c:
            return await asyncio.gather(*(_raw_stream_reset(c, videos["good"][0]) for _ in range(8)))

    asyncio.run(resets())
    out["streams_reset"] = {"connections": 8, "streams": 32, "slots_free_after_s": _seconds_until_free(url)}
    t0 = time.time()
    results = asyncio.run(_windowed(url, videos["four_hours"], 4, 120.0))
    lat = [lat for t, lat, _ in watch.health if t >= t0]
    out["four_4h_windowed"] = {
        "results": [str(r) for r in results],
        "health_polls": len(lat),
        "health_p50_s": round(statistics.median(lat), 3),
        "health_p95_s": round(_pct(lat, 0.95), 3),
        "health_max_s": round(max(lat), 3),
        "slots_free_after_s": _seconds_until_free(url),
    }
    return out


def section(res: dict) -> str:
    d = res["departures"]
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
            "Files whose header lies, each alone, 4 requests one after the other (what reaches the decoder):",
            table(
                ["file", "statuses", "server CPU s / request", "peak RSS / idle"],
                [
                    (
                        c["file"],
                        ", ".join(f"{k}: {v}" for k, v in c["statuses"].items()),
                        c["cpu_s_per_request"],
                        f"{c['peak_rss_ratio']}x",
                    )
                    for c in res["lying_files"]
                ],
            ),  # fmt: skip
            "Clients that vanish:",
            table(
                ["what", "slots free after (s)", "detail"],
                [
                    (
                        "8 windowed requests on a 4-hour video, clients gone after 2 s",
                        d["windowed_left"]["slots_free_after_s"],
                        f"{d['windowed_left']['left']} of 8 left",
                    ),
                    (
                        "8 connections x 4 pipelined streams, never read, then RST",
                        d["streams_reset"]["slots_free_after_s"],
                        "",
                    ),
                    (
                        "four 4-hour windowed requests at once (clients wait up to 120 s)",
                        d["four_4h_windowed"]["slots_free_after_s"],
                        f"/health p50 / p95 / max {d['four_4h_windowed']['health_p50_s']} / "
                        f"{d['four_4h_windowed']['health_p95_s']} / {d['four_4h_windowed']['health_max_s']} s; "
                        f"answers: {', '.join(d['four_4h_windowed']['results'])}",
                    ),
                ],
            ),  # fmt: skip
            table(["target", "met"], [(name, "yes" if ok else "**no**") for name, ok in _targets(res)]),
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
            ["--model", model, "--served-model-name", "tiny", "--api-key", KEY, "--config", str(recipe),
             "--allowed-local-media-path", str(world)],
            tmp / "server.log",
        )  # fmt: skip
        try:
            videos = {"huge": str(huge), "good": [str(p) for p in sorted((world / "videos").glob("v*.mp4"))]}
            videos.update({kind: str(world / name) for kind, name in LYING_FILES.items()})
            videos["four_hours"] = str(world / "four_hours.mp4")
            asyncio.run(_phase(server.url, ["good"], videos, 2, 4, 0))  # warm-up
            watch = Watch(server.url, server.proc.pid)
            idle = 0
            for _ in range(10):  # the idle server, after a warm-up
                idle = max(idle, watch.rss_now())
                time.sleep(0.1)
            phases = []
            with watch:
                t_attack = time.time()
                kinds_all = [*ATTACKS, *LYING_FILES]
                plan = [(kind, 8, 24) for kind in kinds_all] + [("mixed", 16, 160), ("mixed", 100, 300)]
                for i, (kind, conc, n) in enumerate(plan):
                    kinds = kinds_all if kind == "mixed" else [kind]
                    t0 = time.perf_counter()
                    counts = asyncio.run(_phase(server.url, kinds + ["good"], videos, conc, n, seed=i))
                    print(f"[attack] {kind} c={conc}: {dict(counts)} in {time.perf_counter() - t0:.1f} s", flush=True)
                    by_kind: dict[str, dict] = {}
                    for (k, status), count in sorted(counts.items(), key=str):
                        by_kind.setdefault(k, {})[str(status)] = count
                    phases.append({"name": kind, "concurrency": conc, "requests": n, "statuses": by_kind})
                costs = _costs(server.url, videos, watch, idle)
                print(f"[attack] lying files: {costs}", flush=True)
                departures = _departures(server.url, videos, watch)
                print(f"[attack] departures: {departures}", flush=True)
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
        "lying_files": costs,
        "departures": departures,
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
    return 0 if all(ok for _, ok in _targets(res)) else 1


def _targets(res: dict) -> list[tuple[str, bool]]:
    s, d = res["summary"], res["departures"]
    return [
        ("no 5xx", s["server_5xx"] == 0),
        ("peak RSS < 2x idle over the whole attack", s["rss_ratio"] < 2),
        ("peak RSS < 1.5x idle for each lying file", all(c["peak_rss_ratio"] < 1.5 for c in res["lying_files"])),
        ("lying files refused (413)", all(set(c["statuses"]) == {"413"} for c in res["lying_files"])),
        ("/health p95 < 0.5 s under attack", s["health_p95_s"] < 0.5),
        ("/health p95 < 0.5 s under four 4-hour windowed requests", d["four_4h_windowed"]["health_p95_s"] < 0.5),
        ("slots free within 5 s of clients leaving", all(v["slots_free_after_s"] <= 5 for v in d.values())),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
