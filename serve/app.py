"""The HTTP router: thin. Auth, error envelopes and metrics here; the work is in `serving.py`, the guards every
request passes first in `guard.py`.

Open without a key: `/`, `/static/*`, `/health`, `/metrics` (Prometheus scrapers, as in vLLM). Everything under
`/v1` needs `Authorization: Bearer <key>` when the server has one; `/v1/media` also takes a URL signed for a short
time (`/v1/videos` and `/v1/uploads` hand them out), because a `<video>` element cannot send headers. The key itself
is never accepted in a URL, so it never reaches an access log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import uuid
from functools import partial
from pathlib import Path

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.responses import JSONResponse as _JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vtg.data.video import VIDEO_EXTS
from vtg.serve import errors as E
from vtg.serve.config import ServeConfig
from vtg.serve.guard import BodyGuard, CancelOnDisconnect, RequestCounter, mark_stream_failed, redact_access_log
from vtg.serve.media import media_signature_ok, sign_media
from vtg.serve.metrics import CONTENT_TYPE, Metrics
from vtg.serve.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorResponse,
    GroundingRequest,
    GroundingResponse,
    ModelCard,
    ModelList,
    StreamReadRequest,
    VideoList,
)

log = logging.getLogger("vtg.serve")

STATIC = Path(__file__).parent / "static"
MAX_JSON_BYTES = 1 << 20  # chat/grounding bodies carry references to media, never media: 1 MiB is plenty


class JSONResponse(_JSONResponse):
    """JSON with non-ASCII escaped: any text, even one a client smuggled a lone surrogate into, can be sent."""

    def render(self, content) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 408, 413, 429, 503)}


def build_app(cfg: ServeConfig) -> FastAPI:
    """The FastAPI app; the engine starts in the lifespan (the port opens once it is ready)."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from vtg.serve.model import ServedModel
        from vtg.serve.serving import Serving
        from vtg.serve.streams import Streams

        redact_access_log(cfg.api_key)  # here: uvicorn has configured its loggers by now
        served = ServedModel(cfg).start()
        app.state.serving = Serving(cfg, served, metrics)
        app.state.streams = Streams(app.state.serving)
        try:
            yield
        finally:
            app.state.serving.media.close()
            served.shutdown()

    app = FastAPI(
        title="vtg serve",
        version="0.1.0",
        lifespan=lifespan,
        description="OpenAI-compatible video temporal grounding on vLLM",
        default_response_class=JSONResponse,
    )
    app.state.cfg, app.state.metrics = cfg, metrics
    _install_error_handlers(app, metrics)
    _add_routes(app, cfg)
    limits = cfg.limits
    app.add_middleware(
        BodyGuard,
        limit_for=lambda path: limits.max_upload_bytes if path == "/v1/uploads" else MAX_JSON_BYTES,
        timeout_s=limits.body_timeout_s,
        streamed_paths=("/v1/uploads",),
    )
    app.add_middleware(CancelOnDisconnect)  # outside the guard: it listens once the guard has read the body
    app.add_middleware(RequestCounter, metrics=metrics)  # outermost: counts what the guard refuses too
    return app


def _serving(request: Request):
    return request.app.state.serving


def _auth(request: Request) -> None:
    key = request.app.state.cfg.api_key
    if not key:
        return
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if hmac.compare_digest(given.encode(), key.encode()):
        return
    q = request.query_params
    if request.url.path == "/v1/media" and media_signature_ok(q.get("url", ""), q.get("exp"), q.get("sig"), key):
        return
    raise E.unauthorized(
        "missing or wrong API key: send 'Authorization: Bearer <key>' (media: a signed URL from /v1/videos)"
    )


def _ws_auth(ws: WebSocket) -> str | None:
    """A WebSocket's key: `Authorization: Bearer <key>`, or, from a browser (which cannot set headers on a
    WebSocket), a `Sec-WebSocket-Protocol` entry `vtg-api-key.<key>`. Returns the subprotocol to answer with:
    `vtg.v1` when offered (a browser that offers subprotocols needs one answered; the key is never echoed)."""
    from vtg.serve.streams import KEY_PROTOCOL, SUBPROTOCOL

    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    answer = SUBPROTOCOL if SUBPROTOCOL in offered else None
    key = ws.app.state.cfg.api_key
    if not key:
        return answer
    header = ws.headers.get("authorization", "")
    given = [header[7:].strip()] if header.lower().startswith("bearer ") else []
    given += [p[len(KEY_PROTOCOL) :] for p in offered if p.startswith(KEY_PROTOCOL)]
    if any(hmac.compare_digest(g.encode(), key.encode()) for g in given):
        return answer
    raise E.unauthorized(
        "missing or wrong API key: send 'Authorization: Bearer <key>', or offer the WebSocket subprotocols "
        f"'{SUBPROTOCOL}' and '{KEY_PROTOCOL}<key>'"
    )


def _add_routes(app: FastAPI, cfg: ServeConfig) -> None:
    auth = [Depends(_auth)]

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health(request: Request):
        """Liveness of the server and of its engine (the engine core process answering, checked without waiting
        for a slot), and how busy it is; 503 once the engine has stopped."""
        serving = _serving(request)
        engine = await serving.served.engine_alive()
        if not engine["alive"]:
            raise E.unavailable(f"the engine has stopped: {engine['detail']}")
        return {"status": "ok", "engine": engine, **serving.limiter.load(), **request.app.state.streams.slots.load()}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request):
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", dependencies=auth, response_model=ModelList, responses=ERRORS)
    async def models(request: Request):
        served = _serving(request).served
        style = served.prompt_style  # adapters are asked like their base model
        profile = served.requests.prompt.profile
        cards = [ModelCard(id=cfg.model_name, root=cfg.model, prompt_style=style, profile=profile)]
        cards += [
            ModelCard(id=name, root=lr.lora_path, parent=cfg.model_name, prompt_style=style, profile=profile)
            for name, lr in served.loras.items()
        ]
        return ModelList(data=cards)

    @app.post("/v1/chat/completions", dependencies=auth, response_model=ChatCompletionResponse, responses=ERRORS)
    async def chat(body: ChatCompletionRequest, request: Request):
        serving = _serving(request)
        if body.stream:
            failed = partial(mark_stream_failed, request.scope)
            return EventStreamResponse(await serving.chat_stream(body, on_failure=failed))
        return await serving.chat(body)

    @app.post("/v1/grounding", dependencies=auth, response_model=GroundingResponse, responses=ERRORS)
    async def grounding(body: GroundingRequest, request: Request):
        return await _serving(request).ground(body)

    @app.websocket("/v1/streams")
    async def streams(ws: WebSocket):
        """A live stream session: client events in, server events out (docs/serving.md#streams)."""
        try:
            subprotocol = _ws_auth(ws)
        except E.APIError as err:
            return await ws.send_denial_response(JSONResponse(err.envelope(), status_code=err.status))
        await ws.app.state.streams.websocket(ws, subprotocol)

    @app.post("/v1/streams/read", dependencies=auth, responses=ERRORS)
    async def stream_read(body: StreamReadRequest, request: Request):
        failed = partial(mark_stream_failed, request.scope)
        return EventStreamResponse(await request.app.state.streams.read(body, on_failure=failed))

    @app.get("/v1/videos", dependencies=auth, response_model=VideoList, responses=ERRORS)
    async def videos(request: Request):
        link = partial(sign_media, key=cfg.api_key, ttl_s=cfg.limits.media_url_ttl_s)
        return VideoList(data=await asyncio.to_thread(_serving(request).media.list_videos, link))

    @app.get("/v1/media", dependencies=auth, responses=ERRORS)
    async def media(url: str, request: Request):
        return FileResponse(await asyncio.to_thread(_serving(request).media.servable, url, "url"))

    @app.post("/v1/uploads", dependencies=auth, responses=ERRORS)
    async def upload(filename: str, request: Request):
        return await _save_upload(cfg, filename, request)


class EventStreamResponse(StreamingResponse):
    """Server-sent events whose clean-up (`stream.close()`: the engine request aborted, its slot released) runs
    however the response ends: read to the end, the connection reset, a send that fails, never read at all, or cut
    off when `stream.abort` is set (a client that stopped reading: its send would wait on a full socket forever)."""

    def __init__(self, stream):
        super().__init__(stream.events, media_type="text/event-stream")
        self.stream = stream

    async def __call__(self, scope, receive, send):
        try:
            if self.stream.abort is None:
                await super().__call__(scope, receive, send)
            else:
                await self._abortable(scope, receive, send)
        finally:
            await self.stream.close()

    async def _abortable(self, scope, receive, send) -> None:
        response = asyncio.ensure_future(super().__call__(scope, receive, send))
        abort = asyncio.ensure_future(self.stream.abort.wait())
        cut = False
        try:
            await asyncio.wait({response, abort}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abort.cancel()
            if not response.done():  # returning with the body unfinished makes uvicorn close the connection
                cut = True
                response.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await response
        if cut:
            log.warning("event stream cut off: its client is not reading (limits.max_stream_backlog events unsent)")
        else:
            response.result()


async def _save_upload(cfg: ServeConfig, filename: str, request: Request) -> dict:
    """Store a raw-body upload in the upload folder (an allowed root) under a fresh name; returns its file:// URL."""
    if not cfg.upload_dir:
        raise E.forbidden("uploads are disabled; start the server with --upload-dir DIR")
    ext = Path(filename).suffix.lower()
    if ext not in VIDEO_EXTS:
        raise E.bad_request(
            f"filename {filename!r}: expected a video file ({', '.join(sorted(VIDEO_EXTS))})", "filename"
        )
    dest = Path(os.path.realpath(cfg.upload_dir)) / f"{uuid.uuid4().hex[:16]}{ext}"
    size = 0
    try:  # the body's size and pace are enforced while it streams (guard.BodyGuard); nothing partial is kept
        with open(dest, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                f.write(chunk)
        if size == 0:
            raise E.bad_request("upload is empty: send the video file as the request body")
        await asyncio.to_thread(_serving(request).media.servable, dest.as_uri(), "body")  # a video, by content
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    url = dest.as_uri()
    return {
        "url": url,
        "name": dest.name,
        "bytes": size,
        "media_url": sign_media(url, cfg.api_key, cfg.limits.media_url_ttl_s),
    }


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return "malformed JSON body: " + "; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in errs), None
    parts, param = [], None
    for e in errs[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        param = param or loc or None
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "invalid request: " + "; ".join(parts), param


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(E.APIError)
    async def api_error(request: Request, exc: E.APIError):
        return JSONResponse(exc.envelope(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return JSONResponse(E.bad_request(message, param).envelope(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        err = E.APIError(exc.status_code, str(exc.detail), type="invalid_request_error")
        return JSONResponse(err.envelope(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        metrics.internal_errors.inc()
        err = E.APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="internal_error")
        return JSONResponse(err.envelope(), status_code=500)
