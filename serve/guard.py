"""What every HTTP request goes through before a route sees it, as pure ASGI middleware (no body is buffered twice):

- `BodyGuard`: one size limit for every request body, declared (`Content-Length`) or not (chunked), enforced while
  the body is read (413 as soon as it is over); a client that stops sending is cut off after `body_timeout_s` (408);
  a JSON body that is not UTF-8 is refused with a message that says so (400). Routes then read the body as usual.
- `RequestCounter`: `vtg_requests{route,status}` and latency for every request, and `vtg_request_failures{route,kind}`
  for client errors, server errors and streams that failed after their 200 (the route marks those, see
  `mark_stream_failed`).
- `CancelOnDisconnect`: a request whose client goes away is cancelled at once, whatever it is doing: its task
  (engine requests aborted, engine slot released) and the threads it started (decoding, fetching: `vtg.cancel`).
- `redact_access_log`: no secret in the access log: every query value of a request line is masked (`?url=***`), and
  the API key itself wherever it appears (a path, a message).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time

from vtg import cancel
from vtg.serve import errors as E

STREAM_FAILED = "vtg_stream_failed"  # scope["state"] key: the status of the error a stream ended in after its 200
CLIENT_GONE = "vtg_client_gone"  # scope["state"] key: the client went away before its response was complete
CLIENT_CLOSED_STATUS = 499  # what a request whose client left is counted as (nginx's "client closed request")
QUERY_VALUE = re.compile(r"(?<=[?&])([^=&\s\"]*=)[^&\s\"]*")


async def _send_error(send, err: E.APIError) -> None:
    body = json.dumps(err.envelope()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Request bodies: at most `limit_for(path)` bytes, each chunk within `timeout_s`, JSON bodies UTF-8."""

    def __init__(self, app, limit_for, timeout_s: float, streamed_paths: tuple[str, ...] = ()):
        self.app, self.limit_for, self.timeout_s, self.streamed = app, limit_for, timeout_s, streamed_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        path, limit = scope["path"], self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _send_error(send, _too_large(limit, path))
        if path in self.streamed:  # uploads: counted and timed as the route streams them to disk
            return await self.app(scope, self._counting(receive, limit, path), send)
        try:
            body = await self._read(receive, limit, path)
        except E.APIError as err:
            return await _send_error(send, err)
        if body is None:  # the client went away
            return None
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            return await _send_error(
                send,
                E.bad_request(
                    f"the request body is not valid UTF-8 ({e.reason} at byte {e.start}); JSON bodies must be UTF-8"
                ),
            )
        return await self.app(scope, _replay(body, receive), send)

    async def _next(self, receive):
        try:
            return await asyncio.wait_for(receive(), self.timeout_s)
        except TimeoutError:
            raise E.timed_out(
                f"the client sent nothing for {self.timeout_s:g} s while sending the request body "
                "(limits.body_timeout_s)"
            ) from None

    async def _read(self, receive, limit: int, path: str) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await self._next(receive)
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                raise _too_large(limit, path)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _counting(self, receive, limit: int, path: str):
        size = 0

        async def counted():
            nonlocal size
            message = await self._next(receive)
            size += len(message.get("body", b""))
            if size > limit:
                raise _too_large(limit, path)
            return message

        return counted


def _too_large(limit: int, path: str) -> E.APIError:
    what = "limits.max_upload_bytes" if path == "/v1/uploads" else "the 1 MiB limit of a JSON body"
    return E.too_large(f"the request body is over {limit} bytes ({what})")


def _replay(body: bytes, receive):
    """A receive() that hands the route the body already read, then waits for the client's disconnect."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class RequestCounter:
    """Counts every request by route and status, and its failures, in the server's metrics. A stream that failed
    after its 200 counts as the status of the error it ended in; a request whose client left before its response was
    complete counts as 499."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500  # an exception escaping the app still counts, as the 500 it becomes
        state = scope.setdefault("state", {})

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            if state.get(CLIENT_GONE):
                status, kind = CLIENT_CLOSED_STATUS, "client_gone"
            elif state.get(STREAM_FAILED):
                status, kind = state[STREAM_FAILED], "stream_error"
            else:
                kind = "server_error" if status >= 500 else "client_error" if status >= 400 else None
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
            if kind:
                self.metrics.failures.labels(route, kind).inc()


def mark_stream_failed(scope, status: int) -> None:
    scope.setdefault("state", {})[STREAM_FAILED] = status


NO_BODY = ("GET", "HEAD", "OPTIONS", "DELETE")


class CancelOnDisconnect:
    """Cancels a request at once when its client goes away (see the module docstring).

    The app runs in a task of its own; once the request body is read, a watcher waits on the server's `receive()`,
    which returns only when the client disconnects or the response is complete. The app itself is handed a
    `receive()` that gives it the body and then waits for that disconnect, so only the watcher reads the socket."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body_read, gone = asyncio.Event(), asyncio.Event()
        complete = False

        async def receiving():
            if body_read.is_set():
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":  # while the body was read: the request never was whole
                scope.setdefault("state", {})[CLIENT_GONE] = True
                gone.set()
            elif not message.get("more_body"):
                body_read.set()
            return message

        async def sending(message):
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True

        async def watch():
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass

        if scope["method"] in NO_BODY:
            body_read.set()
        with cancel.scope() as cancelled:  # the task copies this context: threads it starts see the event
            work = asyncio.ensure_future(self.app(scope, receiving, sending))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and not complete:  # the client left first: stop everything done for it
                scope.setdefault("state", {})[CLIENT_GONE] = True
                cancelled.set()
                gone.set()
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                return None
            return await work
        finally:
            watcher.cancel()
            if not work.done():  # this middleware itself was cancelled (server shutdown)
                cancelled.set()
                work.cancel()


class _Redact(logging.Filter):
    def __init__(self, key: str | None):
        from urllib.parse import quote

        super().__init__()
        self.forms = {key, quote(key, safe=""), quote(key)} if key else set()  # as sent, and percent-encoded

    def _clean(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, "***")
        return QUERY_VALUE.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(self._clean(a) if isinstance(a, str) else a for a in record.args)
        record.msg = self._clean(str(record.msg))
        return True


def redact_access_log(key: str | None) -> None:
    """Mask every query value, and the API key wherever it appears, in uvicorn's access and error logs (idempotent:
    a second call replaces the first's filter)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _Redact)]:
            logger.removeFilter(f)
        logger.addFilter(_Redact(key))


def guarded_http_protocol(max_header_bytes: int, header_timeout_s: float):
    """uvicorn's httptools protocol with the two limits it lacks: a request's line and headers at most
    `max_header_bytes` in all (431), and all of them within `header_timeout_s` of the request's first byte, or of
    the connection for a client that sends nothing (408). Slow or endless headers otherwise hold a connection, and
    its buffer, for ever. (Bodies are the BodyGuard's; idle keep-alive connections uvicorn's `timeout_keep_alive`.)"""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _HeaderLimit(Exception):
        """Stops the parser: the request was refused."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_bytes, self._deadline, self._refused = 0, None, False
            self._arm()

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _refuse(self, status: int, reason: str, message: str) -> None:
            self._refused = True
            self._disarm()
            if not self.transport.is_closing():
                body = json.dumps(E.APIError(status, message, type="invalid_request_error").envelope()).encode()
                self.transport.write(
                    f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                    + body
                )
                self.transport.close()

        def _headers_too_slow(self) -> None:
            self._deadline = None
            self._refuse(
                408,
                "Request Timeout",
                f"the request's headers did not arrive within {header_timeout_s:g} s (limits.header_timeout_s)",
            )

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > max_header_bytes:
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    f"the request line and headers are over {max_header_bytes} bytes (limits.max_header_bytes)",
                )
                raise _HeaderLimit

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def send_400_response(self, msg: str) -> None:
            if not self._refused:  # the parser's error after a refusal: the answer is already sent
                super().send_400_response(msg)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol
