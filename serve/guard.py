"""What every HTTP request goes through before a route sees it, as pure ASGI middleware (no body is buffered twice):

- `BodyGuard`: one size limit for every request body, declared (`Content-Length`) or not (chunked), enforced while
  the body is read (413 as soon as it is over); a client that stops sending is cut off after `body_timeout_s` (408);
  a JSON body that is not UTF-8 is refused with a message that says so (400). Routes then read the body as usual.
- `RequestCounter`: `vtg_requests{route,status}` and latency for every request, and `vtg_request_failures{route,kind}`
  for client errors, server errors and streams that failed after their 200 (the route marks those, see
  `mark_stream_failed`).
- `redact_access_log`: no secret in the access log: the values of `api_key`, `sig` and similar query parameters are
  replaced before uvicorn writes a request line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

from vtg.serve import errors as E

STREAM_FAILED = "vtg_stream_failed"  # scope["state"] key a streaming route sets when its stream ends in an error
SECRET_PARAMS = re.compile(r"((?:api_key|apikey|key|token|sig|signature|access_token)=)[^&\s\"]*", re.I)


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
    """Counts every request by route and status, and its failures, in the server's metrics."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500  # an exception escaping the app still counts, as the 500 it becomes
        scope.setdefault("state", {})

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
            kind = (
                "server_error"
                if status >= 500
                else "client_error"
                if status >= 400
                else "stream_error"
                if scope["state"].get(STREAM_FAILED)
                else None
            )
            if kind:
                self.metrics.failures.labels(route, kind).inc()


def mark_stream_failed(scope) -> None:
    scope.setdefault("state", {})[STREAM_FAILED] = True


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(SECRET_PARAMS.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        record.msg = SECRET_PARAMS.sub(r"\1***", str(record.msg))
        return True


def redact_access_log() -> None:
    """Mask secret query parameters in uvicorn's access and error logs (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Redact) for f in logger.filters):
            logger.addFilter(_Redact())
