"""Live streams on the server: `vtg.stream` sessions fed over a WebSocket (`/v1/streams`) or read by the server
itself (`/v1/streams/read`, events as server-sent events). See docs/serving.md#streams.

A session's asks run in the background on the server's engine, through the same path as every other request (an
engine slot from the `Limiter`, `Serving._final`, the request deadline), one window at a time: frames keep being
received while the model answers, and when it falls behind the session skips to the newest window and reports the
lag (`vtg.stream.StreamSession`). Frame decoding and `push` run in worker threads. Events wait for their client in a
bounded outbox: a client that stops reading is closed, and everything a session holds (its pending ask, its engine
slot, its stream slot) is freed however it ends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from vtg.data.hls import is_hls_url
from vtg.errors import UserError
from vtg.serve import errors as E
from vtg.serve.protocol import (
    CLIENT_EVENT_TYPES,
    CLIENT_EVENTS,
    FrameAppend,
    QueryAdd,
    QueryRemove,
    SessionClose,
    SessionCreate,
    StreamQueryIn,
    StreamReadRequest,
)
from vtg.stream import StreamError, StreamSession, StreamSettings, file_frames

log = logging.getLogger("vtg.serve")

SUBPROTOCOL = "vtg.v1"  # what the server answers a browser that offers it (with its key as `vtg-api-key.<key>`)
KEY_PROTOCOL = "vtg-api-key."
# WebSocket close codes (RFC 6455, section 7.4.1)
CLOSE_NORMAL = 1000  # after session.closed
CLOSE_POLICY = 1008  # a limit ended the session: idle, media length, a client that does not read
CLOSE_INTERNAL = 1011  # the engine stopped, or a server bug (an error event says which)
BIG_MESSAGE = 64 * 1024  # client messages larger than this are parsed in a worker thread
IMAGE_FORMATS = ("JPEG", "PNG")


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex[:20]}"


def error_event(err: E.APIError, event_id: str | None = None, media_time: float | None = None) -> dict[str, Any]:
    """An `error` server event: the API's error envelope, plus the client event and the frame it is about."""
    info: dict[str, Any] = {"type": err.type, "code": err.status, "message": err.message, "param": err.param}
    if event_id is not None:
        info["event_id"] = event_id
    if media_time is not None:
        info["media_time"] = media_time
    return {"type": "error", "error": info}


def ws_max_size(limits) -> int:
    """The largest WebSocket message the server reads: one frame at `max_frame_bytes` in base64, and its JSON."""
    return 4 * math.ceil(limits.max_frame_bytes / 3) + 64 * 1024


# ---- session slots -----------------------------------------------------------------------------------------------


class StreamSlots:
    """At most `limits.max_streams` sessions open at once (429 beyond); the count is `/health`'s `streams` and the
    `vtg_streams_active` gauge."""

    def __init__(self, limit: int, metrics):
        self.limit, self.active, self.metrics = limit, 0, metrics

    def take(self) -> _StreamSlot:
        if self.active >= self.limit:
            self.metrics.streams_rejected.inc()
            raise E.overloaded(
                f"server busy: {self.active} stream sessions already open (limits.max_streams); retry later"
            )
        self.active += 1
        self.metrics.streams_active.inc()
        return _StreamSlot(self)

    def load(self) -> dict[str, int]:
        return {"streams": self.active, "max_streams": self.limit}


class _StreamSlot:
    def __init__(self, slots: StreamSlots):
        self._slots: StreamSlots | None = slots

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.active -= 1
            slots.metrics.streams_active.dec()


# ---- the outbox --------------------------------------------------------------------------------------------------


class Outbox:
    """Server events waiting for their client, each given an `event_id`. Producers never wait: past `limit` events
    unsent the outbox overflows (the session is then closed: its client is not reading). `close()` ends it after the
    events already in it."""

    _END = object()

    def __init__(self, limit: int):
        self.limit = limit
        self._items: deque = deque()
        self._ready = asyncio.Event()
        self.overflow = asyncio.Event()
        self.closed = False

    def put(self, event: dict[str, Any]) -> None:
        if self.closed or self.overflow.is_set():
            return
        if len(self._items) >= self.limit:
            self.overflow.set()
            return
        self._items.append({"type": event["type"], "event_id": new_event_id(), **event})
        self._ready.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._items.append(self._END)
            self._ready.set()

    async def get(self) -> dict[str, Any] | None:
        """The next event; None once closed and drained."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        return None if item is self._END else item


# ---- one session on the engine ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionOptions:
    settings: StreamSettings  # vtg.stream's: window, stride, fps, thresholds
    max_tokens: int  # each window's answer budget
    think: bool  # a reasoning block before each window's answer


class Live:
    """A `StreamSession` on the server's engine: `push` frames; whenever a window is due, it is asked in the
    background (one ask at a time, in an engine slot like any request) and its events go to the outbox."""

    def __init__(
        self, streams: Streams, session: StreamSession, texts: dict[str, str], out: Outbox, opts: SessionOptions
    ):
        from vtg.serve.serving import sampling_params

        self.streams, self.serving, self.session, self.texts, self.out = streams, streams.serving, session, texts, out
        self.id = f"strm_{uuid.uuid4().hex[:20]}"
        self.think = opts.think
        self.params = sampling_params(max_tokens=opts.max_tokens, temperature=0.0)
        self.task: asyncio.Task | None = None
        self.fatal: E.APIError | None = None  # the engine stopped: the session cannot go on
        self._idle = asyncio.Event()
        self._idle.set()

    def created(self) -> dict[str, Any]:
        session = {"id": self.id, **self.session.describe(), "max_tokens": self.params.max_tokens, "think": self.think}
        return {"type": "session.created", "session": session}

    def add_query(self, text: str, query_id: str | None) -> str:
        qid = self.session.add_query(text, query_id)
        self.texts[qid] = self.session.queries[qid]
        self.kick()
        return qid

    async def push(self, frame, t: float) -> None:
        """One decoded frame at media time `t` (StreamError: refused, the session goes on)."""
        first = self.session.ring.first_t
        limit = self.streams.lim.max_stream_s
        if first is not None and t - first > limit:
            raise _Limit(
                f"frame at media_time {t:g}s: the stream would span {t - first:.1f} s, over the {limit:g} s limit "
                "of one stream session (limits.max_stream_s)"
            )
        await asyncio.to_thread(self.session.push, frame, t, f"frame at media_time {t:g}s")
        self.streams.metrics.stream_frames.inc()
        self.kick()

    def kick(self) -> None:
        if self.task is None and self.fatal is None and self.session.due():
            self._idle.clear()
            self.task = asyncio.ensure_future(self._ask())

    async def idle(self) -> None:
        """Until no ask is running (nor due)."""
        await self._idle.wait()

    async def _ask(self) -> None:
        from vtg.grounding import _completions, engine_params

        serving, session = self.serving, self.session
        try:
            slot = await serving.limiter.acquire()  # waits its turn among all requests; 429 when the queue is full
            try:
                ask = await asyncio.to_thread(session.ask)  # the newest window when the slot came
                if ask is None:
                    return
                params = [engine_params(self.params, c) for c in ask.calls]
                inputs = await asyncio.to_thread(lambda: [c.request.vllm_input() for c in ask.calls])
                async with serving._deadline():
                    outs = await asyncio.gather(*(serving._final(i, p, None) for i, p in zip(inputs, params)))
                del inputs
            finally:
                slot.release()
            answers = [_completions(o, p.n) for o, p in zip(outs, params)]
            serving._count_usage(
                sum(len(o.prompt_token_ids or []) for o in outs), sum(len(c.token_ids) for o in outs for c in o.outputs)
            )
            self.streams.metrics.stream_windows.inc()
            for event in await asyncio.to_thread(session.answer, answers):
                self.out.put(event.to_dict())
            self.out.put(session.progress())
        except E.APIError as err:  # this window is skipped; the session goes on (unless the engine stopped)
            session.abandon()
            self.out.put(error_event(err, media_time=round(session.now, 3)))
            if err.status == 503:
                self.fatal = err
        except UserError as err:  # what the engine path refused about this window (a video it cannot take)
            session.abandon()
            self.out.put(error_event(E.bad_request(str(err)), media_time=round(session.now, 3)))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug: reported, the session closed, the server up
            log.exception("stream %s: ask failed", self.id)
            self.streams.metrics.internal_errors.inc()
            session.abandon()
            self.fatal = E.APIError(500, f"internal error: {type(e).__name__}: {e}", type="internal_error")
            self.out.put(error_event(self.fatal))
        finally:
            self.task = None
            if not self.out.overflow.is_set():
                self.kick()  # frames that came while the model answered may make the next window due
            if self.task is None:
                self._idle.set()

    def closed(self) -> dict[str, Any]:
        """The `session.closed` event: every query's moments so far, an ongoing one ending at the newest frame."""
        return {"session_id": self.id, **self.session.summary(self.texts)}

    async def finish(self, timeout_s: float) -> None:
        """Let the running ask (if any) answer, within `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.idle()

    async def close(self) -> None:
        """Stop: the running ask is cancelled (its engine request aborted, its slot released)."""
        task, self.task = self.task, None
        self.fatal = self.fatal or E.APIError(499, "closed", type="closed")  # no further asks
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._idle.set()


class _Limit(Exception):
    """A session limit was reached: the session ends (close code 1008)."""


# ---- the streams service ------------------------------------------------------------------------------------------


class Streams:
    def __init__(self, serving):
        self.serving, self.cfg, self.lim, self.metrics = serving, serving.cfg, serving.lim, serving.metrics
        self.slots = StreamSlots(self.lim.max_streams, self.metrics)

    # -- shared

    def options(self, options: dict[str, Any], param: str) -> SessionOptions:
        """A session's options: the served model's stream settings (its window length and fps) with the client's on
        top, its queries capped by `limits.max_stream_queries`; each window's answer budget, `max_tokens` (at most
        `limits.max_tokens`; default `/v1/grounding`'s); `think` (a reasoning block before each window's answer)."""
        options = dict(options)
        asked_tokens = options.pop("max_tokens", None)
        if asked_tokens is not None and not (
            isinstance(asked_tokens, int) and not isinstance(asked_tokens, bool) and asked_tokens >= 1
        ):
            raise E.bad_request(f"{param}.max_tokens must be an integer >= 1, got {asked_tokens!r}", param)
        max_tokens = self.serving._token_budget(asked_tokens, f"{param}.max_tokens")
        think = options.pop("think", False)
        if not isinstance(think, bool):
            raise E.bad_request(f"{param}.think must be true or false, got {think!r}", param)
        limit = self.lim.max_stream_queries
        asked = options.get("max_queries")
        if isinstance(asked, int) and asked > limit:
            raise E.bad_request(
                f"{param}.max_queries={asked} is over the server limit of {limit} (limits.max_stream_queries)", param
            )
        try:
            settings = StreamSettings.for_model(self.serving.served, options)
            if asked is None:
                settings = settings.updated({"max_queries": min(settings.max_queries, limit)})
        except UserError as e:
            raise E.bad_request(f"{param}: {e}", param) from None
        return SessionOptions(settings, max_tokens, think)

    def session(self, opts: SessionOptions, queries: list[StreamQueryIn], param: str) -> tuple[StreamSession, dict]:
        requests = self.serving.served.requests.asking(mode="multi", think=opts.think)
        try:
            session = StreamSession(requests, opts.settings, source="stream")
        except UserError as e:
            raise E.bad_request(str(e), param) from None
        texts = {}
        for i, q in enumerate(queries):
            try:
                qid = session.add_query(q.text, q.id)
            except StreamError as e:
                raise E.bad_request(f"{param}[{i}]: {e}", f"{param}[{i}]") from None
            texts[qid] = session.queries[qid]
        return session, texts

    # -- WebSocket

    async def websocket(self, ws, subprotocol: str | None) -> None:
        """One WebSocket connection (authenticated by the router): a stream slot or HTTP 429 before the upgrade,
        then client events in and server events out until the session closes or the client goes."""
        from fastapi.responses import JSONResponse

        try:
            slot = self.slots.take()
        except E.APIError as err:
            await ws.send_denial_response(JSONResponse(err.envelope(), status_code=err.status))
            return
        try:
            await ws.accept(subprotocol=subprotocol)
            await _Connection(self, ws).run()
        finally:
            slot.release()

    # -- server-read sources

    async def read(self, req: StreamReadRequest, on_failure=lambda status: None):
        """`POST /v1/streams/read`: everything that can be refused (auth, slots, options, queries, the source) is
        refused here as plain HTTP; then the session's events stream as SSE until the source ends (or the client
        goes: the response's clean-up closes the session and the file)."""
        from vtg.serve.serving import EventStream

        slot = self.slots.take()
        opened = None
        try:
            opts = self.options(req.options, "options")
            session, texts = self.session(opts, req.queries, "queries")
            _refuse_live_url(req.source)
            if is_hls_url(req.source):
                path, frames = req.source, await self._hls(req.source, session)
            else:
                opened = self.serving.media.opened(req.source, "source")
                path = await opened.__aenter__()
                info = await asyncio.to_thread(self.serving._probe, path, req.source, "source")
                self._check_length(info.duration)
                frames = file_frames(path, session.ring.fps, self.serving.served.requests.budget)
        except BaseException:
            if opened is not None:
                await opened.__aexit__(None, None, None)
            slot.release()
            raise
        out = Outbox(self.lim.max_stream_backlog)
        live = Live(self, session, texts, out, opts)
        reader = asyncio.ensure_future(self._read_source(live, frames, path, req, on_failure))

        async def events() -> AsyncIterator[str]:
            yield _sse(live.created())
            while (event := await out.get()) is not None:
                yield _sse(event)

        async def close() -> None:
            try:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await live.close()
            finally:
                try:
                    if opened is not None:
                        await opened.__aexit__(None, None, None)
                finally:
                    slot.release()

        return EventStream(events(), close, abort=out.overflow)

    def _check_length(self, duration: float) -> None:
        if duration > self.lim.max_stream_s:
            raise E.bad_request(
                f"source: the video lasts {duration:.1f} s, over the {self.lim.max_stream_s:g} s limit of one "
                "stream session (limits.max_stream_s)",
                "source",
            )

    async def _hls(self, url: str, session: StreamSession):
        """An HLS source's frames; its playlist fetched (and refused) before the first byte of the response."""
        from vtg.data.fetch import FetchError
        from vtg.data.hls import hls_frames, open_playlist
        from vtg.data.video import VideoError
        from vtg.serve.media import fetch_refused

        self.serving.media.require_url_fetch("source")
        fetcher = self.serving.media.hls_fetcher()
        try:
            playlist = await asyncio.to_thread(open_playlist, url, fetcher)
        except VideoError as e:
            if isinstance(e.__cause__, FetchError):
                raise fetch_refused(e.__cause__, f"source: {e}", "source") from None
            raise E.bad_request(f"source: {e}", "source") from None
        if playlist[1].ended:
            self._check_length(sum(s.duration for s in playlist[1].segments))
        return hls_frames(url, session.ring.fps, self.serving.served.requests.budget, fetcher=fetcher,
                          playlist=playlist)  # fmt: skip

    async def _read_source(self, live: Live, frames, path: str, req: StreamReadRequest, on_failure) -> None:
        from vtg.data.video import VideoError, VideoTooLarge
        from vtg.serve.serving import video_error

        loop = asyncio.get_running_loop()
        start, reading = None, None
        try:
            while live.fatal is None and not live.out.overflow.is_set():
                reading = asyncio.ensure_future(asyncio.to_thread(next, frames, None))
                item = await asyncio.shield(reading)  # a cancel leaves the worker's read to finish (below)
                reading = None
                if item is None:
                    break
                frame, t = item
                if req.realtime:  # the file at its own speed: the model may fall behind (windows skipped)
                    start = loop.time() - t if start is None else start
                    await asyncio.sleep(max(0.0, start + t - loop.time()))
                else:  # as fast as the model answers: each due window is answered before the next frame
                    await live.idle()
                await live.push(frame, t)
            await live.finish(self.lim.request_timeout_s)
        except (VideoError, VideoTooLarge) as e:
            err = video_error(e, path, req.source, "source")
            on_failure(err.status)
            live.out.put(error_event(err, media_time=round(live.session.now, 3)))
        except (StreamError, _Limit) as e:
            on_failure(400)
            live.out.put(error_event(E.bad_request(str(e), "source"), media_time=round(live.session.now, 3)))
        finally:
            # cancelled mid-read (the client went): the worker thread is still in `next(frames)` (an HLS segment
            # may take seconds to fetch); closing the generator under it would fail, so let that read end first
            if reading is not None:
                with contextlib.suppress(BaseException):
                    await reading
            await asyncio.to_thread(frames.close)
        if live.fatal is not None:
            on_failure(live.fatal.status)
        live.out.put(live.closed())
        live.out.close()


def _refuse_live_url(source: str) -> None:
    """RTSP and the like are opened by FFmpeg itself, which then connects wherever the protocol leads (the server's
    SETUP answers, redirects): beyond the URL guard's reach, so not served (docs/serving.md#streams). HLS is read,
    by vtg's own fetches (vtg.data.hls)."""
    from urllib.parse import urlparse

    scheme = urlparse(source).scheme.lower() if "://" in source else ""
    if scheme in ("rtsp", "rtsps", "rtmp", "rtp", "udp", "srt"):
        raise E.bad_request(
            f"source: {scheme}:// URLs are not read by the server: FFmpeg would connect to hosts the URL guard has "
            "not checked; send the frames over the /v1/streams WebSocket instead (an HLS playlist is read)",
            "source",
        )


def _sse(event: dict[str, Any]) -> str:
    if "event_id" not in event:
        event = {"type": event["type"], "event_id": new_event_id(), **event}
    return f"data: {json.dumps(event, ensure_ascii=True)}\n\n"


# ---- frames ----------------------------------------------------------------------------------------------------


def decode_frame(image: str, max_bytes: int, max_pixels: int):
    """A client's frame (base64 JPEG/PNG, or a data: URL of one) as RGB [H, W, 3] uint8; StreamError says why not.
    Sizes are checked before anything is decoded: the base64 length, then the image header's width x height."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    data = image
    if data.startswith("data:"):
        header, sep, data = data.partition(",")
        if not sep or not header.endswith(";base64"):
            raise StreamError("frame.image: a data: URL must be base64 (data:image/jpeg;base64,...)")
    if len(data) > 4 * math.ceil(max_bytes / 3) + 4:
        raise StreamError(f"frame.image: over {max_bytes} bytes (limits.max_frame_bytes)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise StreamError("frame.image: not valid base64") from None
    if len(raw) > max_bytes:
        raise StreamError(f"frame.image: {len(raw)} bytes, over {max_bytes} (limits.max_frame_bytes)")
    try:
        im = Image.open(io.BytesIO(raw))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise StreamError("frame.image: not a JPEG or PNG image") from None
    if im.format not in IMAGE_FORMATS:
        raise StreamError(f"frame.image: a {im.format} image; expected JPEG or PNG")
    w, h = im.size
    if w * h > max_pixels:
        raise StreamError(f"frame.image: {w}x{h} is over {max_pixels} pixels (limits.max_frame_pixels)")
    try:
        return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise StreamError(f"frame.image: cannot decode the {im.format} image ({e})") from None


def _parse(text: str):
    """A client event from one text message: (event, None), or (None, (APIError, event_id, media_time))."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        return None, (E.bad_request(f"not a JSON object: {e}"), None, None)
    if not isinstance(raw, dict):
        return None, (E.bad_request("a client event is a JSON object with a 'type'"), None, None)
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    kind = raw.get("type")
    if kind not in CLIENT_EVENT_TYPES:
        err = E.bad_request(f"unknown event type {kind!r}; expected one of {', '.join(CLIENT_EVENT_TYPES)}", "type")
        return None, (err, event_id, None)
    frame = raw.get("frame")
    t = frame.get("media_time") if isinstance(frame, dict) else None
    t = t if isinstance(t, (int, float)) and not isinstance(t, bool) else None
    try:
        return CLIENT_EVENTS.validate_python(raw), None
    except ValidationError as e:
        parts = []
        for x in e.errors()[:5]:
            loc = ".".join(str(p) for p in x.get("loc", ())[1:])  # the first is the union's tag
            parts.append(f"{loc}: {x['msg']}" if loc else x["msg"])
        return None, (E.bad_request(f"invalid {kind} event: " + "; ".join(parts)), event_id, t)


class _Connection:
    """One WebSocket session: receive client events, send server events, until either side ends it."""

    def __init__(self, streams: Streams, ws):
        self.streams, self.ws, self.lim = streams, ws, streams.lim
        self.out = Outbox(self.lim.max_stream_backlog)
        self.live: Live | None = None
        loop = asyncio.get_running_loop()
        self.loop, self.idle_deadline = loop, loop.time() + self.lim.stream_idle_s

    async def run(self) -> None:
        receiver = asyncio.ensure_future(self._receive())
        sender = asyncio.ensure_future(self._send())
        overflow = asyncio.ensure_future(self.out.overflow.wait())
        code, reason = None, ""
        try:
            await asyncio.wait({receiver, sender, overflow}, return_when=asyncio.FIRST_COMPLETED)
            if overflow.done():
                code, reason = CLOSE_POLICY, "client not reading its events (limits.max_stream_backlog)"
                log.info("stream: closed: %s", reason)
            elif receiver.done() and not receiver.cancelled() and receiver.exception() is None:
                code, reason = receiver.result() or (None, "")
                if code is not None:  # the last events (session.closed, the error) go out before the close
                    self.out.close()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5.0):
                            await asyncio.shield(sender)
            elif receiver.done() and not receiver.cancelled():
                log.error("stream: receive loop failed", exc_info=receiver.exception())
                self.streams.metrics.internal_errors.inc()
                code, reason = CLOSE_INTERNAL, "internal error"
        finally:
            for task in (receiver, sender, overflow):
                task.cancel()
            for task in (receiver, sender, overflow):
                with contextlib.suppress(BaseException):
                    await task
            if self.live is not None:
                await self.live.close()
        if code is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.ws.close(code, reason[:120])

    async def _send(self) -> None:
        while (event := await self.out.get()) is not None:
            await self.ws.send_text(json.dumps(event, ensure_ascii=True))

    def _error(self, err: E.APIError, event_id: str | None = None, media_time: float | None = None) -> None:
        self.out.put(error_event(err, event_id, media_time))

    async def _receive(self) -> tuple[int, str] | None:
        """Client events until the session ends: (close code, reason), or None when the client went away."""
        while True:
            if self.live is not None and self.live.fatal is not None:
                return CLOSE_INTERNAL, "the engine stopped" if self.live.fatal.status == 503 else "internal error"
            timeout = self.idle_deadline - self.loop.time()
            try:
                if timeout <= 0:
                    raise TimeoutError
                async with asyncio.timeout(min(timeout, 1.0)):  # wakes to notice a fatal error of an ask
                    message = await self.ws.receive()
            except TimeoutError:
                if self.loop.time() < self.idle_deadline:
                    continue
                idle = self.lim.stream_idle_s
                self._error(E.timed_out(f"no frame for {idle:g} s: the session is closed (limits.stream_idle_s)"))
                return self._closing(CLOSE_POLICY, "idle")
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is None:
                self._error(E.bad_request("binary messages are not accepted: send client events as JSON text"))
                continue
            if len(text) > BIG_MESSAGE:
                event, refused = await asyncio.to_thread(_parse, text)
            else:
                event, refused = _parse(text)
            del text, message
            if refused is not None:
                self._error(*refused)
                continue
            try:
                ending = await self._handle(event)
            except _Limit as e:
                self._error(E.bad_request(str(e), "frame.media_time"), event.event_id)
                return self._closing(CLOSE_POLICY, "session media length limit")
            except E.APIError as err:
                t = event.frame.media_time if isinstance(event, FrameAppend) else None
                self._error(err, event.event_id, t)
                continue
            if ending:
                return CLOSE_NORMAL, "session closed"

    def _closing(self, code: int, reason: str) -> tuple[int, str]:
        if self.live is not None:
            self.out.put(self.live.closed())
        return code, reason

    async def _handle(self, event) -> bool:
        """One client event; True when it ends the session. APIError: refused (an error event), the session on."""
        live = self.live
        if isinstance(event, SessionCreate):
            if live is not None:
                raise E.bad_request(f"the session {live.id} is already created", "type")
            opts = self.streams.options(event.session.options, "session.options")
            session, texts = self.streams.session(opts, event.session.queries, "session.queries")
            self.live = Live(self.streams, session, texts, self.out, opts)
            self.out.put(self.live.created())
            self.idle_deadline = self.loop.time() + self.lim.stream_idle_s
            return False
        if live is None:
            raise E.bad_request(f"{event.type} before session.create: create the session first", "type")
        if isinstance(event, QueryAdd):
            try:
                qid = live.add_query(event.query.text, event.query.id)
            except StreamError as e:
                raise E.bad_request(str(e), "query") from None
            self.out.put({"type": "query.added", "query": {"id": qid, "text": live.texts[qid]}})
        elif isinstance(event, QueryRemove):
            try:
                live.session.remove_query(event.query_id)
            except StreamError as e:
                raise E.bad_request(str(e), "query_id") from None
            self.out.put({"type": "query.removed", "query_id": event.query_id})
        elif isinstance(event, FrameAppend):
            t = event.frame.media_time
            lim = self.lim
            try:
                frame = await asyncio.to_thread(decode_frame, event.frame.image, lim.max_frame_bytes,
                                                lim.max_frame_pixels)  # fmt: skip
                await live.push(frame, t)
            except StreamError as e:
                message = str(e) if str(e).startswith("frame at") else f"frame at media_time {t:g}s: {e}"
                if "limits.max_frame" in message:
                    raise E.too_large(message, "frame") from None
                raise E.bad_request(message, "frame") from None
            self.idle_deadline = self.loop.time() + lim.stream_idle_s
        elif isinstance(event, SessionClose):
            await live.finish(self.lim.request_timeout_s)
            self.out.put(live.closed())
            return True
        return False
