"""Serving logic, apart from HTTP: chat completions (plain and streamed), grounding with ranked moments, limits.

Order of work for a request: validate (protocol) → check limits that need no I/O (model, video count, tokens,
samples) → take an engine slot (429 when the queue is full) → resolve and decode media (thread, so the event loop
stays free) → build the request with `vtg.request` → generate under the request deadline → split reasoning and
parse moments with `vtg.data.grammar`. User-caused failures become `APIError`s (4xx); the engine keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vtg.data.grammar import ReasoningSplitter, clamp_moment, parse_answer, split_reasoning
from vtg.errors import UserError
from vtg.grounding import Grounding, WindowSettings
from vtg.nms import consensus_scores
from vtg.serve import errors as E
from vtg.serve.config import ServeConfig
from vtg.serve.constrain import structured
from vtg.serve.media import MediaPolicy
from vtg.serve.metrics import GroundingProgress, Metrics
from vtg.serve.protocol import (
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    ChunkChoice,
    DeltaMessage,
    GroundingRequest,
    GroundingResponse,
    GroundingSample,
    MomentOut,
    UsageInfo,
)

DEFAULT_MAX_TOKENS = 256


class Limiter:
    """At most `concurrency` requests in the engine; at most `max_queue` waiting; beyond that: 429."""

    def __init__(self, concurrency: int, max_queue: int, metrics: Metrics):
        self._sem = asyncio.Semaphore(concurrency)
        self._concurrency, self._max_queue, self._waiting, self._metrics = concurrency, max_queue, 0, metrics
        self._held = 0

    async def acquire(self) -> Slot:
        if self._sem.locked() and self._waiting >= self._max_queue:
            self._metrics.rejected.inc()
            raise E.overloaded(f"server busy: {self._waiting} requests already waiting (limits.max_queue); retry later")
        self._waiting += 1
        self._metrics.waiting.inc()
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1
            self._metrics.waiting.dec()
        self._held += 1
        self._metrics.in_flight.inc()
        return Slot(self)

    def _release(self) -> None:
        self._held -= 1
        self._sem.release()
        self._metrics.in_flight.dec()

    def load(self) -> dict[str, int]:
        return {"slots_in_use": self._held, "slots": self._concurrency, "waiting": self._waiting}


class Slot:
    """One engine slot held by one request, released exactly once: by whichever clean-up gets there first."""

    def __init__(self, limiter: Limiter):
        self._limiter: Limiter | None = limiter

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter._release()


@dataclass
class EventStream:
    """A streamed answer: its server-sent events, and the clean-up that must run however the response ends."""

    events: AsyncIterator[str]
    close: Callable[[], Awaitable[None]]
    # set when the client is known not to read (its events piled up): the response is cut off, not left waiting on
    # a full socket, so its session and slots are freed
    abort: asyncio.Event | None = None


class Serving:
    def __init__(self, cfg: ServeConfig, served, metrics: Metrics):
        self.cfg, self.served, self.metrics = cfg, served, metrics
        self.lim = cfg.limits
        self.media = MediaPolicy(
            cfg.media_roots(),
            max_bytes=self.lim.max_video_bytes,
            allow_url_fetch=cfg.allow_url_fetch,
            allow_private_urls=cfg.allow_private_urls,
            fetch_cache_bytes=self.lim.max_fetch_cache_bytes,
        )
        self.limiter = Limiter(self.lim.max_concurrency, self.lim.max_queue, metrics)
        self.progress = GroundingProgress(metrics)

    def _parse(self, text: str | None):
        """A completion read as the served profile's own parser reads it (`vtg`: vtg's grammar)."""
        return self.served.requests.prompt.parse(text)

    # ---- shared steps ------------------------------------------------------------------------------------------

    async def load_video(self, ref: str, param: str):
        async with self.media.opened(ref, param) as path:
            return await self._decode_timed(path, ref, param)

    async def _decode_timed(self, path: str, ref: str, param: str):
        t0 = time.perf_counter()
        try:
            return await asyncio.to_thread(self._decode, path, ref, param)
        finally:
            self.metrics.video_decode.observe(time.perf_counter() - t0)

    def _probe(self, path: str, ref: str, param: str):
        from vtg.data.video import VideoError, probe_video

        try:
            return probe_video(path)
        except VideoError as e:
            raise video_error(e, path, ref, param) from None

    def _decode(self, path: str, ref: str, param: str):
        """The whole video sampled for one call, within the one-call duration limit."""
        from vtg.data.video import VideoError, VideoTooLarge

        info = self._probe(path, ref, param)
        if info.duration > self.lim.max_video_duration_s:
            raise E.bad_request(
                f"{param}: video {ref!r} lasts {info.duration:.1f} s, over the "
                f"{self.lim.max_video_duration_s:g} s limit for one call (limits.max_video_duration_s); "
                "ground it by windows: /v1/grounding with strategy coarse_to_fine",
                param,
            )
        try:
            return self.served.requests.video(path)
        except (VideoError, VideoTooLarge) as e:
            raise video_error(e, path, ref, param) from None

    def _token_budget(self, asked: int | None, param: str = "max_tokens") -> int:
        if asked is not None and asked > self.lim.max_tokens:
            raise E.bad_request(
                f"{param}={asked} is over the server limit of {self.lim.max_tokens} (limits.max_tokens)", param
            )
        return asked or min(DEFAULT_MAX_TOKENS, self.lim.max_tokens)

    def _check_samples(self, n: int, param: str) -> None:
        if n > self.lim.max_samples:
            raise E.bad_request(
                f"{param}={n} is over the server limit of {self.lim.max_samples} (limits.max_samples)", param
            )

    @contextlib.asynccontextmanager
    async def _deadline(self):
        try:
            async with asyncio.timeout(self.lim.request_timeout_s):
                yield
        except TimeoutError:
            raise E.timed_out(
                f"request took longer than {self.lim.request_timeout_s:g} s (limits.request_timeout_s)"
            ) from None

    async def _final(self, inputs: dict, params, lora) -> Any:
        """Run one request to completion; engine-side rejections become 400s."""
        from vllm.sampling_params import RequestOutputKind

        params.output_kind = RequestOutputKind.FINAL_ONLY
        last = None
        async for out in self._generate(inputs, params, lora):
            last = out
        return last

    async def _generate(self, inputs: dict, params, lora) -> AsyncIterator[Any]:
        """The engine's outputs for one request. What the engine refuses about the request's content (a prompt too
        long for the context, a constraint it cannot compile, text the tokenizer rejects) is the client's: 400."""
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            async for out in self.served.generate(inputs, params, uuid.uuid4().hex, lora):
                yield out
        except VLLMClientError as e:
            raise E.bad_request(f"the engine rejected the request: {e}") from None
        except (ValueError, TypeError, UnicodeError, OverflowError) as e:  # input processing refused it
            raise E.bad_request(f"the engine rejected the request: {type(e).__name__}: {e}") from None
        except EngineDeadError:
            raise E.unavailable("the engine has stopped; restart the server") from None

    def _count_usage(self, prompt_tokens: int, completion_tokens: int) -> UsageInfo:
        self.metrics.prompt_tokens.inc(prompt_tokens)
        self.metrics.completion_tokens.inc(completion_tokens)
        return UsageInfo(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    # ---- chat completions --------------------------------------------------------------------------------------

    def _chat_checks(self, req: ChatCompletionRequest):
        lora = self.served.lora_for(req.model)
        urls = req.video_urls()
        if len(urls) > self.lim.max_videos_per_request:
            raise E.bad_request(
                f"messages carry {len(urls)} videos; at most {self.lim.max_videos_per_request} per "
                "request (limits.max_videos_per_request)",
                "messages",
            )
        self._check_samples(req.n, "n")
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        return lora, self._token_budget(req.token_budget(), param)

    async def _chat_request(self, req: ChatCompletionRequest):
        """The model request for a chat: its messages in vtg's form, each video resolved and decoded."""
        from vtg.request import from_openai

        messages, urls = from_openai([m.model_dump(exclude_none=True) for m in req.messages])
        params = [
            f"messages[{i}].content[{j}].video_url.url"
            for i, m in enumerate(req.messages)
            if isinstance(m.content, list)
            for j, p in enumerate(m.content)
            if p.type == "video_url"
        ]
        videos = [await self.load_video(url, param) for url, param in zip(urls, params)]
        return self.served.requests.build(messages, videos)

    def _sampling_params(self, req: ChatCompletionRequest, max_tokens: int):
        kw: dict[str, Any] = dict(
            n=req.n,
            max_tokens=max_tokens,
            seed=req.seed,
            temperature=1.0 if req.temperature is None else req.temperature,
        )
        for name in ("top_p", "presence_penalty", "frequency_penalty", "top_k"):
            if getattr(req, name) is not None:
                kw[name] = getattr(req, name)
        if req.structured_outputs:
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(**req.structured_outputs.model_dump(exclude_none=True))
        if req.stop:
            kw["stop"] = [req.stop] if isinstance(req.stop, str) else req.stop
        return sampling_params(**kw)

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        if req.grounding is not None:
            return await self._chat_grounded(req)
        lora, max_tokens = self._chat_checks(req)
        params = self._sampling_params(req, max_tokens)
        slot = await self.limiter.acquire()
        try:
            async with self._deadline():
                request = await self._chat_request(req)
                out = await self._final(await asyncio.to_thread(request.vllm_input), params, lora)
        finally:
            slot.release()
        texts = [c.text for c in sorted(out.outputs, key=lambda c: c.index)]
        scored = _choice_moments(texts, request.duration if req.clamp_moments else None, self._parse)
        choices = []
        for c, moments in zip(sorted(out.outputs, key=lambda c: c.index), scored):
            reasoning, answer = split_reasoning(c.text, strip=False)
            choices.append(
                ChatChoice(
                    index=c.index,
                    message=ChatMessageOut(content=answer, reasoning_content=reasoning),
                    finish_reason=c.finish_reason or "stop",
                    moments=moments,
                    reasoning=reasoning,
                    not_present=self._parse(c.text).not_present,
                )
            )
        usage = self._count_usage(len(out.prompt_token_ids or []), sum(len(c.token_ids) for c in out.outputs))
        return ChatCompletionResponse(model=req.model, choices=choices, usage=usage)

    async def chat_stream(self, req: ChatCompletionRequest, on_failure=lambda status: None) -> EventStream:
        """Everything that can fail before the first token — checks, the engine slot, the video, the engine's own
        validation of the request — fails here, as a plain HTTP error; the returned events then stream. A failure
        after that is sent as an `error` event, then `[DONE]`, and reported through `on_failure(status)`. The
        stream's `close()` must be awaited however the response ends (app.EventStreamResponse does): it aborts the
        engine request and releases the slot, once, even when no event was ever read."""
        from vllm.sampling_params import RequestOutputKind

        if req.grounding is not None:  # the answer is known only once every window is asked: one content chunk
            events = _grounded_events(req, await self._chat_grounded(req))
            return EventStream(events, events.aclose)
        lora, max_tokens = self._chat_checks(req)
        params = self._sampling_params(req, max_tokens)
        params.output_kind = RequestOutputKind.DELTA
        slot = await self.limiter.acquire()
        outputs = None
        try:
            async with self._deadline():
                request = await self._chat_request(req)
                outputs = self._generate(await asyncio.to_thread(request.vllm_input), params, lora)
                first = await anext(outputs, None)
        except BaseException:
            if outputs is not None:
                await outputs.aclose()
            slot.release()
            raise
        events = self._stream_events(req, request, first, outputs, on_failure, slot)

        async def close() -> None:
            try:
                await events.aclose()  # a stream never started has nothing to run: the next two still do
                await outputs.aclose()
            finally:
                slot.release()

        return EventStream(events, close)

    async def _stream_events(self, req, request, first, outputs, on_failure, slot: Slot) -> AsyncIterator[str]:
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(choices, usage=None) -> str:
            return _sse(ChatCompletionChunk(id=rid, created=created, model=req.model, choices=choices, usage=usage))

        async def rest():
            if first is not None:
                yield first
            async for out in outputs:
                yield out

        splitters = {i: ReasoningSplitter() for i in range(req.n)}
        texts = {i: "" for i in range(req.n)}
        finish: dict[int, str] = {}
        prompt_tokens = completion_tokens = 0
        try:
            yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content="")) for i in range(req.n)])
            async with self._deadline():
                async for out in rest():
                    prompt_tokens = len(out.prompt_token_ids or []) or prompt_tokens
                    for c in out.outputs:
                        completion_tokens += len(c.token_ids)
                        texts[c.index] += c.text
                        r, a = splitters[c.index].feed(c.text)
                        if r or a:
                            delta = DeltaMessage(content=a or None, reasoning_content=r or None)
                            yield chunk([ChunkChoice(index=c.index, delta=delta)])
                        if c.finish_reason:
                            finish[c.index] = c.finish_reason
            scored = _choice_moments(
                [texts[i] for i in range(req.n)], request.duration if req.clamp_moments else None, self._parse
            )
            for i in range(req.n):
                r, a = splitters[i].finish()
                reasoning = splitters[i].reasoning if splitters[i].opened else None
                last = ChunkChoice(
                    index=i,
                    delta=DeltaMessage(content=a or None, reasoning_content=r or None),
                    finish_reason=finish.get(i, "stop"),
                    moments=scored[i],
                    reasoning=reasoning,
                    not_present=self._parse(texts[i]).not_present,
                )
                yield chunk([last])
            usage = self._count_usage(prompt_tokens, completion_tokens)
            if req.stream_options and req.stream_options.include_usage:
                yield chunk([], usage)
        except Exception as e:  # after the 200: the error as an event, the stream still closed properly
            err = (
                e
                if isinstance(e, E.APIError)
                else E.APIError(500, f"internal error: {type(e).__name__}: {e}", type="internal_error")
            )
            on_failure(err.status)
            yield _sse_raw(err.envelope())
        finally:
            try:
                await outputs.aclose()
            finally:
                slot.release()
        yield "data: [DONE]\n\n"

    async def _chat_grounded(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        """A chat request with the `grounding` extension: its one video and query grounded like /v1/grounding."""
        lora = self.served.lora_for(req.model)
        g, _ = await self._ground(self._chat_question(req), lora)
        reasoning, answer = split_reasoning(g.text, strip=False) if g.strategy == "direct" else (None, g.text)
        choice = ChatChoice(
            index=0,
            message=ChatMessageOut(content=answer, reasoning_content=reasoning),
            finish_reason="stop",
            moments=[MomentOut(start=s, end=e, score=sc) for (s, e), sc in zip(g.moments, g.scores)],
            reasoning=reasoning,
            not_present=g.not_present,
        )
        usage = self._count_usage(g.prompt_tokens, g.completion_tokens)
        return ChatCompletionResponse(model=req.model, choices=[choice], usage=usage)

    def _chat_question(self, req: ChatCompletionRequest) -> _Question:
        located = [
            (p.video_url.url, f"messages[{i}].content[{j}].video_url.url")
            for i, m in enumerate(req.messages)
            if isinstance(m.content, list)
            for j, p in enumerate(m.content)
            if p.type == "video_url"
        ]
        if len(located) != 1:
            raise E.bad_request(
                f"grounding: the messages must carry exactly one video to ground the query in, got {len(located)}",
                "messages",
            )
        gr = req.grounding
        query = gr.query if gr.query is not None else next(m.text() for m in reversed(req.messages) if m.role == "user")
        if not query.strip():
            raise E.bad_request("grounding.query is blank, and so is the last user message's text", "grounding.query")
        (video, param), budget = located[0], req.token_budget()
        return _Question(
            video, param, query, gr.mode, gr.think, gr.strategy, gr.windows, gr.time_budget_s, budget,
            req.temperature, req.top_p, req.seed, n=req.n,
        )  # fmt: skip

    # ---- grounding ---------------------------------------------------------------------------------------------

    async def ground(self, req: GroundingRequest) -> GroundingResponse:
        lora = self.served.lora_for(req.model)
        g, duration = await self._ground(self._grounding_question(req), lora)
        return self._grounding_response(req, g, duration)

    def _grounding_question(self, req: GroundingRequest) -> _Question:
        n = req.samples or (1 if req.mode == "single" and req.top_k == 1 else self.cfg.grounding_samples)
        constrained = self.cfg.constrain_answers if req.constrained is None else req.constrained
        return _Question(
            req.video,
            "video",
            req.query,
            req.mode,
            req.think,
            req.strategy,
            req.windows,
            req.time_budget_s,
            req.max_tokens,
            req.temperature,
            req.top_p,
            req.seed,
            n,
            req.top_k,
            constrained,
        )

    async def _ground(self, q: _Question, lora) -> tuple[Grounding, float]:
        """Ground one question by its strategy (vtg.grounding), under the limits of that strategy."""
        from vtg import grounding

        self._check_samples(q.n, "samples")
        max_tokens = self._token_budget(q.max_tokens)
        settings = self._windows(q.windows)
        budget_s, budget_name = self._time_budget(q.time_budget_s)
        slot = await self.limiter.acquire()
        try:
            async with self.media.opened(q.video, q.param) as path:
                info = await asyncio.to_thread(self._probe, path, q.video, q.param)
                name = grounding.choose(q.strategy or self.cfg.grounding_strategy, info.duration, settings)
                self._check_length(name, info.duration, settings, q.param)
                if name == "direct":
                    async with self._deadline():
                        video = await self._decode_timed(path, q.video, q.param)
                        duration = float(video.metadata.duration)
                        params = self._direct_params(q, max_tokens, duration)
                        strategy = self._direct(q, video)
                        return await self._run(strategy, params, lora, q, path), duration
                params = sampling_params(max_tokens=max_tokens, temperature=0.0, seed=q.seed)
                strategy = grounding.coarse_to_fine(
                    self._asking(q), path, q.query, info.duration, settings, top_k=q.top_k
                )
                try:
                    async with asyncio.timeout(budget_s):
                        return await self._run(strategy, params, lora, q, path), info.duration
                except TimeoutError:
                    raise E.timed_out(
                        f"grounding {q.video!r} by windows took longer than its time budget of {budget_s:g} s "
                        f"({budget_name})"
                    ) from None
        finally:
            slot.release()

    def _think(self, q: _Question) -> bool:
        return self.cfg.default_think if q.think is None else q.think

    def _asking(self, q: _Question):
        """The served model's requests in the question's mode, reasoning or not."""
        return self.served.requests.asking(mode=q.mode, think=self._think(q))

    def _direct(self, q: _Question, video):
        """The `direct` strategy for a question whose video is decoded."""
        from vtg.grounding import direct

        return direct(
            self._asking(q), q.video, q.query, video=video, samples=q.n, top_k=q.top_k, nms_iou=self.cfg.nms_iou
        )

    def _direct_params(self, q: _Question, max_tokens: int, duration: float):
        temperature = q.temperature
        if temperature is None:
            temperature = 0.0 if q.n == 1 else self.cfg.grounding_temperature
        return sampling_params(
            n=q.n,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=q.seed,
            structured_outputs=structured(q.mode, self._think(q), q.top_k, duration, max_tokens)
            if q.constrained
            else None,
            **({"top_p": q.top_p} if q.top_p is not None else {}),
        )

    async def _run(self, strategy, params, lora, q: _Question, path: str):
        """Run a strategy on the engine; a video that turns out unreadable or too costly mid-way is the client's."""
        from vtg.data.video import VideoError, VideoTooLarge
        from vtg.grounding import arun

        progress = self.progress.tracker(q.video)
        try:
            return await arun(strategy, lambda inputs, p: self._final(inputs, p, lora), params, on_ask=progress.ask)
        except (VideoError, VideoTooLarge) as e:
            raise video_error(e, path, q.video, q.param) from None
        except UserError as e:  # what the strategy refuses about the question (e.g. windows for a non-vtg profile)
            raise E.bad_request(str(e), "strategy") from None
        finally:
            progress.done()

    def _windows(self, asked) -> WindowSettings:
        """The served model's window settings with the request's on top."""
        if asked is None:
            return self.served.windows
        over = asked.model_dump(exclude_none=True)
        if "samples" in over:
            self._check_samples(over["samples"], "windows.samples")
        try:
            return self.served.windows.updated(over, "windows")
        except UserError as e:
            raise E.bad_request(str(e), "windows") from None

    def _time_budget(self, asked: float | None) -> tuple[float, str]:
        limit = self.lim.max_grounding_s
        if asked is not None and asked > limit:
            raise E.bad_request(
                f"time_budget_s={asked:g} is over the server limit of {limit:g} s (limits.max_grounding_s)",
                "time_budget_s",
            )
        return (asked, "time_budget_s") if asked is not None else (limit, "limits.max_grounding_s")

    def _check_length(self, strategy: str, duration: float, settings, param: str) -> None:
        """Each strategy's own duration limit; windowed requests are also capped in windows."""
        from vtg.data.windows import plan_windows

        if strategy == "direct":
            if duration > self.lim.max_video_duration_s:
                raise E.bad_request(
                    f"{param}: the video lasts {duration:.1f} s, over the {self.lim.max_video_duration_s:g} s limit "
                    "for grounding in one call (limits.max_video_duration_s); ask with strategy "
                    "coarse_to_fine (or auto) to ground it by windows",
                    param,
                )
            return
        if duration > self.lim.max_windowed_duration_s:
            raise E.bad_request(
                f"{param}: the video lasts {duration:.1f} s, over the {self.lim.max_windowed_duration_s:g} s limit "
                "for grounding by windows (limits.max_windowed_duration_s)",
                param,
            )
        n = len(plan_windows(duration, settings.window_s, settings.stride))
        if n > self.lim.max_windows:
            raise E.bad_request(
                f"{param}: {n} windows of {settings.window_s:g} s every {settings.stride:g} s are over the limit of "
                f"{self.lim.max_windows} (limits.max_windows); ask for longer windows or a longer stride",
                "windows",
            )

    def grounding_request(self, req: GroundingRequest, video):
        """The model request the `direct` strategy makes for a grounding request whose video is decoded (built as
        `_ground` builds it; tests compare it with every other caller's)."""
        q = self._grounding_question(req)
        strategy = self._direct(q, video)
        try:
            return next(strategy).calls[0].request
        finally:
            strategy.close()

    def _grounding_response(self, req: GroundingRequest, g: Grounding, duration: float) -> GroundingResponse:
        samples = []
        for text in g.samples:
            parsed = self._parse(text)
            moments = _clean(parsed.normalized(), duration)
            samples.append(
                GroundingSample(
                    text=text,
                    moments=[list(m) for m in (moments[:1] if req.mode == "single" else moments)],
                    not_present=parsed.not_present,
                    parsed=parsed.ok,
                )
            )
        if g.strategy == "direct":
            not_present = sum(s.not_present for s in samples) / max(len(samples), 1)
        else:
            not_present = 1.0 - max(g.scores, default=0.0)
        return GroundingResponse(
            model=req.model or self.cfg.model_name,
            video=req.video,
            duration=duration,
            query=req.query,
            mode=req.mode,
            moments=[MomentOut(start=s, end=e, score=sc) for (s, e), sc in zip(g.moments, g.scores)],
            reasoning=g.reasoning,
            not_present_score=round(not_present, 4),
            samples=samples,
            usage=self._count_usage(g.prompt_tokens, g.completion_tokens),
            strategy=g.strategy,
            calls=g.calls,
            windows=g.windows,
        )


@dataclass
class _Question:
    """A grounding question from either endpoint: the video, the query, and the request fields that shape it."""

    video: str
    param: str  # where the video is named in the request (for errors)
    query: str
    mode: str = "multi"
    think: bool | None = None
    strategy: str | None = None
    windows: Any = None  # WindowsIn
    time_budget_s: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    n: int = 1
    top_k: int = 5
    constrained: bool = False


def video_error(e: Exception, path: str, ref: str, param: str) -> E.APIError:
    """A video that cannot be read (400) or costs too much to decode (413), named as the client named it: never the
    server's own path to it (a fetched copy in a temporary folder, the real path under a media root)."""
    from vtg.data.video import VideoTooLarge

    message = str(e).replace(path, ref)
    if isinstance(e, VideoTooLarge):
        return E.too_large(f"{param}: video {ref!r} costs too much to decode: {message}", param)
    return E.bad_request(f"{param}: cannot read video {ref!r}: {message}", param)


def sampling_params(**kw):
    """vLLM SamplingParams; its own validation errors (e.g. an empty stop string) are the client's: 400."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMClientError

    try:
        return SamplingParams(**kw)
    except (ValueError, TypeError, VLLMClientError) as e:
        raise E.bad_request(f"bad sampling parameters: {e}") from None


def _clean(moments, duration: float | None) -> list[tuple[float, float]]:
    """Clamp to the video (when its duration is known) and drop empty intervals."""
    out = []
    for m in moments:
        c = clamp_moment(m, duration) if duration is not None else (float(m[0]), float(m[1]))
        if c is not None and c[1] > c[0]:
            out.append(c)
    return out


def _choice_moments(texts: list[str], duration: float | None, parse=parse_answer) -> list[list[MomentOut]]:
    """Each choice's moments (read by `parse`: the served profile's parser), scored by consensus across the n
    choices (1.0 when n == 1); see nms.py."""
    per = [_clean(parse(t).normalized(), duration) for t in texts]
    scored = consensus_scores(per)
    out: list[list[MomentOut]] = [[] for _ in texts]
    for m in scored:
        out[m.sample].append(MomentOut(start=m.start, end=m.end, score=round(m.score, 4)))
    return out


async def _grounded_events(req: ChatCompletionRequest, resp: ChatCompletionResponse) -> AsyncIterator[str]:
    """A grounded chat answer as a stream: the role, the whole answer with its moments, usage if asked, [DONE]."""
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    choice = resp.choices[0]

    def chunk(choices, usage=None) -> str:
        return _sse(ChatCompletionChunk(id=rid, created=created, model=req.model, choices=choices, usage=usage))

    yield chunk([ChunkChoice(index=0, delta=DeltaMessage(role="assistant", content=""))])
    delta = DeltaMessage(content=choice.message.content, reasoning_content=choice.message.reasoning_content)
    last = ChunkChoice(
        index=0,
        delta=delta,
        finish_reason=choice.finish_reason,
        moments=choice.moments,
        reasoning=choice.reasoning,
        not_present=choice.not_present,
    )
    yield chunk([last])
    if req.stream_options and req.stream_options.include_usage:
        yield chunk([], resp.usage)
    yield "data: [DONE]\n\n"


def _sse(model) -> str:
    return f"data: {model.model_dump_json(exclude_none=True)}\n\n"


def _sse_raw(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"
