"""Live streams on the real server (`vtg serve`, vLLM CPU engine, tiny random-init Qwen2.5-VL), driven by a client
that is not vtg's (the `websockets` library) and by httpx for the server-read SSE endpoint: session life cycle,
bad input, auth, limits, clients that vanish, and ordinary requests served while streams run. A random-init model
announces no real moments: these tests check the protocol and its limits (the tracker is tests/test_stream.py's).
The session's keyed server (tests/conftest.py, shared with test_serve_web)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import websockets
from PIL import Image

from support.keyed_server import KEY, MAX_FRAME_BYTES

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {KEY}"}
OPTIONS = {"window_s": 4, "stride_s": 2, "min_window_s": 2, "max_tokens": 8}  # short windows, short answers


@pytest.fixture(scope="module")
def env(tiny_qwen25, keyed_server):
    from support.videos import grey_video

    short = keyed_server.media / "stream_short.mp4"
    grey_video(short, 4.0, fps=2.0)
    video = sorted((keyed_server.world / "videos").glob("*.mp4"))[0]
    yield {"url": keyed_server.url, "ws": keyed_server.url.replace("http", "ws") + "/v1/streams", "video": video,
           "short": short, "model": tiny_qwen25, "server": keyed_server}  # fmt: skip
    short.unlink()


def frames(video, fps: float = 2.0) -> list[tuple[str, float]]:
    from vtg.stream import file_frames, jpeg_base64

    return [(jpeg_base64(f, quality=75), t) for f, t in file_frames(str(video), fps)]


def append(image: str, t, event_id: str | None = None) -> str:
    event = {"type": "frame.append", "frame": {"image": image, "media_time": t}}
    return json.dumps({**event, "event_id": event_id} if event_id else event)


def create(queries=("a person",), options=OPTIONS) -> str:
    return json.dumps({"type": "session.create", "event_id": "c",
                       "session": {"queries": [{"id": f"q{i}", "text": q} for i, q in enumerate(queries)],
                                   "options": options}})  # fmt: skip


def health(env) -> dict:
    r = httpx.get(env["url"] + "/health", timeout=10)
    assert r.status_code == 200
    return r.json()


def wait_free(env, timeout: float = 20.0) -> dict:
    """/health once every stream session and engine slot is free again."""
    deadline = time.monotonic() + timeout
    while True:
        h = health(env)
        if h["streams"] == 0 and h["slots_in_use"] == 0 or time.monotonic() > deadline:
            return h
        time.sleep(0.2)


async def events_until(ws, kind: str, timeout: float = 60.0) -> list[dict]:
    out = []
    async with asyncio.timeout(timeout):
        while True:
            out.append(json.loads(await ws.recv()))
            if out[-1]["type"] == kind:
                return out


def run(coro):
    return asyncio.run(coro)


# ---- a session -------------------------------------------------------------------------------------------------


def test_session_over_websocket(env):
    sent = frames(env["video"])

    async def go():
        async with websockets.connect(env["ws"], additional_headers=AUTH, max_size=None) as ws:
            await ws.send(create())
            (created,) = await events_until(ws, "session.created")
            await ws.send(json.dumps({"type": "query.add", "query": {"id": "extra", "text": "a dog"}}))
            for image, t in sent[: len(sent) // 2]:
                await ws.send(append(image, t))
            await ws.send(json.dumps({"type": "query.remove", "query_id": "extra"}))
            for image, t in sent[len(sent) // 2 :]:
                await ws.send(append(image, t))
                await asyncio.sleep(0.05)
            await ws.send(json.dumps({"type": "session.close"}))
            rest = await events_until(ws, "session.closed")
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
            return created, rest, ws.close_code

    created, rest, code = run(go())
    s = created["session"]
    assert s["window_s"] == 4 and s["stride_s"] == 2 and s["fps"] == 2.0 and s["id"].startswith("strm_")
    assert s["max_tokens"] == 8 and s["think"] is False  # the session's own answer budget, no reasoning
    assert s["queries"] == [{"id": "q0", "text": "a person"}] and created["event_id"].startswith("evt_")
    kinds = [e["type"] for e in rest]
    assert "query.added" in kinds and "query.removed" in kinds and "error" not in kinds, rest
    progress = [e for e in rest if e["type"] == "progress"]
    assert progress and all(p["lag"] >= 0 for p in progress)
    times = [p["media_time"] for p in progress]
    assert times == sorted(times) and 2.0 <= times[0] and times[-1] <= sent[-1][1]
    closed = rest[-1]
    assert closed["media_time"] == pytest.approx(sent[-1][1]) and closed["windows"] >= len(progress)
    assert {q["id"]: q["active"] for q in closed["queries"]} == {"q0": True, "extra": False}
    assert code == 1000
    assert wait_free(env)["streams"] == 0


def test_bad_input_gets_error_events_and_the_session_goes_on(env):
    (good, _), *_ = frames(env["video"])
    huge = base64.b64encode(np.random.default_rng(0).bytes(MAX_FRAME_BYTES + 10)).decode()
    wide = io.BytesIO()
    Image.new("RGB", (1000, 1000)).save(wide, "PNG")  # small to send, over max_frame_pixels to decode
    wide = base64.b64encode(wide.getvalue()).decode()
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")

    async def go():
        async with websockets.connect(env["ws"], additional_headers=AUTH, max_size=None) as ws:
            await ws.send(append(good, 0.0, "early"))  # before session.create
            await ws.send(create())
            await ws.send(create())  # twice
            await ws.send(append(good, 1.0, "ok1"))
            await ws.send(append("!!not base64!!", 1.5, "garbage"))
            await ws.send(append(base64.b64encode(b"not an image").decode(), 1.6, "notimage"))
            await ws.send(append(base64.b64encode(gif.getvalue()).decode(), 1.7, "gif"))
            await ws.send(append(huge, 2.0, "huge"))
            await ws.send(append(wide, 2.0, "wide"))
            await ws.send(append(good, 0.5, "backwards"))
            await ws.send(append(good, 1.0, "duplicate"))
            await ws.send(append(good, -1, "negative"))
            await ws.send(json.dumps({"type": "frame.teleport", "event_id": "unknown"}))
            await ws.send("{not json")
            await ws.send(b"\x00binary")
            await ws.send(json.dumps({"type": "query.remove", "event_id": "noquery", "query_id": "nope"}))
            await ws.send(append(good, 2.5, "ok2"))  # the session goes on
            await ws.send(json.dumps({"type": "session.close"}))
            return await events_until(ws, "session.closed")

    events = run(go())
    errors = {e["error"].get("event_id"): e["error"] for e in events if e["type"] == "error"}
    assert set(errors) == {"early", "c", "garbage", "notimage", "gif", "huge", "wide", "backwards", "duplicate",
                           "negative", "unknown", "noquery", None}, errors  # fmt: skip
    assert "before session.create" in errors["early"]["message"]
    assert errors["garbage"]["code"] == 400 and "base64" in errors["garbage"]["message"]
    assert errors["garbage"]["media_time"] == 1.5 and "media_time 1.5s" in errors["garbage"]["message"]
    assert "JPEG or PNG" in errors["notimage"]["message"] and "GIF" in errors["gif"]["message"]
    assert errors["huge"]["code"] == 413 and "limits.max_frame_bytes" in errors["huge"]["message"]
    assert errors["wide"]["code"] == 413 and "limits.max_frame_pixels" in errors["wide"]["message"]
    assert "not after the previous frame's 1s" in errors["backwards"]["message"]
    assert "not after" in errors["duplicate"]["message"] and errors["negative"]["code"] == 400
    assert "unknown event type 'frame.teleport'" in errors["unknown"]["message"]
    assert all(e["code"] < 500 for e in errors.values())
    assert events[-1]["media_time"] == 2.5  # both good frames were taken
    assert wait_free(env)["streams"] == 0


def test_auth_limits_and_denials(env):
    async def status_of(**kw) -> int:
        with pytest.raises(websockets.InvalidStatus) as e:
            async with websockets.connect(env["ws"], **kw):
                pass
        return e.value.response.status_code

    async def go():
        assert await status_of() == 401
        assert await status_of(additional_headers={"Authorization": "Bearer wrong"}) == 401
        # a browser's way: the key as a subprotocol entry; the server answers vtg.v1, never the key
        async with websockets.connect(env["ws"], subprotocols=["vtg.v1", f"vtg-api-key.{KEY}"]) as ws:
            assert ws.subprotocol == "vtg.v1"
            async with websockets.connect(env["ws"], additional_headers=AUTH) as ws2:  # 2 = limits.max_streams
                assert await status_of(additional_headers=AUTH) == 429
                await ws2.send(create(options={"stride_s": 100}))  # over window_s: refused, the session not made
                (err,) = await events_until(ws2, "error")
                assert err["error"]["param"] == "session.options" and "stride_s" in err["error"]["message"]
                await ws2.send(create(options={**OPTIONS, "max_queries": 99}))
                assert "limits.max_stream_queries" in (await events_until(ws2, "error"))[-1]["error"]["message"]
                await ws2.send(create(options={**OPTIONS, "max_tokens": 65}))  # over limits.max_tokens (64)
                err = (await events_until(ws2, "error"))[-1]["error"]
                assert "session.options.max_tokens=65" in err["message"] and "limits.max_tokens" in err["message"]
                await ws2.send(create(options={**OPTIONS, "think": "yes"}))
                assert "think must be true or false" in (await events_until(ws2, "error"))[-1]["error"]["message"]
            assert health(env)["streams"] == 1

    run(go())
    assert wait_free(env)["streams"] == 0


def test_idle_session_is_closed(env):
    async def go():
        async with websockets.connect(env["ws"], additional_headers=AUTH) as ws:
            await ws.send(create())
            events = await events_until(ws, "session.closed", timeout=15)
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return events, ws.close_code

    events, code = run(go())
    (err,) = [e for e in events if e["type"] == "error"]
    assert err["error"]["code"] == 408 and "limits.stream_idle_s" in err["error"]["message"]
    assert code == 1008
    assert wait_free(env)["streams"] == 0


def test_client_that_vanishes_or_stops_reading_frees_its_session(env):
    sent = frames(env["video"])

    async def vanish():
        ws = await websockets.connect(env["ws"], additional_headers=AUTH, max_size=None)
        await ws.send(create())
        await events_until(ws, "session.created")
        for image, t in sent:
            await ws.send(append(image, t))
        ws.transport.abort()  # mid-ask, no close handshake

    async def stop_reading():
        ws = await websockets.connect(env["ws"], additional_headers=AUTH, max_queue=1)
        await ws.send(create())
        try:  # each bad message gets an error event the client never reads: the backlog overflows
            for _ in range(20000):
                await ws.send("x")
        except websockets.ConnectionClosed:
            pass
        ws.transport.abort()

    run(vanish())
    assert wait_free(env)["streams"] == 0
    run(stop_reading())
    h = wait_free(env)
    assert h["streams"] == 0 and h["slots_in_use"] == 0
    metrics = httpx.get(env["url"] + "/metrics", timeout=10).text
    assert "vtg_streams_active 0.0" in metrics


def test_ordinary_requests_are_served_while_streams_run(env):
    """Stream asks take the same engine slots as every request, one at a time per stream, first come first served:
    a grounding request sent while two streams push frames far faster than real time still gets its answer."""
    sent = frames(env["video"])

    async def stream(stop: asyncio.Event):
        async with websockets.connect(env["ws"], additional_headers=AUTH, max_size=None) as ws:
            await ws.send(create())
            t = 0.0
            while not stop.is_set():
                for image, _ in sent:
                    if t < 50 and not stop.is_set():  # limits.max_stream_s is 60
                        await ws.send(append(image, t))
                        t += 0.5
                        await asyncio.sleep(0.02)  # 50 frames/s: 25x the 2-fps stream, ~2 s of sending per 50 s
                await asyncio.sleep(0.05)
            await ws.send(json.dumps({"type": "session.close"}))
            return [e for e in await events_until(ws, "session.closed") if e["type"] == "progress"]

    async def go():
        stop = asyncio.Event()
        streams = [asyncio.ensure_future(stream(stop)) for _ in range(2)]
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(timeout=120) as client:
            t0 = time.monotonic()
            # short answers, like the streams': the sessions stop sending at 50 s of media and would go idle
            # (limits.stream_idle_s, 3 s) if this request took much longer
            body = {"video": str(env["video"]), "query": "a person", "strategy": "direct", "max_tokens": 8}
            r = await client.post(env["url"] + "/v1/grounding", headers=AUTH, json=body)
            took = time.monotonic() - t0
        stop.set()
        return r, took, await asyncio.gather(*streams)

    r, took, progress = run(go())
    assert r.status_code == 200, r.text
    assert all(progress), "each stream had windows answered"
    assert took < 60
    assert wait_free(env)["streams"] == 0


# ---- server-read sources (SSE) ----------------------------------------------------------------------------------


def sse(env, body: dict, headers=AUTH) -> tuple[int, list[dict]]:
    with httpx.stream("POST", env["url"] + "/v1/streams/read", json=body, headers=headers, timeout=120) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, [r.json()]
        return 200, [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


def test_server_reads_a_file_as_a_stream(env):
    status, events = sse(env, {"source": str(env["video"]), "queries": [{"id": "q", "text": "a person"}],
                               "options": OPTIONS})  # fmt: skip
    assert status == 200
    assert events[0]["type"] == "session.created" and events[-1]["type"] == "session.closed"
    progress = [e for e in events if e["type"] == "progress"]
    # as fast as the model answers, nothing skipped: a window every stride from min_window_s on
    assert [p["windows"] for p in progress] == list(range(1, len(progress) + 1))
    assert all(p["skipped"] == 0 and p["lag"] == 0 for p in progress)
    assert [p["media_time"] for p in progress][:2] == [2.0, 4.0]
    assert events[-1]["windows"] == len(progress) and events[-1]["queries"][0]["id"] == "q"

    # with reasoning: the windows' answers carry a <think> block, read by the same parser
    status, events = sse(env, {"source": str(env["short"]), "queries": [{"text": "x"}],
                               "options": {**OPTIONS, "think": True, "max_tokens": 24}})  # fmt: skip
    assert status == 200 and events[0]["session"]["think"] is True and events[-1]["type"] == "session.closed"
    assert [e for e in events if e["type"] == "error"] == [] and events[-1]["windows"] >= 1

    t0 = time.monotonic()  # realtime: paced at the file's own speed (4 s)
    status, events = sse(env, {"source": str(env["short"]), "queries": [{"text": "x"}], "options": OPTIONS,
                               "realtime": True})  # fmt: skip
    assert status == 200 and events[-1]["type"] == "session.closed" and time.monotonic() - t0 >= 3.0


def test_server_reads_an_hls_playlist(env, tmp_path):
    """An HLS VOD of the short clip (2-s MPEG-TS segments) over HTTP on loopback: the server fetches the playlist and
    each segment itself (its URL guard; this server allows loopback) and sends the events of the file read whole."""
    from support.http_folder import serve_folder
    from support.videos import hls_vod

    name = hls_vod(env["video"], tmp_path / "hls", segment_s=2.0)
    body = {"queries": [{"id": "q", "text": "a person"}], "options": OPTIONS}
    with serve_folder(tmp_path / "hls") as url:
        status, events = sse(env, {**body, "source": f"{url}/{name}"})
        assert status == 200, events
        missing, _ = sse(env, {**body, "source": f"{url}/nothing.m3u8"})
    assert missing == 400
    _, from_file = sse(env, {**body, "source": str(env["video"])})
    assert [e["type"] for e in events if e["type"] == "error"] == []

    def progress(evs):
        return [(p["media_time"], p["windows"]) for p in evs if p["type"] == "progress"]

    assert progress(events) == progress(from_file) and progress(events)
    assert events[-1]["type"] == "session.closed" and events[-1]["media_time"] == from_file[-1]["media_time"]
    assert wait_free(env)["streams"] == 0


def test_a_client_gone_during_a_slow_hls_segment_frees_the_session(env, tmp_path):
    """The client leaves while the server is still fetching a segment (here: one held back 2 s): the read in flight
    is let finish before the source is closed, the session is freed, and the server logs no error."""
    from support.http_folder import _Quiet, serve_folder
    from support.videos import hls_vod

    name = hls_vod(env["short"], tmp_path / "hls", segment_s=2.0)
    log = env["server"].log
    before = log.read_text(errors="replace")

    class Slow(_Quiet):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.endswith(".ts"):
                time.sleep(2.0)
            super().do_GET()

    body = {"queries": [{"text": "x"}], "options": OPTIONS}
    with serve_folder(tmp_path / "hls", Slow) as url:
        with httpx.stream("POST", env["url"] + "/v1/streams/read", json={**body, "source": f"{url}/{name}"},
                          headers=AUTH, timeout=60) as r:  # fmt: skip
            assert r.status_code == 200
            assert json.loads(next(r.iter_lines())[6:])["type"] == "session.created"
        # gone, with the first segment still on its way
        assert wait_free(env)["streams"] == 0
        time.sleep(2.5)  # the held-back segment arrives: the reader ends
    new = log.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in new and "generator already executing" not in new, new[-3000:]


def test_server_read_refusals(env, tmp_path):
    base = {"queries": [{"text": "x"}], "options": OPTIONS}
    cases = [
        ({**base, "source": str(env["video"])}, {}, 401),
        ({**base, "source": str(tmp_path / "outside.mp4")}, AUTH, 403),
        ({**base, "source": "rtsp://camera.example/live"}, AUTH, 400),
        ({**base, "source": "http://127.0.0.1:9/live.m3u8"}, AUTH, 400),  # its playlist cannot be fetched
        ({**base, "source": str(env["video"]), "options": {"windw_s": 3}}, AUTH, 400),
        ({**base, "source": str(env["video"]), "queries": []}, AUTH, 400),
    ]
    for body, headers, expected in cases:
        status, (err,) = sse(env, body, headers)
        assert status == expected, (body, err)
        assert err["error"]["message"]
    assert wait_free(env)["streams"] == 0


# ---- the CLI ----------------------------------------------------------------------------------------------------


def _cli(env) -> list[str]:
    cmd = [sys.executable, "-m", "vtg", "stream", str(env["short"]), "--query", "a person", "--max-tokens", "8"]
    return cmd + [x for k, v in OPTIONS.items() if k != "max_tokens" for x in ("--option", f"{k}={v}")]


def test_cli_streams_to_a_server(env):
    remote = subprocess.run(_cli(env) + ["--endpoint", env["url"], "--api-key", KEY], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    events = [json.loads(x) for x in remote.stdout.splitlines()]
    assert events[0]["type"] == "session.created" and events[-1]["type"] == "session.closed"
    assert events[-1]["media_time"] == pytest.approx(3.5)


@pytest.mark.slow  # an engine of its own (~25 s); the same replay runs in the fast tier under eval's streaming strategy
def test_cli_streams_locally(env):
    local = subprocess.run(_cli(env) + ["--model", str(env["model"])], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    events = [json.loads(x) for x in local.stdout.splitlines()]
    assert events[0]["type"] == "session.created" and events[-1]["type"] == "session.closed"
    progress = [e for e in events if e["type"] == "progress"]
    assert [p["media_time"] for p in progress] == [2.0]  # 4 s at 2 fps: frames 0..3.5, asks at 2.0 (next due 4.0)
    assert events[-1]["windows"] == 1 and events[-1]["skipped"] == 0
    assert health(env)["status"] == "ok"
