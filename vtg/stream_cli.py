"""`vtg stream SOURCE --model M --query "…"`: ground a video as a live stream and print the events as JSON lines as
they happen (docs/streaming.md). Locally on a `vllm.LLM`, or, with `--endpoint URL`, by sending the file's frames
(JPEG) over a running server's `/v1/streams` WebSocket and printing what comes back."""

from __future__ import annotations

import argparse
import json
import sys
import time

from vtg.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stream",
        help="stream: ground a video as a live stream, moments announced as JSON lines while it plays",
        description="Watch SOURCE (a video file) causally, as if it were live, and print each event (session.created, "
        "moment.started / updated / ended, progress, session.closed) as one JSON line when it happens.",
    )
    p.add_argument("source", metavar="SOURCE", help="a video file, an http(s) URL of one, or an HLS playlist URL")
    p.add_argument("--model", help="model folder (local mode)")
    p.add_argument("--query", action="append", default=[], required=True, help="what to watch for (repeatable)")
    p.add_argument("--realtime", action="store_true", help="pace the file at its own speed (default: as fast as "
                   "the model answers locally; as fast as the socket takes frames with --endpoint)")  # fmt: skip
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a stream setting (a StreamSettings key; VALUE read as YAML), e.g. stride_s=4")  # fmt: skip
    p.add_argument("--endpoint", help="a running `vtg serve` (http(s)://host:port): send the frames to it")
    p.add_argument("--api-key", help="the server's API key (or set VTG_API_KEY)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="tokens per window answer (default: 64 locally, the server's with --endpoint)")  # fmt: skip
    p.add_argument("--think", action="store_true", help="a reasoning block before each window's answer")
    p.add_argument("--jpeg-quality", type=int, default=90, help="--endpoint: JPEG quality of the frames sent")
    p.set_defaults(func=_stream)


def _options(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _print(event: dict) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=True) + "\n")
    sys.stdout.flush()


def _stream(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries only the events
    options = _options(args.option)
    if args.endpoint:
        import asyncio

        return asyncio.run(_remote(args, options))
    if not args.model:
        raise UserError("give --model DIR (local) or --endpoint URL (a running server)")
    return _local(args, options)


def _local(args: argparse.Namespace, options: dict) -> int:
    """The session on a `vllm.LLM` in this process. Without --realtime each due window is answered before the next
    frame (vtg.stream.replay: deterministic, nothing skipped); with it, frames are released at the file's own pace
    and a model slower than the video skips to the newest window, the lag reported."""
    from vllm import SamplingParams

    from vtg.model_folder import ModelFolder
    from vtg.request import Requests
    from vtg.stream import StreamSession, StreamSettings, llm_generate, replay, source_frames
    from vtg.vllm_engine import close_llm, make_llm

    folder = ModelFolder.read(args.model)
    requests = Requests.for_model(folder, think=args.think)
    session = StreamSession(requests, StreamSettings.for_model(folder, options), source=args.source)
    for q in args.query:
        session.add_query(q)
    texts = dict(session.queries)
    frames = source_frames(args.source, session.ring.fps, requests.budget)
    llm = make_llm(args.model)
    try:
        generate = llm_generate(llm, SamplingParams(max_tokens=args.max_tokens or 64, temperature=0.0))
        _print({"type": "session.created", "session": session.describe()})
        if not args.realtime:
            for event in replay(session, frames, generate):
                _print(event)
        else:
            _paced(session, frames, generate)
        _print(session.summary(texts))
    finally:
        frames.close()
        close_llm(llm)
    return 0


def _paced(session, frames, generate) -> None:
    """Frames released on the wall clock at their media time; a window is asked once the frames that have arrived
    are all pushed, so a slow model skips strides instead of queueing them. lag = wall time - newest frame answered."""
    start = None
    pending = None  # the next frame, read ahead to know whether it has already "arrived"
    it = iter(frames)
    while True:
        item = pending if pending is not None else next(it, None)
        pending = None
        if item is None:
            return
        frame, t = item
        start = time.monotonic() - t if start is None else start
        wait = start + t - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        session.push(frame, t)
        pending = next(it, None)
        if pending is not None and start + pending[1] <= time.monotonic():
            continue  # the next frame is already here: push it first (the model is behind)
        ask = session.ask()
        if ask is None:
            continue
        for e in session.answer(generate(ask)):
            _print(e.to_dict())
        progress = session.progress()
        progress["lag"] = round(max(0.0, time.monotonic() - start - session.now), 3)
        _print(progress)


async def _remote(args: argparse.Namespace, options: dict) -> int:
    """The file's frames over a server's `/v1/streams` WebSocket; every server event printed as it comes."""
    import asyncio
    import os

    import websockets

    from vtg.stream import jpeg_base64, source_frames

    url = args.endpoint.rstrip("/")
    url = "ws" + url[4:] if url.startswith("http") else url
    if not url.startswith(("ws://", "wss://")):
        raise UserError(f"--endpoint {args.endpoint!r}: expected http(s)://host:port of a running `vtg serve`")
    key = args.api_key or os.environ.get("VTG_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if args.max_tokens is not None:  # a session option on the server (at most its limits.max_tokens)
        options = {**options, "max_tokens": args.max_tokens}
    if args.think:
        options = {**options, "think": True}
    create = {"type": "session.create", "event_id": "create",
              "session": {"queries": [{"text": q} for q in args.query], "options": options}}  # fmt: skip
    try:
        ws = await websockets.connect(url + "/v1/streams", additional_headers=headers, max_size=None)
    except websockets.InvalidStatus as e:
        body = e.response.body.decode(errors="replace") if e.response.body else ""
        raise UserError(f"{url}/v1/streams refused the session: HTTP {e.response.status_code} {body}") from None
    except OSError as e:
        raise UserError(f"cannot connect to {url}/v1/streams: {e}") from None
    closed = asyncio.Event()

    async def receive():
        async for message in ws:
            event = json.loads(message)
            _print(event)
            if event.get("type") == "session.closed":
                break
        closed.set()

    async with ws:
        await ws.send(json.dumps(create))
        while True:  # until the session exists: its fps says which frames are worth sending
            event = json.loads(await ws.recv())
            _print(event)
            if event.get("type") == "session.created":
                break
            if event.get("type") == "error" and event["error"].get("event_id") == "create":
                return 2
        reader = asyncio.ensure_future(receive())
        frames = source_frames(args.source, float(event["session"]["fps"]))
        start = None
        try:
            while not closed.is_set():
                item = await asyncio.to_thread(next, frames, None)
                if item is None:
                    break
                frame, t = item
                if args.realtime:
                    start = time.monotonic() - t if start is None else start
                    await asyncio.sleep(max(0.0, start + t - time.monotonic()))
                image = await asyncio.to_thread(jpeg_base64, frame, args.jpeg_quality)
                await ws.send(json.dumps({"type": "frame.append", "frame": {"image": image, "media_time": t}}))
            if not closed.is_set():
                await ws.send(json.dumps({"type": "session.close", "event_id": "close"}))
            await reader
        except websockets.ConnectionClosed as e:
            print(f"vtg stream: the server closed the connection: {e}", file=sys.stderr)
            return 1
        finally:
            frames.close()
            reader.cancel()
    return 0
