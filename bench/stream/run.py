"""Live streams: bench/long's tiny model watching synthetic streams on the CPU — how right and how early its
announcements are, how many streams one server keeps at real time, its memory over an hour, and disconnects.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.stream.run --long-out OUT    # OUT: bench/long's --out, run first
    .venv/bin/python -m bench.stream.run --render                           # README table from results.json

It reuses bench/long's model (`OUT/sft/final`, trained on the distractor world's clips) and its held-out test
families (seed 1: never used to choose anything), so the streaming rows sit beside bench/long's offline
`coarse_to_fine` run of the same model on the same videos. Parts:

1. **Accuracy** — `vtg eval run --strategy streaming` (each record replayed causally on a virtual clock: every
   window answered before the next frame, deterministic) on the 10-min test families and on the first
   `--families-60` 60-min ones. Reported: eval's streaming metrics (docs/streaming.md#metrics: event P/R/F1 by the
   ±2 s start rule, span F1 at IoU 0.5, start/end delay, false alarms per hour on the families without the event),
   and beside them the offline `coarse_to_fine` predictions of bench/long scored with the same pooled span rule
   (every record, absent ones included: a moment named there is a false positive).
2. **Memory** — `vtg serve` with the model; one 60-min stream read by the server (`POST /v1/streams/read`, as fast
   as the model answers); the server's RSS (process tree) at every `progress` event; minute 5 vs minute 60.
3. **Throughput** — N streams of 10 min read by the server at once (as fast as the model answers, no window
   skipped), N = 1, 2, 4, 8: each stream's real-time factor (media seconds / wall seconds).
4. **Real time over the WebSocket** — `--live` present 2-min test videos streamed at once by a client that is not
   vtg's (`websockets`), frames paced at their media time: windows skipped, lag, and whether `moment.started` came
   before the true event's end and `moment.ended` after it (borders in absolute seconds).
5. **Disconnects** — 4 WebSocket sessions appending frames and 4 server reads, each dropped without a goodbye
   mid-stream; seconds until /health shows no session and no engine slot held.

Targets (issue: live video), on the 2-core CPU: event F1 within 10 points of the offline `coarse_to_fine` F1 on the
same videos; median start delay <= window + stride; <= 1 false alarm per hour on event-free streams; one stream at
>= 1x real time (and how many stay there); RSS +< 10 % from minute 5 to 60; every disconnect frees its session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    add_result_args,
    measured_line,
    provenance,
    read_json,
    read_jsonl,
    table,
    update_readme,
    write_json,
)
from bench.long.run import peak_rss

HERE = Path(__file__).resolve().parent
# row -> (bench/long's world folder, minutes, bench/long's coarse_to_fine run on the same videos, streams: all or the
# first --families-60). The one-object world (bench/long's mechanics world; no 60-min videos there) is the row where
# the question never matters: any object found is the answer.
ROWS = {
    "distractor world, 10 min": ("world", 10, "10min-coarse_to_fine", None),
    "distractor world, 60 min": ("world", 60, "60min-coarse_to_fine", "families_60"),
    "one-object world, 10 min": ("world-mechanics", 10, "mechanics-10min", None),
}
LEVELS = (1, 2, 4, 8)
VERSION = 1


# ---- 1. accuracy -------------------------------------------------------------------------------------------------


def records_of(long_out: Path, world: str, n: int, limit: int | None = None) -> list[dict]:
    rows = read_jsonl(long_out / world / f"test_{n}min.jsonl")
    return rows[:limit] if limit else rows


def pooled_span_f1(records: list[dict], predictions: dict[str, dict]) -> dict:
    """Final moments against true ones, one to one at IoU >= 0.5, pooled over every record (absent ones included;
    a failed or missing prediction names no moment): the streaming span rule applied to offline predictions."""
    from vtg.data.grammar import match_moments
    from vtg.eval.streaming import SPAN_IOU, _prf

    hits = named = truths = 0
    for r in records:
        p = predictions.get(r["id"]) or {}
        moments = [] if p.get("error") else [m for m in (p.get("moments") or []) if m]
        truths += len(r["moments"])
        named += len(moments)
        hits += sum(1 for _, _, v in match_moments(moments, r["moments"]) if v >= SPAN_IOU)
    return {**_prf(hits, named, truths), "moments": named, "true_moments": truths}


def accuracy(args, long_out: Path, out: Path) -> dict:
    """The streaming eval of each row's streams, beside bench/long's offline coarse_to_fine run on the same ones."""
    from vtg.eval.predictions import read_predictions

    model = long_out / "sft" / "final"
    rows = {}
    for name, (world, n, offline_run, limit) in ROWS.items():
        limit = args.families_60 if limit == "families_60" else limit
        records = records_of(long_out, world, n, limit)
        run = out / "eval" / f"{world}-{n}min-streaming"
        if not (run / "bench.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            cmd = ["eval", "run", "--config", "recipes/eval/synth_long.yaml", "--model", str(model), "--records",
                   str(long_out / world / f"test_{n}min.jsonl"), "--strategy", "streaming", "--out", str(run),
                   *(["--limit", str(limit)] if limit else [])]  # fmt: skip
            print(f"[bench.stream] eval {name} ({len(records)} streams) ...", flush=True)
            wall, rss = peak_rss(cmd, run / "eval.log")
            write_json(run / "bench.json", {"wall_s": round(wall, 1), "peak_rss_bytes": rss})
        streaming = read_json(run / "metrics.json")["streaming"]
        offline = pooled_span_f1(records, read_predictions(long_out / "eval" / offline_run / "predictions.jsonl"))
        rows[name] = {
            "streams": len(records),
            "present": sum(1 for r in records if r["moments"]),
            "hours": round(sum(r["duration"] for r in records) / 3600, 2),
            "streaming": streaming["metrics"],
            "counts": streaming["counts"],
            "offline_coarse_to_fine": offline,
            "wall_s": read_json(run / "bench.json")["wall_s"],
        }
    return rows


# ---- 2-5. the server ---------------------------------------------------------------------------------------------


def server_rss(pid: int) -> int:
    import psutil

    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])


async def read_stream(url: str, video: Path, on_event=None) -> dict:
    """One `POST /v1/streams/read` of `video` (as fast as the model answers) until session.closed."""
    import httpx

    body = {"source": video.resolve().as_uri(), "queries": [{"id": "q", "text": "find when the object is on screen."}]}
    t0 = time.perf_counter()
    last = {}
    async with httpx.AsyncClient(timeout=None) as client:
        async with client.stream("POST", url + "/v1/streams/read", json=body) as r:
            if r.status_code != 200:
                raise SystemExit(f"/v1/streams/read {video}: {r.status_code} {await r.aread()!r}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if on_event:
                    on_event(event)
                if event["type"] == "error":
                    raise SystemExit(f"/v1/streams/read {video}: {event}")
                last = event
    wall = time.perf_counter() - t0
    return {"media_s": last.get("media_time"), "wall_s": round(wall, 2), "windows": last.get("windows"),
            "skipped": last.get("skipped"), "rtf": round(last.get("media_time", 0) / wall, 2)}  # fmt: skip


def memory(url: str, pid: int, video: Path) -> dict:
    samples: list[tuple[float, int]] = []

    def on_event(e):
        if e["type"] == "progress":
            samples.append((e["media_time"], server_rss(pid)))

    start = server_rss(pid)
    run = asyncio.run(read_stream(url, video, on_event))

    def at(minute: float) -> int:
        return min(samples, key=lambda s: abs(s[0] - 60 * minute))[1]

    mb = {m: round(at(m) / 2**20) for m in (1, 5, 15, 30, 45, 60)}
    return {**run, "rss_mb_before": round(start / 2**20), "rss_mb_at_minute": mb,
            "growth_5_to_60_pct": round(100 * (mb[60] - mb[5]) / mb[5], 2),
            "rss_mb_max": round(max(s[1] for s in samples) / 2**20)}  # fmt: skip


async def concurrent_reads(url: str, videos: list[Path]) -> list[dict]:
    return list(await asyncio.gather(*(read_stream(url, v) for v in videos)))


def throughput(url: str, videos: list[Path], levels) -> list[dict]:
    out = []
    for n in levels:
        runs = asyncio.run(concurrent_reads(url, videos[:n]))
        rtf = [r["rtf"] for r in runs]
        walls = [r["wall_s"] for r in runs]
        out.append({"streams": n, "rtf_min": min(rtf), "rtf_median": sorted(rtf)[len(rtf) // 2],
                    "wall_s_max": max(walls), "windows": sum(r["windows"] for r in runs)})  # fmt: skip
        print(f"[bench.stream] {n} streams at once: real-time factor min {min(rtf)}", flush=True)
    return out


def jpeg_frames(video: Path, fps: float) -> list[tuple[str, float]]:
    from vtg.stream import file_frames, jpeg_base64

    return [(jpeg_base64(f), t) for f, t in file_frames(str(video), fps)]


async def live_ws(ws_url: str, record: dict, video: Path, fps: float) -> dict:
    """Stream `video` at its own pace over the WebSocket (frames sent at their media time) with the record's query."""
    import websockets

    frames = jpeg_frames(video, fps)
    events: list[dict] = []
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.send(
            json.dumps({"type": "session.create", "session": {"queries": [{"id": "q", "text": record["query"]}]}})
        )

        async def receive():
            async for msg in ws:
                events.append(json.loads(msg))
                if events[-1]["type"] == "session.closed":
                    return

        reader = asyncio.ensure_future(receive())
        t0 = time.perf_counter()
        for image, t in frames:
            await asyncio.sleep(max(0.0, t0 + t - time.perf_counter()))
            await ws.send(json.dumps({"type": "frame.append", "frame": {"image": image, "media_time": t}}))
        await asyncio.sleep(2.0)  # the last window's answer
        await ws.send(json.dumps({"type": "session.close"}))
        await asyncio.wait_for(reader, 120)
    truth = record["moments"]
    started = [e for e in events if e["type"] == "moment.started"]
    ended = [e for e in events if e["type"] == "moment.ended"]
    progress = [e for e in events if e["type"] == "progress"]

    from vtg.data.grammar import iou

    def before_end(e) -> bool:  # announced while a true moment was running, its start near that moment's start
        return any(e["media_time"] < g[1] and g[0] - 2.0 <= e["moment"]["start"] < g[1] for g in truth)

    def after_end(e) -> bool:  # announced once a true moment had ended, its borders overlapping it
        return any(e["media_time"] >= g[1] and iou((e["moment"]["start"], e["moment"]["end"]), g) > 0 for g in truth)

    return {
        "id": record["id"],
        "true_moments": truth,
        "started": [(e["media_time"], e["moment"]["start"]) for e in started],
        "ended": [(e["media_time"], e["moment"]["start"], e["moment"]["end"]) for e in ended],
        "started_before_true_end": any(before_end(e) for e in started),
        "ended_after_true_end": any(after_end(e) for e in ended),
        "windows": progress[-1]["windows"] if progress else 0,
        "skipped": progress[-1]["skipped"] if progress else 0,
        "lag_max_s": max((e["lag"] for e in progress), default=None),
        "errors": [e for e in events if e["type"] == "error"],
    }


async def live(ws_url: str, records: list[dict], root: Path, fps: float) -> list[dict]:
    return list(await asyncio.gather(*(live_ws(ws_url, r, root / r["video"], fps) for r in records)))


def wait_free(url: str, timeout: float) -> float | None:
    """Seconds until /health shows no stream session and no engine slot held; None: not within `timeout`."""
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        h = httpx.get(url + "/health", timeout=10).json()
        if h["streams"] == 0 and h["slots_in_use"] == 0:
            return round(time.perf_counter() - t0, 2)
        time.sleep(0.1)
    return None


def disconnects(url: str, video: Path, fps: float) -> dict:
    import httpx
    import websockets

    frames = jpeg_frames(video, fps)[:60]

    async def vanish_ws():
        ws = await websockets.connect(url.replace("http", "ws") + "/v1/streams", max_size=None)
        await ws.send(json.dumps({"type": "session.create", "session": {"queries": [{"text": "the object"}]}}))
        await ws.recv()
        for image, t in frames:
            await ws.send(json.dumps({"type": "frame.append", "frame": {"image": image, "media_time": t}}))
        await asyncio.sleep(1.0)  # an ask is running
        ws.transport.abort()  # no close frame

    async def vanish_sse():
        body = {"source": video.resolve().as_uri(), "queries": [{"text": "the object"}]}
        async with httpx.AsyncClient(timeout=None) as client:
            async with client.stream("POST", url + "/v1/streams/read", json=body) as r:
                async for line in r.aiter_lines():
                    if '"progress"' in line:
                        break  # leaving the block drops the connection mid-stream

    out = {}
    for name, fn in (("websocket", vanish_ws), ("server read (SSE)", vanish_sse)):

        async def four(fn=fn):
            await asyncio.gather(*(fn() for _ in range(4)))

        asyncio.run(four())
        out[name] = {"sessions": 4, "freed_after_s": wait_free(url, 60)}
    return out


def server_parts(args, long_out: Path, out: Path) -> dict:
    from tests.support.server import start_server

    model = long_out / "sft" / "final"
    world = long_out / "world"
    fps = read_json(model / "vtg_sampling.json")["fps"]  # the model's frame rate: what the ring keeps
    tests = {n: records_of(long_out, "world", n) for n in (2, 10, 60)}
    present = {n: [r for r in rows if r["moments"]] for n, rows in tests.items()}
    with tempfile.TemporaryDirectory(prefix="vtg-bench-stream-") as tmp:
        recipe = Path(tmp) / "serve.yaml"
        recipe.write_text(f"serve:\n  limits:\n    max_streams: {max(max(LEVELS), args.live)}\n"
                          "    max_concurrency: 8\n")  # fmt: skip
        t0 = time.perf_counter()
        server = start_server(["--model", str(model), "--config", str(recipe),
                               "--allowed-local-media-path", str(world)], out / "server.log")  # fmt: skip
        engine_start = round(time.perf_counter() - t0, 1)
        try:
            url = server.url
            print("[bench.stream] memory over a 60-min stream ...", flush=True)
            mem = memory(url, server.proc.pid, world / present[60][0]["video"])
            print(f"[bench.stream] memory: {mem['rss_mb_at_minute']}", flush=True)
            speed = throughput(url, [world / r["video"] for r in present[10]], LEVELS)
            print(f"[bench.stream] {args.live} live WebSocket streams of 2 min ...", flush=True)
            ws_url = url.replace("http", "ws") + "/v1/streams"
            lives = asyncio.run(live(ws_url, present[2][: args.live], world, fps))
            gone = disconnects(url, world / present[10][0]["video"], fps)
            rss_end = round(server_rss(server.proc.pid) / 2**20)
        finally:
            server.stop()
    return {"engine_start_s": engine_start, "memory": mem, "throughput": speed, "live": lives,
            "disconnects": gone, "rss_mb_after_all": rss_end}  # fmt: skip


# ---- results -----------------------------------------------------------------------------------------------------


def targets(acc: dict, srv: dict, window_s: float, stride_s: float) -> dict:
    out = {}
    for name, row in acc.items():
        m, off = row["streaming"], row["offline_coarse_to_fine"]
        ev = m["event_F1@2s"]
        out[f"{name}: event F1 within 10 points of offline coarse_to_fine"] = {
            "met": off["F1"] - ev <= 10, "event_F1": round(ev, 1), "offline_F1": round(off["F1"], 1)}  # fmt: skip
        sd = m["start_delay_median_s"]
        out[f"{name}: median start delay <= window + stride"] = {
            "met": sd is not None and sd <= window_s + stride_s,
            "median_s": sd,
            "limit_s": window_s + stride_s,
        }
        fa = m["false_alarms_per_hour"]
        out[f"{name}: <= 1 false alarm per hour without the event"] = {
            "met": fa is not None and fa <= 1,
            "per_hour": fa,
        }
    one = srv["throughput"][0]["rtf_min"]
    keep = [lv["streams"] for lv in srv["throughput"] if lv["rtf_min"] >= 1]
    out["one stream at >= 1x real time"] = {"met": one >= 1, "rtf": one, "streams_at_1x": max(keep, default=0),
                                            "most_tried": srv["throughput"][-1]["streams"]}  # fmt: skip
    g = srv["memory"]["growth_5_to_60_pct"]
    out["RSS +< 10 % from minute 5 to 60"] = {"met": g < 10, "growth_pct": g}
    freed = [d["freed_after_s"] for d in srv["disconnects"].values()]
    out["every disconnect frees its session"] = {"met": all(f is not None for f in freed), "seconds": freed}
    return out


def run(args) -> dict:
    long_out = Path(args.long_out)
    if not (long_out / "sft" / "final" / "config.json").exists():
        raise SystemExit(f"{long_out}: no bench/long run there (its sft/final); run python -m bench.long.run first")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    acc = accuracy(args, long_out, work)
    srv = server_parts(args, long_out, work)
    from vtg.model_folder import ModelFolder
    from vtg.stream import StreamSettings

    settings = StreamSettings.for_model(ModelFolder.read(str(long_out / "sft" / "final")))
    return {
        "version": VERSION,
        **provenance(),
        "command": "python -m bench.stream.run " + " ".join(sys.argv[1:]),
        "model": "bench/long's tiny model (sft/final), results "
        + str(read_json(HERE.parent / "long" / "results.json").get("commit")),
        "settings": {
            k: getattr(settings, k)
            for k in ("window_s", "stride_s", "start_score", "keep_score", "confirm", "release", "min_window_s")
        },  # fmt: skip
        "accuracy": acc,
        "server": srv,
        "targets": targets(acc, srv, settings.window_s, settings.stride_s),
        "total_s": round(time.perf_counter() - t0, 1),
    }


def _r(v, nd=1):
    return round(v, nd) if isinstance(v, float) else v


def _brief(t: dict) -> str:
    return ", ".join(f"{k} {_r(v)}" for k, v in t.items() if k != "met")


def render(res: dict) -> str:
    acc_rows = []
    for name, row in res["accuracy"].items():
        m, c, off = row["streaming"], row["counts"], row["offline_coarse_to_fine"]
        acc_rows.append([name, row["streams"], row["present"], c["true_moments"], _r(m["event_precision@2s"]),
                         _r(m["event_recall@2s"]), _r(m["event_F1@2s"]), _r(m["span_F1@IoU0.5"]), _r(off["F1"]),
                         _r(m["start_delay_median_s"]), _r(m["start_delay_p90_s"]), _r(m["end_delay_median_s"]),
                         _r(m["false_alarms_per_hour"]), row["hours"], row["wall_s"]])  # fmt: skip
    head = ["streams", "n", "with the event", "true moments", "event P @2s", "event R @2s", "event F1 @2s",
            "span F1 @IoU0.5", "offline coarse_to_fine F1 @IoU0.5 (same rule)", "start delay median s",
            "start delay p90 s", "end delay median s", "false alarms / h (event-free)", "hours",
            "eval wall s"]  # fmt: skip
    srv = res["server"]
    mem = srv["memory"]
    speed = table(["streams at once", "real-time factor (min)", "median", "slowest wall s", "windows"],
                  [[lv["streams"], lv["rtf_min"], lv["rtf_median"], lv["wall_s_max"], lv["windows"]]
                   for lv in srv["throughput"]])  # fmt: skip
    lives = srv["live"]
    live_line = (
        f"{len(lives)} present 2-min test videos streamed at once over the WebSocket at their own pace by the "
        f"`websockets` client: `moment.started` before the true event's end in "
        f"{sum(x['started_before_true_end'] for x in lives)}, `moment.ended` after a true end in "
        f"{sum(x['ended_after_true_end'] for x in lives)}; windows skipped {sum(x['skipped'] for x in lives)} of "
        f"{sum(x['windows'] + x['skipped'] for x in lives)}, largest lag "
        f"{max((x['lag_max_s'] or 0) for x in lives):.2f} s, error events {sum(len(x['errors']) for x in lives)}."
    )
    gone = "; ".join(f"{k}: {v['sessions']} dropped, all freed after {v['freed_after_s']} s"
                     for k, v in srv["disconnects"].items())  # fmt: skip
    marks = [f"- {'met' if t['met'] else '**not met**'}: {n} ({_brief(t)})" for n, t in res["targets"].items()]
    s = res["settings"]
    return (
        f"Settings: window {s['window_s']:g} s, stride {s['stride_s']:g} s, start_score {s['start_score']}, keep_score "
        f"{s['keep_score']}, confirm {s['confirm']}, release {s['release']}.\n\n"
        + table(head, acc_rows)
        + f"\n\nServer (`vtg serve`, vLLM CPU engine, engine start {srv['engine_start_s']} s):\n\n"
        f"- memory: one 60-min stream read by the server in {mem['wall_s']} s (real-time factor {mem['rtf']}); "
        f"RSS (process tree) MB at media minute {mem['rss_mb_at_minute']}; minute 5 to 60: "
        f"{mem['growth_5_to_60_pct']:+.2f} %.\n"
        f"- throughput (10-min streams read by the server at once, as fast as the model answers):\n\n{speed}\n\n"
        f"- real time: {live_line}\n- disconnects: {gone}.\n\nTargets:\n"
        + "\n".join(marks)
        + f"\n\nCommand: `{res['command']}`; {res['total_s'] / 60:.1f} min. {measured_line(res)}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--long-out", default="outputs/bench-long", help="bench/long's --out (its model and test worlds)")
    p.add_argument("--work", default="outputs/bench-stream", help="eval runs and the server's log")
    p.add_argument("--families-60", type=int, default=16, help="60-min test families replayed (the first N)")
    p.add_argument("--live", type=int, default=4, help="2-min videos streamed at once over the WebSocket")
    add_result_args(p, HERE)
    args = p.parse_args()
    if not args.render:
        write_json(args.out, run(args))
    res = read_json(args.out)
    if Path(args.out).resolve() == (HERE / "results.json").resolve():
        update_readme(HERE / "README.md", render(res))
    else:
        print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
