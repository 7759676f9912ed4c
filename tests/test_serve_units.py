"""Fast unit tests of the serving parts that need no engine: request validation, media path checks, NMS, the
streaming reasoning splitter, and server settings."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vtg.nms import ScoredMoment, consensus_scores, merge_samples, temporal_nms
from vtg.serve.config import Limits, ServeConfigError, load_config
from vtg.serve.errors import APIError
from vtg.serve.media import MediaPolicy
from vtg.serve.protocol import ChatCompletionRequest, GroundingRequest

# ---- protocol --------------------------------------------------------------------------------------------------


def _chat(**kw):
    base = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": "file:///x.mp4"}},
                    {"type": "text", "text": "when?"},
                ],
            }
        ],
    }
    base.update(kw)
    return ChatCompletionRequest.model_validate(base)


def test_chat_request_parses_parts():
    r = _chat()
    assert r.video_urls() == ["file:///x.mp4"]
    assert r.messages[0].text() == "when?"


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"temperature": -1}, "temperature"),
        ({"temperature": 9}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "image_url"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message"),
    ],
)
def test_chat_request_rejects(bad, needle):
    with pytest.raises(ValidationError) as e:
        _chat(**bad)
    assert needle in str(e.value)


def test_grounding_request_validation():
    g = GroundingRequest.model_validate({"video": "a.mp4", "query": "door opens", "mode": "single", "top_k": 3})
    assert g.top_k == 3 and g.mode == "single"
    for bad in ({"query": "  "}, {"mode": "both"}, {"top_k": 0}, {"samples": 0}, {"video": ""}):
        with pytest.raises(ValidationError):
            GroundingRequest.model_validate({"video": "a.mp4", "query": "q", **bad})


# ---- media -----------------------------------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.mp4").write_bytes(b"x" * 10)
    (root / "big.mp4").write_bytes(b"x" * 100)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"s" * 10)
    os.symlink(outside, root / "escape.mp4")
    os.symlink(tmp_path, root / "up")
    return MediaPolicy([str(root)], max_bytes=50), root, outside


def _status(fn, *a):
    with pytest.raises(APIError) as e:
        fn(*a)
    return e.value.status, e.value.message


def test_media_allows_files_under_root(media):
    pol, root, _ = media
    real = str((root / "sub" / "a.mp4").resolve())
    assert pol.resolve_local(f"file://{root}/sub/a.mp4") == real
    assert pol.resolve_local(str(root / "sub" / "a.mp4")) == real
    assert pol.resolve_local("sub/a.mp4") == real  # relative to a root


def test_media_lists_only_real_videos_under_root(media):
    """The listing is what /v1/media serves: a video extension and a readable video stream, inside the roots."""
    from vtg.data.synth import encode_mp4

    pol, root, outside = media
    encode_mp4(np.zeros((2, 16, 16, 3), np.uint8), root / "sub" / "real.mp4", 2.0)
    encode_mp4(np.zeros((2, 16, 16, 3), np.uint8), outside.with_name("secret_real.mp4"), 2.0)
    os.symlink(outside.with_name("secret_real.mp4"), root / "escape_real.mp4")
    names = [v.name for v in pol.list_videos(link=str)]
    assert names == ["sub/real.mp4"]  # not sub/a.mp4 (bytes named .mp4), nor the links leading outside


def test_media_refuses_escapes(media):
    pol, root, outside = media
    assert _status(pol.resolve_local, f"{root}/../secret.mp4")[0] == 403
    assert _status(pol.resolve_local, f"file://{root}/sub/../../secret.mp4")[0] == 403
    assert _status(pol.resolve_local, str(outside))[0] == 403
    status, msg = _status(pol.resolve_local, str(root / "escape.mp4"))  # symlink pointing outside
    assert status == 403 and "outside" in msg
    assert _status(pol.resolve_local, "up/secret.mp4")[0] == 404  # symlinked dir escape is not "found"
    assert _status(pol.resolve_local, f"{root}/up/secret.mp4")[0] == 403
    assert all("secret" not in v.url for v in pol.list_videos(link=str))


def test_media_other_failures(media):
    pol, root, _ = media
    assert _status(pol.resolve_local, str(root / "missing.mp4"))[0] == 404
    assert _status(pol.resolve_local, str(root / "sub"))[0] == 400
    assert _status(pol.resolve_local, str(root / "big.mp4"))[0] == 413
    assert _status(pol.resolve_local, "ftp://h/x.mp4")[0] == 400
    assert _status(pol.resolve_local, "file://otherhost/x.mp4")[0] == 400
    assert _status(MediaPolicy([], max_bytes=1).resolve_local, "/x.mp4")[0] == 403


async def _resolve(policy, ref):
    async with policy.opened(ref) as path:
        return path


def test_url_fetch_off_by_default_and_private_refused(media):
    pol, root, _ = media
    with pytest.raises(APIError) as e:
        asyncio.run(_resolve(pol, "http://example.com/a.mp4"))
    assert e.value.status == 403 and "disabled" in e.value.message
    on = MediaPolicy([str(root)], max_bytes=50, allow_url_fetch=True)
    for url in (
        "http://127.0.0.1:1/a.mp4",
        "http://localhost/a.mp4",
        "http://10.0.0.1/a.mp4",
        "http://169.254.169.254/latest",
        "http://[::1]/a.mp4",
    ):
        with pytest.raises(APIError) as e:
            asyncio.run(_resolve(on, url))
        assert e.value.status == 403 and "non-public" in e.value.message, url


# ---- NMS -------------------------------------------------------------------------------------------------------


def test_consensus_and_nms():
    samples = [[(10, 20)], [(11, 20)], [(10, 19), (40, 45)], []]
    merged = merge_samples(samples, top_k=5, iou_threshold=0.5)
    assert [(m.start, m.end) for m in merged][:1] in ([(10, 20)], [(11, 20)], [(10, 19)])
    assert len(merged) == 2  # the three near-duplicates collapse to one
    top, other = merged
    assert top.score > 0.6 and abs(other.score - 0.25) < 1e-9  # one sample out of four proposed 40-45
    assert (other.start, other.end) == (40.0, 45.0)


def test_nms_top_k_and_threshold():
    cands = [ScoredMoment(0, 10, 0.9, 0), ScoredMoment(1, 10, 0.8, 1), ScoredMoment(20, 30, 0.5, 2)]
    assert [c.start for c in temporal_nms(cands, 0.5, 5)] == [0, 20]
    assert [c.start for c in temporal_nms(cands, 0.95, 5)] == [0, 1, 20]
    assert len(temporal_nms(cands, 0.5, 1)) == 1
    with pytest.raises(ValueError):
        temporal_nms(cands, 0.0, 1)


@given(
    st.lists(
        st.lists(st.tuples(st.floats(0, 100), st.floats(0.1, 20)).map(lambda t: (t[0], t[0] + t[1])), max_size=3),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=60, deadline=None)
def test_consensus_bounds(samples):
    for c in consensus_scores(samples):
        assert 1.0 / len(samples) - 1e-9 <= c.score <= 1.0 + 1e-9  # its own sample always agrees fully
    merged = merge_samples(samples, top_k=3)
    assert len(merged) <= 3 and [m.score for m in merged] == sorted((m.score for m in merged), reverse=True)


# ---- config ----------------------------------------------------------------------------------------------------


def test_config_rejects_bad_settings(tmp_path):
    with pytest.raises(ServeConfigError, match="limits.max_frames"):
        Limits(max_frames=0)
    with pytest.raises(ServeConfigError, match=r"unknown key\(s\): nonsense"):
        load_config(None, {"model": "m", "nonsense": 1})
    with pytest.raises(ServeConfigError, match="not a folder"):
        load_config(None, {"model": "m", "allowed_local_media_path": [str(tmp_path / "nope")]})
    with pytest.raises(ServeConfigError, match="adapter_config.json"):
        load_config(None, {"model": "m", "lora": {"a": str(tmp_path)}})
    rec = tmp_path / "s.yaml"
    rec.write_text("serve:\n  port: 9001\n  limits:\n    max_frames: 8\n")
    cfg = load_config(str(rec), {"model": "/x/tiny", "limits": {"max_tokens": 7}})
    assert (cfg.port, cfg.limits.max_frames, cfg.limits.max_tokens, cfg.model_name) == (9001, 8, 7, "tiny")


def test_frame_cap_lowers_max_frames_or_a_fixed_nframes():
    """`limits.max_frames` caps what a request decodes: max_frames for fps sampling (the fps kept), nframes (kept
    even) for a model trained on a fixed count, which the max_frames cap alone does not limit."""
    from vtg.data.video import FrameSampling
    from vtg.serve.model import capped_sampling

    assert capped_sampling(FrameSampling(fps=1.0, min_frames=8), 32) == FrameSampling(
        fps=1.0, min_frames=8, max_frames=32
    )
    assert capped_sampling(FrameSampling(fps=1.0, min_frames=8), 6) == FrameSampling(
        fps=1.0, min_frames=6, max_frames=6
    )
    assert capped_sampling(FrameSampling(nframes=64), 31) == FrameSampling(nframes=30, max_frames=31)
    assert capped_sampling(FrameSampling(nframes=16), 32) == FrameSampling(nframes=16, max_frames=32)
    assert capped_sampling(FrameSampling(nframes=16, max_frames=20), 32) == FrameSampling(nframes=16, max_frames=20)


def test_vllm_scale_out_settings_and_engine_args_reach_the_engine(tiny_qwen25):
    """`vtg serve --tensor-parallel-size 2 --data-parallel-size 3 --engine-arg KEY=VALUE`: vLLM's own parallelism and
    any engine argument by name (checked here on the arguments the engine is built from; a CPU runs neither)."""
    import argparse

    from vtg.serve.cli import config_from_args, register
    from vtg.serve.model import engine_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    argv = ["serve", "--model", str(tiny_qwen25), "--tensor-parallel-size", "2", "--data-parallel-size", "3"]
    argv += ["--engine-arg", "enable_prefix_caching=true", "--engine-arg", "max-num-batched-tokens=4096"]
    args = engine_args(config_from_args(parser.parse_args(argv)))
    assert (args.tensor_parallel_size, args.data_parallel_size) == (2, 3)
    assert (args.enable_prefix_caching, args.max_num_batched_tokens) == (True, 4096)
    cfg = load_config(None, {"model": str(tiny_qwen25), "engine_args": {"enable_prefix_cachng": True}})
    with pytest.raises(ServeConfigError, match="'enable_prefix_cachng' is not a vLLM engine argument.*enable_prefix"):
        engine_args(cfg)
    with pytest.raises(ServeConfigError, match="tensor_parallel_size must be an integer >= 1"):
        load_config(None, {"model": "m", "tensor_parallel_size": 0})
    with pytest.raises(ServeConfigError, match="grounding_strategy must be one of"):
        load_config(None, {"model": "m", "grounding_strategy": "fast"})


# ---- constrained decoding regex --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, think", [("multi", True), ("multi", False), ("single", True), ("single", False)])
def test_answer_regex_always_parses_strictly(mode, think):
    import re

    from vtg.data.grammar import parse_answer
    from vtg.serve.constrain import answer_regex

    rx = answer_regex(mode, think, max_moments=3)

    @given(st.from_regex(re.compile(rx), fullmatch=True))
    @settings(max_examples=80, deadline=None)
    def check(text):
        p = parse_answer(text)
        assert p.ok and p.strict, text
        assert (p.think is not None) == think
        if mode == "single":
            assert len(p.moments) == 1

    check()


@given(st.integers(0, 5000))
@settings(max_examples=60, deadline=None)
def test_int_upto_regex(n):
    import re

    from vtg.serve.constrain import int_upto

    rx = re.compile(int_upto(n))
    for k in {0, 1, 9, 10, n // 3, n - 1, n, n + 1, n + 10, 10 * n + 7}:
        if k >= 0:
            assert bool(rx.fullmatch(str(k))) == (k <= n), (n, k)
    assert not rx.fullmatch("0" + str(n))


def test_limiter_queue_and_429():
    from vtg.serve.metrics import Metrics
    from vtg.serve.serving import Limiter

    async def scenario():
        m = Metrics()
        lim = Limiter(1, 1, m)
        running = await lim.acquire()
        waiter = asyncio.create_task(lim.acquire())  # queued
        await asyncio.sleep(0)
        with pytest.raises(APIError) as e:
            await lim.acquire()  # queue full
        assert e.value.status == 429 and "max_queue" in e.value.message
        running.release()
        running.release()  # a second release of the same slot frees nothing more
        queued = await asyncio.wait_for(waiter, 1)  # the queued one gets the slot
        assert lim.load() == {"slots_in_use": 1, "slots": 1, "waiting": 0}
        queued.release()
        assert lim.load()["slots_in_use"] == 0
        return m.render().decode()

    text = asyncio.run(scenario())
    assert "vtg_requests_rejected_total 1.0" in text and "vtg_requests_in_flight 0.0" in text


def test_grounding_progress_counts_windows_not_calls():
    """`agreement` asks two calls a window: progress and its log still count windows."""
    from vtg.grounding import Ask
    from vtg.serve.metrics import GroundingProgress, Metrics

    m = Metrics()
    tracker = GroundingProgress(m).tracker("long.mp4")
    tracker.ask(Ask([None] * 8, "coarse", done=0, windows=4, total=16))  # 4 windows, 2 calls each
    text = m.render().decode()
    assert 'vtg_grounding_progress{request="g1",stage="coarse"} 0.25' in text
    assert 'vtg_grounding_calls_total{stage="coarse"} 8.0' in text
    tracker.done()
    assert "vtg_grounding_progress{" not in m.render().decode()


def test_event_stream_of_a_client_that_stops_reading_is_cut_off():
    """A real uvicorn and a real socket whose client reads the headers and then nothing: once the session's outbox
    overflows (the events went nowhere: the socket and uvicorn's write buffer are full), the response is cut off and
    its clean-up runs, rather than waiting on the full socket for as long as the client keeps it open. The events
    here are made large so the buffers fill within a second (a stream session's are ~150 bytes)."""
    import socket
    import threading
    import time

    import uvicorn
    from fastapi import FastAPI

    from vtg.serve.app import EventStreamResponse
    from vtg.serve.serving import EventStream
    from vtg.serve.streams import Outbox, _sse

    from support.server import free_port

    closed = threading.Event()
    app = FastAPI()

    @app.get("/events")
    async def events():
        out = Outbox(limit=32)

        async def produce():
            while not out.overflow.is_set():
                out.put({"type": "progress", "pad": "x" * 4096})
                await asyncio.sleep(0)

        producer = asyncio.ensure_future(produce())

        async def stream():
            while (event := await out.get()) is not None:
                yield _sse(event)

        async def close():
            producer.cancel()
            closed.set()

        return EventStreamResponse(EventStream(stream(), close, abort=out.overflow))

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        client = socket.create_connection(("127.0.0.1", port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(12).startswith(b"HTTP/1.1 200")  # then it reads nothing more, and stays connected
        assert closed.wait(30), "the response was not cut off: its clean-up never ran"
        client.close()
    finally:
        server.should_exit = True
        thread.join(10)
