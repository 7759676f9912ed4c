"""The server under hostile and careless clients (issue classes in order): each request's cost bounded before work
starts, every body limited while it is read, engine refusals as 4xx, streams validated before their 200, only videos
served, no secret logged, fetched media within a disk budget and removed on exit, emptied moments dropped, and JSONL
bodies that are not UTF-8 named. One real server (tiny Qwen2.5-VL on the vLLM CPU engine, an API key, small limits)
and real files made here."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from support.hostile import size_switching_mp4
from support.server import metric, start_server
from support.videos import grey_video

pytestmark = pytest.mark.integration
KEY = "hardening-secret-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _video(path: Path, frames: int, size: tuple[int, int], fps: float = 2.0) -> Path:
    from vtg.data.synth import encode_mp4

    h, w = size
    rng = np.random.default_rng(0)
    encode_mp4(rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8), path, fps)
    return path


@pytest.fixture(scope="module")
def files_server(tmp_path_factory):
    """A plain HTTP file server on loopback, for the server's URL fetching."""
    root = tmp_path_factory.mktemp("fetchable")
    for i in range(4):
        _video(root / f"clip{i}.mp4", 8, (64, 64))
    (root / "notes.mp4").write_text("not a video, whatever its name says")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


@pytest.fixture(scope="module")
def srv(tiny_qwen25, synth_world, files_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_hardening")
    media = tmp / "media"
    media.mkdir()
    _video(media / "huge_frames.mp4", 2, (1024, 1024))  # 1.05 Mpx a frame: over the 0.5 Mpx limit below
    _video(media / "many_frames.mp4", 2400, (64, 64), fps=24.0)  # 9.8 Mpx decoded to sample it: over 5 Mpx
    (media / "answers.jsonl").write_text((synth_world / "test.jsonl").read_text())  # a data set's answers
    (media / "notes.mp4").write_text("not a video, whatever its name says")
    # the header says 64x64; then 640x480 frames (each under the 0.5 Mpx frame limit, 12 Mpx decoded in all)
    size_switching_mp4(media / "grows.mp4", [(2, 64, 64), (40, 480, 640)])
    size_switching_mp4(media / "giant_frame.mp4", [(2, 64, 64), (2, 16000, 16000)])  # 256 Mpx: ~1 GB if built
    grey_video(media / "four_hours.mp4", 4 * 3600)
    sizes = sorted(p.stat().st_size for p in files_server[1].glob("*.mp4"))
    budget = sizes[-1] + sizes[-2] + 10  # room for two fetched clips of the four
    recipe = tmp / "serve.yaml"
    recipe.write_text(
        "serve:\n  grounding_samples: 2\n  max_model_len: 1024\n  limits:\n    max_tokens: 32\n    max_frames: 16\n"
        "    max_frame_pixels: 500000\n    max_decoded_pixels: 5000000\n    body_timeout_s: 2\n"
        f"    header_timeout_s: 2\n    max_fetch_cache_bytes: {budget}\n    max_concurrency: 4\n    max_queue: 64\n"
    )
    server = start_server(
        [
            "--model",
            str(tiny_qwen25),
            "--config",
            str(recipe),
            "--served-model-name",
            "tiny",
            "--api-key",
            KEY,
            "--allowed-local-media-path",
            str(synth_world),
            "--allowed-local-media-path",
            str(media),
            "--upload-dir",
            str(tmp / "uploads"),
            "--allow-url-fetch",
            "--allow-private-urls",
        ],
        tmp / "server.log",
    )
    yield {
        "url": server.url,
        "world": synth_world,
        "media": media,
        "server": server,
        "tmp": tmp,
        "fetch_base": files_server[0],
        "fetch_budget": budget,
    }
    server.stop()


def _post(srv, path, body, timeout: float = 120, **kw):
    return httpx.post(srv["url"] + path, json=body, headers=AUTH, timeout=timeout, **kw)


def _grounding(srv, video, **extra):
    return _post(srv, "/v1/grounding", {"video": video, "query": "the red square", **extra})


def _metric(srv, name: str, **labels) -> float:
    return metric(srv["url"], name, **labels)


# ---- 1. a request's cost is bounded before decoding -------------------------------------------------------------


def test_decode_budget_refuses_before_decoding(srv):
    r = _grounding(srv, "huge_frames.mp4")
    assert r.status_code == 413 and "limits.max_frame_pixels" in r.json()["error"]["message"], r.text
    r = _grounding(srv, "many_frames.mp4")
    assert r.status_code == 413 and "limits.max_decoded_pixels" in r.json()["error"]["message"], r.text
    r = _grounding(srv, "videos/v00000.mp4", samples=1)  # an ordinary video still passes
    assert r.status_code == 200, r.text


# ---- 2. every body is limited while it is read, and a stalled client is cut off ---------------------------------


def _raw(srv, head: bytes, chunks: list[bytes] = (), timeout: float = 30.0) -> tuple[int, str]:
    """Send `head`, then `chunks` one by one while no response has come (a server that answers early stops reading),
    then wait for the response; (status, body)."""
    import select

    host = urlsplit(srv["url"])
    with socket.create_connection((host.hostname, host.port), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the response is here
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not part:
                break
            data += part
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), body.decode(errors="replace")


def test_chunked_body_over_the_limit_is_refused_while_read(srv):
    head = (
        f"POST /v1/grounding HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"x" * 65536
    chunks = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(40)]  # 2.5 MiB, no length given
    status, text = _raw(srv, head, chunks + [b"0\r\n\r\n"])
    assert status == 413 and "1 MiB" in text, text
    # the declared length is refused before a byte of the body is read
    r = httpx.post(srv["url"] + "/v1/grounding", content=b"{" + b" " * (2 << 20) + b"}", headers=AUTH, timeout=60)
    assert r.status_code == 413


def test_a_client_that_stops_sending_is_timed_out_and_health_stays_fast(srv):
    head = (
        f"POST /v1/grounding HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    t0 = time.monotonic()
    status, text = _raw(srv, head, [b'{"video": "v.mp4", '])  # then nothing more: a client that stopped sending
    assert status == 408 and "limits.body_timeout_s" in text, text
    assert time.monotonic() - t0 < 15  # body_timeout_s is 2 s
    assert httpx.get(srv["url"] + "/health", timeout=5).status_code == 200


# ---- 3. the engine's refusals are 4xx with the error envelope ---------------------------------------------------


def _chat(text: str, **extra):
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "max_tokens": 8,
        **extra,
    }


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_unicode_and_too_long_prompts_are_400_streamed_or_not(srv, stream):
    lone = json.dumps(_chat("a", stream=stream)).replace('"text": "a"', '"text": "a\\ud800b"')
    r = httpx.post(
        srv["url"] + "/v1/chat/completions",
        content=lone,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 400 and "lone surrogate U+D800" in r.json()["error"]["message"], r.text
    r = _post(srv, "/v1/chat/completions", _chat("word " * 3000, stream=stream))  # longer than max_model_len 1024
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json") and r.json()["error"]["type"]
    bad_regex = _chat("a", stream=stream, structured_outputs={"regex": "(unclosed"})
    r = _post(srv, "/v1/chat/completions", bad_regex)
    assert r.status_code == 400 and r.json()["error"]["message"], r.text


# ---- 4. streams: a 4xx before their 200, and failures counted ---------------------------------------------------


def test_stream_errors_known_before_the_first_token_are_plain_http_errors(srv):
    failed = _metric(srv, "vtg_request_failures_total", route="/v1/chat/completions", kind="client_error")
    with httpx.stream(
        "POST", srv["url"] + "/v1/chat/completions", json=_chat("word " * 3000, stream=True), headers=AUTH, timeout=60
    ) as r:
        assert r.status_code == 400 and not r.headers["content-type"].startswith("text/event-stream")
    assert _metric(srv, "vtg_request_failures_total", route="/v1/chat/completions", kind="client_error") == failed + 1
    with httpx.stream(
        "POST", srv["url"] + "/v1/chat/completions", json=_chat("hello", stream=True), headers=AUTH, timeout=60
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and not any('"error"' in e for e in events)


def test_a_stream_that_fails_after_its_200_ends_with_an_error_event_and_done(tiny_qwen25, tmp_path):
    """A failure after the first token (an engine fault mid-generation) cannot be provoked on demand in the real
    engine, so the engine's output stream here fails after its first output; everything around it is real."""
    from vtg.serve.config import load_config
    from vtg.serve.metrics import Metrics
    from vtg.serve.model import ServedModel
    from vtg.serve.protocol import ChatCompletionRequest
    from vtg.serve.serving import Serving

    class Output:
        prompt_token_ids = [1, 2]
        outputs = [type("C", (), {"index": 0, "text": "starts at", "token_ids": [3], "finish_reason": None})()]

    async def failing():
        yield Output()
        raise RuntimeError("engine fault")

    cfg = load_config(None, {"model": str(tiny_qwen25)})
    serving = Serving(cfg, ServedModel(cfg), Metrics())
    failures = []

    async def run():
        slot = await serving.limiter.acquire()  # as chat_stream does before handing the events over
        req = ChatCompletionRequest(**_chat("hello", stream=True))
        request = type("R", (), {"duration": None})()
        outputs = failing()
        first = await anext(outputs)
        events = serving._stream_events(req, request, first, outputs, failures.append, slot)
        return [e async for e in events], serving.limiter.load()["slots_in_use"]

    events, in_use = asyncio.run(run())
    assert failures == [500] and '"internal_error"' in events[-2] and events[-1] == "data: [DONE]\n\n"
    assert in_use == 0


# ---- 5. only videos are served ----------------------------------------------------------------------------------


def test_media_serves_videos_only_through_signed_urls(srv):
    listed = httpx.get(srv["url"] + "/v1/videos", headers=AUTH, timeout=30).json()["data"]
    names = {v["name"]: v for v in listed}
    assert "answers.jsonl" not in names and "notes.mp4" not in names  # listed: what /v1/media serves
    video = next(v for v in listed if v["name"].startswith("videos/"))
    assert KEY not in video["media_url"] and "sig=" in video["media_url"]
    assert httpx.get(srv["url"] + video["media_url"], timeout=30).status_code == 200
    for name in ("answers.jsonl", "notes.mp4"):
        r = httpx.get(srv["url"] + "/v1/media", params={"url": str(srv["media"] / name)}, headers=AUTH, timeout=30)
        assert r.status_code == 403 and "only videos are served" in r.json()["error"]["message"], (name, r.text)
    forged = video["media_url"].replace("sig=", "sig=0")
    assert httpx.get(srv["url"] + forged, timeout=30).status_code == 401
    expired = video["media_url"].split("&exp=")[0] + "&exp=1&sig=" + video["media_url"].split("sig=")[1]
    assert httpx.get(srv["url"] + expired, timeout=30).status_code == 401


# ---- 6. no secret in any log line -------------------------------------------------------------------------------


def test_the_api_key_never_reaches_the_log(srv):
    url = str(srv["world"] / "videos" / "v00000.mp4")
    r = httpx.get(srv["url"] + "/v1/media", params={"url": url, "api_key": KEY}, timeout=30)
    assert r.status_code == 401  # a key in a URL is not accepted ...
    httpx.get(srv["url"] + "/v1/models", params={"api_key": KEY, "token": KEY}, headers=AUTH, timeout=30)
    httpx.get(srv["url"] + "/v1/models", params={"x_custom_secret": KEY}, headers=AUTH, timeout=30)  # any name
    assert httpx.get(srv["url"] + f"/v1/{KEY}", headers=AUTH, timeout=30).status_code == 404  # in the path
    time.sleep(0.5)
    log = srv["server"].log.read_text(errors="replace")
    assert "/v1/media?url=" in log and KEY not in log  # ... and where one was sent, the log masks it


# ---- 7. fetched videos within a disk budget, removed on exit ----------------------------------------------------


def test_fetched_videos_stay_within_the_disk_budget(srv):
    pid = srv["server"].proc.pid
    for i in range(4):
        r = _grounding(srv, f"{srv['fetch_base']}/clip{i}.mp4", samples=1)
        assert r.status_code == 200, r.text
    (folder,) = Path("/tmp").glob(f"vtg-serve-fetch-{pid}-*")
    assert 1 <= len(list(folder.iterdir())) <= 2
    assert sum(p.stat().st_size for p in folder.iterdir()) <= srv["fetch_budget"]


@pytest.mark.slow  # a server of its own, started to be stopped (~60 s)
def test_the_fetch_folder_is_removed_when_the_server_stops(tiny_qwen25, files_server, tmp_path):
    server = start_server(
        ["--model", str(tiny_qwen25), "--allow-url-fetch", "--allow-private-urls"], tmp_path / "server.log"
    )
    try:
        r = httpx.post(
            server.url + "/v1/grounding",
            json={"video": f"{files_server[0]}/clip0.mp4", "query": "q", "samples": 1, "max_tokens": 8},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        (folder,) = Path("/tmp").glob(f"vtg-serve-fetch-{server.proc.pid}-*")
        assert any(folder.iterdir())
        _health_says_when_the_engine_dies(server)
    finally:
        server.stop()
    assert not folder.exists()


def _health_says_when_the_engine_dies(server) -> None:
    """/health checks the engine core process itself: killed, /health turns 503 and says so (the HTTP server up)."""
    import psutil

    assert httpx.get(server.url + "/health", timeout=10).json()["engine"]["alive"]
    for child in psutil.Process(server.proc.pid).children(recursive=True):  # the engine core (and its helpers)
        child.kill()
    deadline = time.monotonic() + 30
    while (r := httpx.get(server.url + "/health", timeout=10)).status_code == 200:
        assert time.monotonic() < deadline, "/health still 200 30 s after the engine core was killed"
        time.sleep(0.5)
    assert r.status_code == 503 and "engine" in r.json()["error"]["message"], r.text


# ---- 8. moments that clamping empties are dropped -----------------------------------------------------------------


def test_the_server_drops_moments_that_lie_outside_the_video():
    from vtg.serve.serving import _choice_moments

    (moments,) = _choice_moments(["starts at 40.0s, ends at 50.0s; starts at 2.0s, ends at 4.0s"], duration=30.0)
    assert [(m.start, m.end) for m in moments] == [(2.0, 4.0)]


# ---- 9. a request body that is not UTF-8 is named ---------------------------------------------------------------


def test_a_body_that_is_not_utf8_is_a_400_that_says_so(srv):
    r = httpx.post(
        srv["url"] + "/v1/grounding",
        content=b'{"video": "a.mp4", "query": "\xff\xfe"}',
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400 and "not valid UTF-8" in r.json()["error"]["message"], r.text


# ---- 10. the decode budget holds for what is decoded, not for what the header says ------------------------------


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_frames_that_grow_past_the_header_are_held_to_the_decode_budget(srv):
    """The header says 64x64 (164 kpx to decode in all); the frames become 640x480, 12 Mpx in all: over 5 Mpx."""
    r = _grounding(srv, "grows.mp4", samples=1)
    message = r.json()["error"]["message"]
    assert r.status_code == 413 and "limits.max_decoded_pixels" in message and "640x480" in message, r.text
    assert "header's 64x64" in message


def test_a_frame_far_over_the_limit_is_never_built(srv):
    """A 16000x16000 frame after a 64x64 header: refused by the decoder before it allocates the frame (~1 GB as
    decoded and converted), so the API server's peak memory barely moves (decoder tables only)."""
    pid = srv["server"].proc.pid
    before = _peak_rss_mb(pid)
    r = _grounding(srv, "giant_frame.mp4", samples=1)
    message = r.json()["error"]["message"]
    assert r.status_code == 413 and "16000x16000" in message and "limits.max_frame_pixels" in message, r.text
    assert _peak_rss_mb(pid) - before < 400, (before, _peak_rss_mb(pid))


# ---- 11. a client that goes away takes its work with it --------------------------------------------------------


def _slots_in_use(srv) -> int:
    return httpx.get(srv["url"] + "/health", timeout=10).json()["slots_in_use"]


def _freed_within(srv, seconds: float) -> float:
    t0 = time.monotonic()
    while _slots_in_use(srv):
        assert time.monotonic() - t0 < seconds, f"slots still held {seconds} s after the clients left"
        time.sleep(0.1)
    return time.monotonic() - t0


def test_clients_that_vanish_free_their_slots_at_once(srv):
    """Four windowed requests on a 4-hour video (tens of seconds of work each) fill the four slots; their clients
    give up after 2 s. Every slot is free within 5 s, the grounding gauges drop, and a normal request runs at once."""

    left = []

    def abandon():
        try:
            _post(srv, "/v1/grounding", {"video": "four_hours.mp4", "query": "q", "max_tokens": 8}, timeout=2)
        except httpx.ReadTimeout:
            left.append(True)

    threads = [threading.Thread(target=abandon) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert _slots_in_use(srv) == 4
    for t in threads:
        t.join()
    assert len(left) == 4  # each client gave up before its answer
    _freed_within(srv, 5.0)
    assert _metric(srv, "vtg_grounding_running", stage="coarse") == 0
    assert _metric(srv, "vtg_requests_total", route="/v1/grounding", status="499") >= 4
    t0 = time.monotonic()
    assert _grounding(srv, "videos/v00000.mp4", samples=1).status_code == 200
    assert time.monotonic() - t0 < 30


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a client that crashed or a middlebox does."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _stream_request(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


@pytest.mark.parametrize("pattern", ["pipelined_never_read", "reset_after_headers", "closed_mid_body"])
def test_streams_release_their_slot_whatever_the_connection_does(srv, pattern):
    """Streaming chats over raw sockets, then the connection dropped in three ways: several pipelined streams never
    read then reset; reset once the response started; closed while the request body was half sent."""
    host = urlsplit(srv["url"])
    video = str(srv["world"] / "videos" / "v00000.mp4")
    body = _chat("describe", stream=True, max_tokens=32)
    body["messages"][0]["content"].append({"type": "video_url", "video_url": {"url": video}})
    request = _stream_request(body)
    socks = []
    for _ in range(3):
        sock = socket.create_connection((host.hostname, host.port), timeout=30)
        if pattern == "pipelined_never_read":
            sock.sendall(request * 4)
        elif pattern == "reset_after_headers":
            sock.sendall(request)
            assert sock.recv(12).startswith(b"HTTP/1.1")
        else:
            sock.sendall(request[: len(request) - 20])
        socks.append(sock)
    time.sleep(0.5)
    for sock in socks:
        _reset(sock)
    _freed_within(srv, 5.0)
    assert httpx.get(srv["url"] + "/health", timeout=10).status_code == 200


def test_a_stream_whose_send_fails_before_its_first_event_releases_its_slot(tiny_qwen25):
    """A send that raises at the response's start (uvloop's 'TCPTransport closed' when the peer reset in between):
    the event generator never starts, so only the response's own clean-up can release the slot. The response and
    the serving logic are real; the engine's output stream is a stand-in (a GPU-free engine cannot be made to
    reset mid-call on demand)."""
    from vtg.serve.app import EventStreamResponse
    from vtg.serve.config import load_config
    from vtg.serve.metrics import Metrics
    from vtg.serve.model import ServedModel
    from vtg.serve.protocol import ChatCompletionRequest
    from vtg.serve.serving import EventStream, Serving

    closed = []

    async def outputs():
        try:
            yield None
        finally:
            closed.append(True)

    cfg = load_config(None, {"model": str(tiny_qwen25)})
    serving = Serving(cfg, ServedModel(cfg), Metrics())

    async def scenario():
        slot = await serving.limiter.acquire()
        gen = outputs()
        await anext(gen)
        req = ChatCompletionRequest(**_chat("hello", stream=True))
        events = serving._stream_events(req, type("R", (), {"duration": None})(), None, gen, print, slot)

        async def close():
            try:
                await events.aclose()
                await gen.aclose()
            finally:
                slot.release()

        async def send(message):
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

        async def receive():
            await asyncio.sleep(3600)

        response = EventStreamResponse(EventStream(events, close))
        with pytest.raises(RuntimeError, match="TCPTransport closed"):
            await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        return serving.limiter.load()["slots_in_use"]

    assert asyncio.run(scenario()) == 0 and closed == [True]


# ---- 12. malformed signatures, headers and what the server says about itself -----------------------------------


@pytest.mark.parametrize(
    "exp, sig",
    [("²", "0" * 64), ("١٢٣٤٥٦٧٨٩٠", "0" * 64), ("9" * 5000, "0" * 64), ("9999999999", "é" * 64), ("9999999999", "Z")],
)
def test_malformed_media_signatures_are_401_not_500(srv, exp, sig):
    url = str(srv["world"] / "videos" / "v00000.mp4")
    r = httpx.get(srv["url"] + "/v1/media", params={"url": url, "exp": exp, "sig": sig}, timeout=30)
    assert r.status_code == 401, r.text


def test_headers_too_large_or_too_slow_are_refused(srv):
    big = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 100_000}\r\n\r\n".encode()
    status, text = _raw(srv, big)
    assert status == 431 and "limits.max_header_bytes" in text, text
    t0 = time.monotonic()
    status, text = _raw(srv, b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and the blank line never comes
    assert status == 408 and "limits.header_timeout_s" in text and time.monotonic() - t0 < 10, text


def test_health_reports_the_engine_and_the_slots(srv):
    body = httpx.get(srv["url"] + "/health", timeout=10).json()
    assert body["status"] == "ok" and body["engine"]["alive"] and body["engine"]["core_processes"] >= 1
    assert body["slots"] == 4 and body["slots_in_use"] == 0


def test_video_errors_do_not_reveal_the_servers_paths(srv):
    """A fetched file that is not a video is read from the server's temporary fetch folder, a local one from the
    real path under its root: the error names the video as the request did."""
    bad = _grounding(srv, f"{srv['fetch_base']}/notes.mp4", samples=1)
    assert bad.status_code == 400 and "notes.mp4" in bad.text, bad.text
    assert "vtg-serve-fetch" not in bad.text and str(Path(tempfile.gettempdir())) not in bad.text, bad.text
    local = _grounding(srv, "notes.mp4", samples=1)
    assert local.status_code == 400 and str(srv["media"]) not in local.text, local.text


def test_no_5xx_across_the_module(srv):
    text = httpx.get(srv["url"] + "/metrics", timeout=10).text
    assert not [line for line in text.splitlines() if line.startswith("vtg_requests_total") and 'status="5' in line]
