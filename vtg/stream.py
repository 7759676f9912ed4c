"""Streaming grounding: moments announced while a video plays, from the frames seen so far.

A `StreamSession` is causal: it only ever looks at frames up to "now" (the media time of the newest frame pushed).
Frames arrive with their media time and are kept on the model's own frame-rate grid in a ring buffer of one
window (`FrameRing`: memory does not grow with the stream). Every `stride_s` of media time the trailing window —
the model's own clip length and fps, shown to it as a clip of its own exactly as `coarse_to_fine` shows a window of
a file — is asked about every active query through the one request path (`vtg.request`), scored as
`coarse_to_fine`'s coarse pass scores a window (`vtg.grounding`), and the answers, mapped to the stream's seconds,
feed one `MomentTracker` per query. The tracker turns window answers into events, with hysteresis:

    moment.started   a moment seen in `confirm` successive windows (score >= start_score); carries its start
    moment.updated   the start moved by more than `update_s` (a later window saw the event's beginning better)
    moment.ended     `release` successive windows no longer see it (`end_rule: gone`, the default), at the latest
                     end seen; or (`end_rule: seen`) as soon as one window sees it end inside the window

A moment still running at the trailing window's end is "ongoing": it has a start and no end yet. Each event carries
the media time at which it was emitted, so a replay can score how early it came.

Like a grounding strategy, a session does no engine I/O: `ask()` gives the calls due now (a `vtg.grounding.Ask`),
and `answer()` takes their completions and returns the events. Drivers run it: `replay` on a `vllm.LLM` with a
virtual clock (eval, the CLI; deterministic), the server on its async engine (where the model can fall behind: the
session then skips to the newest window and reports the lag, never a backlog). See docs/streaming.md.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vtg.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from vtg.data.video import DecodeBudget, DecodedVideo, FrameSampling
    from vtg.grounding import Ask, Candidate, Completion
    from vtg.request import Requests

EVENT_TYPES = ("moment.started", "moment.updated", "moment.ended")


class StreamError(UserError):
    """Bad input on a stream (a frame, a timestamp, a query): the message names what is wrong; the session goes on."""


# ---- settings ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSettings:
    """How a stream is watched. `window_s` and `fps` default to the model's own (its folder's `windows.window_s` and
    frame sampling); the trigger thresholds were chosen on validation streams (docs/streaming.md)."""

    window_s: float = 20.0  # the trailing window: about the clip length the model was trained on
    stride_s: float = 2.0  # media seconds between asks
    fps: float | None = None  # frames per second kept and shown; None: the model's own
    min_window_s: float = 4.0  # the first ask waits until this much of the stream is buffered
    score: str = "likelihood"  # how a window's answer is scored (vtg.grounding.SCORES, without `agreement`)
    # the trigger settings: chosen on validation streams (experiments/stream_thresholds, then with `end_rule`
    # experiments/stream_release), the same point in the distractor and the one-object world
    start_score: float = 0.7  # a window moment scored lower is no evidence of a new moment
    keep_score: float = 0.7  # ... and an active moment needs at least this to stay (lower: hysteresis)
    confirm: int = 1  # successive windows of evidence before moment.started
    release: int = 2  # successive windows without the moment before moment.ended
    edge_s: float = 1.0  # a moment ending within this of the window's end is ongoing
    update_s: float = 1.0  # a start that moves more than this is announced (moment.updated)
    max_queries: int = 8
    # "gone": a moment ends once `release` successive windows show nothing touching it, at the latest end seen
    # (a later moment.ended, about a window; one event stays one moment while the trailing window still holds it);
    # "seen": it ends as soon as one window's answer ends inside the window (each later window that still shows
    # the event then starts a new moment: fragments). Chosen on validation streams (experiments/stream_release).
    end_rule: str = "gone"

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise UserError(f"stream.window_s must be > 0 seconds, got {self.window_s!r}")
        if not 0 < self.stride_s <= self.window_s:
            raise UserError(f"stream.stride_s must be in (0, window_s={self.window_s:g}], got {self.stride_s!r}")
        if self.fps is not None and not self.fps > 0:
            raise UserError(f"stream.fps must be > 0 (or null: the model's own), got {self.fps!r}")
        if not 0 < self.min_window_s <= self.window_s:
            raise UserError(
                f"stream.min_window_s must be in (0, window_s={self.window_s:g}], got {self.min_window_s!r}"
            )
        if self.end_rule not in ("gone", "seen"):
            raise UserError(f"stream.end_rule must be 'gone' or 'seen', got {self.end_rule!r}")
        if self.score not in ("likelihood", "not_present"):
            raise UserError(f"stream.score must be 'likelihood' or 'not_present', got {self.score!r}")
        if not 0 <= self.keep_score <= self.start_score <= 1:
            raise UserError(
                f"stream: need 0 <= keep_score <= start_score <= 1, got keep_score={self.keep_score!r}, "
                f"start_score={self.start_score!r}"
            )
        for name in ("confirm", "release", "max_queries"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise UserError(f"stream.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("edge_s", "update_s"):
            if not getattr(self, name) >= 0:
                raise UserError(f"stream.{name} must be >= 0 seconds, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, where: str = "stream") -> StreamSettings:
        from vtg.config import ConfigError, build

        try:
            return build(cls, dict(d or {}), f"{where}.")
        except ConfigError as e:
            raise UserError(str(e)) from None

    def updated(self, overrides: dict[str, Any] | None, where: str = "stream") -> StreamSettings:
        return StreamSettings.from_dict({**dataclasses.asdict(self), **(overrides or {})}, where)

    @classmethod
    def for_model(cls, folder, overrides: dict[str, Any] | None = None) -> StreamSettings:
        """The model folder's window length (its `windows.window_s`), with `overrides` on top."""
        base = {"window_s": folder.windows.window_s}
        if overrides and "window_s" in overrides and "stride_s" not in overrides:
            base["stride_s"] = min(cls.stride_s, float(overrides["window_s"]))
        return cls.from_dict({**base, **(overrides or {})})


# ---- frames ------------------------------------------------------------------------------------------------------


class FrameRing:
    """The last `window_s` seconds of a stream on a grid of `fps` frames per second, resized for the model.

    A pushed frame is kept when it is the first at or after the next grid time (frames between grid times are
    dropped as they come, so a 30-fps feed costs what a 2-fps one does); kept frames are resized at once to the size
    the model's sampling gives a full window, and frames older than one window are let go."""

    def __init__(self, sampling: FrameSampling, fps: float, window_s: float, budget: DecodeBudget | None = None):
        self.sampling, self.fps, self.window_s, self.budget = sampling, float(fps), float(window_s), budget
        self.frames: deque[tuple[float, Any]] = deque()  # (media time, [C, h, w] uint8)
        self.size: tuple[int, int] | None = None
        self.source_size: tuple[int, int] = (0, 0)  # (width, height) of the first frame
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.pushed = 0
        self.next_grid: float | None = None

    @property
    def capacity(self) -> int:
        return max(2, int(round(self.window_s * self.fps)))

    def push(self, frame: np.ndarray, t: float, name: str = "") -> bool:
        """Take one RGB frame [H, W, 3] uint8 at media time `t` (s); returns whether it was kept. A frame of the wrong
        shape, too large, or not after the previous one raises StreamError naming it."""
        import numpy as np

        label = name or f"frame {self.pushed} (t={t!r})"
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise StreamError(f"{label}: media time must be a finite number of seconds >= 0")
        if self.last_t is not None and t <= self.last_t:
            raise StreamError(
                f"{label}: media time {t:g}s is not after the previous frame's {self.last_t:g}s "
                "(timestamps must increase)"
            )
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            got = getattr(frame, "shape", type(frame).__name__)
            raise StreamError(f"{label}: expected an RGB frame [height, width, 3] of uint8, got {got}")
        h, w = frame.shape[:2]
        if h < 1 or w < 1:
            raise StreamError(f"{label}: empty frame {w}x{h}")
        if self.budget is not None:
            try:
                self.budget.check_frame(w, h, label)
            except UserError as e:
                raise StreamError(str(e)) from None
        self.pushed += 1
        self.last_t = float(t)
        if self.next_grid is not None and t < self.next_grid - 1e-6:
            return False
        if self.size is None:
            from vtg.data.video import frame_size

            self.size = frame_size(h, w, self.capacity, self.sampling)
            self.source_size, self.first_t = (w, h), float(t)
        from vtg.data.video import _resized

        self.frames.append((float(t), _resized(np.ascontiguousarray(frame), self.size)))
        step = 1.0 / self.fps
        self.next_grid = (self.next_grid if self.next_grid is not None else t) + step
        if self.next_grid <= t:  # a gap in the feed: the grid restarts after it
            self.next_grid = t + step
        while len(self.frames) > 1 and self.frames[1][0] <= t - self.window_s + 1e-6:
            self.frames.popleft()
        return True

    @property
    def buffered_s(self) -> float:
        return 0.0 if self.first_t is None or self.last_t is None else self.last_t - self.first_t

    def window(self, source: str) -> DecodedVideo | None:
        """The trailing window as a clip of its own: an even number of frames on the `fps` grid ending at the newest
        frame, each the newest frame kept at or before its grid time (a feed slower than `fps` repeats frames, as a
        constant-rate file of it would: times never stretch); its metadata's `offset` is where frame 0 lies in the
        stream. None: under two grid times buffered."""
        import torch

        from vtg.data.video import DecodedVideo, VideoMetadata

        if not self.frames:
            return None
        now, step = self.frames[-1][0], 1.0 / self.fps
        n = min(int((now - self.frames[0][0]) * self.fps + 1e-6) + 1, self.capacity)
        n -= n % 2
        if n < 2:
            return None
        grid = [now - (n - 1 - k) * step for k in range(n)]
        kept, i, frames = list(self.frames), 0, []
        for g in grid:
            while i + 1 < len(kept) and kept[i + 1][0] <= g + 1e-6:
                i += 1
            frames.append(kept[i][1])
        start = grid[0]
        meta = VideoMetadata(
            fps=self.fps,
            total_num_frames=n,
            duration=n / self.fps,
            frames_indices=list(range(n)),
            timestamps=[round(g - start, 6) for g in grid],
            sampled_fps=self.fps,
            width=self.source_size[0],
            height=self.source_size[1],
            window_start=0,
            window_end=n - 1,
            offset=round(start, 6),
        )
        sampling = dataclasses.replace(self.sampling, fps=self.fps, nframes=None)
        return DecodedVideo(torch.stack(frames), meta, source, sampling)


# ---- events ------------------------------------------------------------------------------------------------------


@dataclass
class Event:
    """One announcement about a query's moment, at media time `media_time` (the newest frame seen when emitted).
    `end` is None while the moment is ongoing."""

    type: str
    query_id: str
    moment_id: str
    start: float
    end: float | None
    score: float
    media_time: float

    @property
    def ongoing(self) -> bool:
        return self.end is None

    def to_dict(self) -> dict[str, Any]:
        """The wire form (docs/serving.md#streams): the moment in /v1/grounding's schema, `end` null while ongoing."""
        return {
            "type": self.type,
            "query_id": self.query_id,
            "moment_id": self.moment_id,
            "moment": {
                "start": round(self.start, 3),
                "end": None if self.end is None else round(self.end, 3),
                "score": round(self.score, 4),
            },  # fmt: skip
            "ongoing": self.ongoing,
            "media_time": round(self.media_time, 3),
        }


@dataclass
class TrackedMoment:
    moment_id: str
    start: float
    end: float | None  # None: ongoing
    score: float
    started_at: float  # media time of moment.started
    ended_at: float | None = None  # media time of moment.ended


@dataclass
class MomentTracker:
    """One query's moments from successive window answers (the hysteresis of the module docstring)."""

    query_id: str
    settings: StreamSettings
    moments: list[TrackedMoment] = field(default_factory=list)
    evidence: int = 0
    missed: int = 0
    closed_until: float = -math.inf  # the end of the last ended moment: answers before it are that moment again
    last_seen: float = 0.0  # the active moment's latest end seen (a window's end while it was ongoing there)
    at: float = 0.0  # media time of the answer being observed (events are emitted then)

    @property
    def active(self) -> TrackedMoment | None:
        return self.moments[-1] if self.moments and self.moments[-1].end is None else None

    def observe(
        self, window_start: float, now: float, candidates: Sequence[Candidate], at: float | None = None
    ) -> list[Event]:
        """The events one window answer [window_start, now] gives (candidates: its moments in stream seconds),
        emitted at media time `at` (default: the window's end)."""
        self.at = now if at is None else at
        s = self.settings
        active = self.active
        floor = s.keep_score if active is not None else s.start_score
        fresh = [c for c in candidates if c.score >= floor and c.end > self.closed_until + 1e-6]
        if active is None:
            return self._maybe_start(fresh, window_start, now)
        touching = [c for c in fresh if c.end >= active.start - s.edge_s]
        if not touching:
            self.missed += 1
            return self._end(active, self.last_seen, now) if self.missed >= s.release else []
        c = max(touching, key=lambda c: c.end)
        self.missed = 0
        active.score = max(active.score, c.score)
        events = []
        gone = s.end_rule == "gone"
        # the window saw the beginning: a better start (with `gone`, only an earlier one: a later candidate touching
        # the moment is more of it, not its beginning)
        if c.start > window_start + s.edge_s and abs(c.start - active.start) > s.update_s:
            if not gone or c.start < active.start:
                active.start = max(c.start, self.closed_until)
                events.append(self._event("moment.updated", active, now))
        if gone:
            self.last_seen = max(self.last_seen, now if c.end >= now - s.edge_s else c.end)
            return events
        if c.end >= now - s.edge_s:
            self.last_seen = now
            return events
        return events + self._end(active, max(c.end, active.start), now)

    def _maybe_start(self, fresh, window_start: float, now: float) -> list[Event]:
        s = self.settings
        if not fresh:
            self.evidence = 0
            return []
        self.evidence += 1
        if self.evidence < s.confirm:
            return []
        c = max(fresh, key=lambda c: c.end)
        start = max(c.start, self.closed_until)
        m = TrackedMoment(f"mom_{uuid.uuid4().hex[:12]}", start, None, c.score, started_at=now)
        self.moments.append(m)
        ongoing = c.end >= now - s.edge_s
        self.evidence, self.missed, self.last_seen = 0, 0, now if ongoing else max(c.end, start)
        events = [self._event("moment.started", m, now)]
        if not ongoing and s.end_rule == "seen":  # over within the window already: started and ended at once
            events += self._end(m, max(c.end, start), now)
        return events

    def _end(self, m: TrackedMoment, end: float, now: float) -> list[Event]:
        m.end, m.ended_at = max(end, m.start), now
        self.closed_until, self.missed, self.evidence = m.end, 0, 0
        return [self._event("moment.ended", m, now)]

    def _event(self, kind: str, m: TrackedMoment, now: float) -> Event:
        return Event(kind, self.query_id, m.moment_id, m.start, m.end, m.score, max(now, self.at))

    def spans(self, now: float) -> list[tuple[float, float, float, bool]]:
        """(start, end, score, ongoing) of every moment so far, an ongoing one ending at `now`."""
        return [(m.start, m.end if m.end is not None else now, m.score, m.end is None) for m in self.moments]


# ---- the session -------------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    window: DecodedVideo
    query_ids: list[str]


class StreamSession:
    """One stream's state: its frame ring, its queries and their trackers, and when the next window is due.

    Drivers push frames (`push`), and whenever `due()` take `ask()`, have the engine answer its calls, and give the
    completions to `answer()`, which returns the events. One ask is answered at a time; frames pushed meanwhile are
    kept, and the next ask is on the newest window: strides that passed while the model was busy are skipped
    (counted in `skipped`), the delay between a window's end and its answer is the caller's `lag`."""

    def __init__(self, requests: Requests, settings: StreamSettings, *, source: str = "stream", processor=None):
        from vtg.grounding import WindowSettings, _Scorer, not_present_token_ids

        self.requests, self.settings, self.source = requests, settings, source
        fps = settings.fps if settings.fps is not None else _model_fps(requests.sampling)
        self.ring = FrameRing(requests.sampling, fps, settings.window_s, requests.budget)
        self.queries: dict[str, str] = {}
        self.trackers: dict[str, MomentTracker] = {}
        self.finished: dict[str, MomentTracker] = {}  # removed queries keep their moments for the final answer
        processor = processor if processor is not None else requests.processor
        tok = getattr(processor, "tokenizer", processor)
        self._scorer = _Scorer(
            WindowSettings(window_s=settings.window_s, score=settings.score, min_score=0.0),
            not_present_token_ids(processor),
            lambda ids: tok.decode(ids),
        )
        self.next_due: float | None = None
        self.skipped = 0
        self.asked = 0
        self.lag = 0.0  # how far the last answered window's newest frame was behind the stream when answered
        # the server pushes frames and builds a window in different worker threads: the ring is read under it
        self._ring_lock = threading.Lock()
        self.pending: _Pending | None = None
        # called with (query_id, window_start, window_end, media_time, candidates) for every window answer before
        # its tracker sees it: a threshold sweep records them once and re-runs only the trackers
        self.on_window: Callable[[str, float, float, float, list[Candidate]], None] | None = None

    # -- queries

    def add_query(self, text: str, query_id: str | None = None) -> str:
        if not isinstance(text, str) or not text.strip():
            raise StreamError("a query must be a non-empty string")
        if len(self.queries) >= self.settings.max_queries:
            raise StreamError(f"a stream holds at most {self.settings.max_queries} queries (stream.max_queries)")
        qid = query_id or f"q_{uuid.uuid4().hex[:8]}"
        if qid in self.queries or qid in self.finished:
            raise StreamError(f"query id {qid!r} is already used in this stream")
        self.queries[qid] = text.strip()
        self.trackers[qid] = MomentTracker(qid, self.settings)
        return qid

    def remove_query(self, query_id: str) -> None:
        if query_id not in self.queries:
            raise StreamError(f"no active query {query_id!r}")
        del self.queries[query_id]
        self.finished[query_id] = self.trackers.pop(query_id)

    # -- frames and asks

    @property
    def now(self) -> float:
        return self.ring.last_t if self.ring.last_t is not None else 0.0

    def push(self, frame: np.ndarray, t: float, name: str = "") -> bool:
        with self._ring_lock:
            kept = self.ring.push(frame, t, name)
        if self.next_due is None and self.ring.first_t is not None:
            self.next_due = self.ring.first_t + self.settings.min_window_s
        return kept

    def due(self) -> bool:
        return (
            self.pending is None
            and bool(self.queries)
            and self.next_due is not None
            and self.now >= self.next_due - 1e-6
        )

    def ask(self) -> Ask | None:
        """The calls for the trailing window, one per active query; None when nothing is due."""
        from vtg.grounding import TOP_LOGPROBS, Ask, Call

        if not self.due():
            return None
        with self._ring_lock:
            window = self.ring.window(self.source)
        if window is None:
            return None
        stride = self.settings.stride_s
        behind = int((self.now - self.next_due) // stride)
        self.skipped += max(0, behind)
        self.next_due += (max(0, behind) + 1) * stride
        qids = list(self.queries)
        duration = float(window.metadata.duration)
        calls = [
            Call(self.requests.grounding(self.source, self.queries[q], duration, video=window), n=1,
                 temperature=0.0, logprobs=TOP_LOGPROBS)
            for q in qids
        ]  # fmt: skip
        self.pending = _Pending(window, qids)
        self.asked += 1
        return Ask(calls, "stream", done=self.asked - 1, windows=1, total=self.asked)

    def answer(self, answers: list[list[Completion]]) -> list[Event]:
        """The events of the pending ask's completions (one list per call, in order), emitted at the newest frame's
        media time (frames pushed while the model answered count: the events come that late)."""
        if self.pending is None:
            raise RuntimeError("answer() without a pending ask()")
        p, self.pending = self.pending, None
        start = p.window.metadata.offset
        end = start + float(p.window.metadata.duration)
        self.lag = max(0.0, self.now - (start + p.window.metadata.timestamps[-1]))
        events = []
        for qid, completions in zip(p.query_ids, answers):
            tracker = self.trackers.get(qid)
            if tracker is None:  # removed while its window was asked
                continue
            candidates = self._scorer.moments([p.window], [completions])
            if self.on_window is not None:
                self.on_window(qid, start, end, self.now, candidates)
            events += tracker.observe(start, end, candidates, at=self.now)
        return events

    def abandon(self) -> None:
        """Drop the pending ask unanswered (the engine refused it, or it timed out): its window is skipped."""
        if self.pending is not None:
            self.pending = None
            self.skipped += 1

    def progress(self) -> dict[str, Any]:
        """The `progress` record (docs/streaming.md#events): media time seen, lag of the last answer, windows asked
        and skipped."""
        return {"type": "progress", "media_time": round(self.now, 3), "lag": round(self.lag, 3),
                "windows": self.asked, "skipped": self.skipped}  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """How this session watches (the `session.created` record's `session`, docs/serving.md#streams)."""
        s = self.settings
        return {"window_s": s.window_s, "stride_s": s.stride_s, "fps": self.ring.fps, "min_window_s": s.min_window_s,
                "max_queries": s.max_queries,
                "queries": [{"id": q, "text": t} for q, t in self.queries.items()]}  # fmt: skip

    def summary(self, texts: dict[str, str]) -> dict[str, Any]:
        """The `session.closed` record: every query's moments so far (`texts`: query id -> text, removed queries
        included), an ongoing moment ending at the newest frame."""
        return {
            "type": "session.closed",
            "media_time": round(self.now, 3),
            "windows": self.asked,
            "skipped": self.skipped,
            "queries": [
                {"id": q, "text": texts.get(q, ""), "active": q in self.queries,
                 "moments": [{"start": round(a, 3), "end": round(b, 3), "score": round(sc, 4), "ongoing": ongoing}
                             for a, b, sc, ongoing in spans]}
                for q, spans in self.spans().items()
            ],
        }  # fmt: skip

    def spans(self) -> dict[str, list[tuple[float, float, float, bool]]]:
        """Every query's moments so far (start, end, score, ongoing), removed queries included."""
        now = self.now
        return {q: t.spans(now) for q, t in {**self.finished, **self.trackers}.items()}


def _model_fps(sampling: FrameSampling) -> float:
    if sampling.nframes is not None:
        raise UserError(
            "stream: this model samples a fixed number of frames (nframes), not a frame rate; give stream.fps"
        )
    return float(sampling.fps)


# ---- sources and the virtual-clock driver ------------------------------------------------------------------------


def jpeg_base64(frame: Any, quality: int = 90) -> str:
    """An RGB frame (H, W, 3 uint8) as a `frame.append` event's `image`: base64 of its JPEG."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode()


def file_frames(
    source: str, fps: float, budget: DecodeBudget | None = None, fmt: str | None = None
) -> Iterator[tuple[Any, float]]:
    """(RGB frame [H, W, 3] uint8, media time) of a video file, about `fps` a second (the first frame at or after
    each 1/fps tick; the rest are not converted). Decoded in one forward pass: memory is one frame. `fmt`: the
    container, where probing cannot tell (a short MPEG-TS segment: "mpegts")."""
    from vtg.data.video import NO_BUDGET, VideoError, _open_container, local_file

    budget = budget or NO_BUDGET
    step, next_t = 1.0 / fps, 0.0
    with local_file(source) as path:
        container = _open_container(path, source, fmt)
        try:
            stream = container.streams.video[0]
            stream.codec_context.options = budget.decoder_options()
            if budget.max_threads:
                stream.thread_count = budget.max_threads
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * stream.time_base)
                    if t < next_t - 1e-6:
                        continue
                    budget.check_frame(frame.width, frame.height, source)
                    next_t += step
                    if next_t <= t:  # a gap: the grid restarts after it
                        next_t = t + step
                    yield frame.to_ndarray(format="rgb24"), t
            except Exception as e:  # noqa: BLE001 - PyAV's FFmpegError family: a damaged file is the user's input
                if isinstance(e, UserError):
                    raise
                raise VideoError(f"{source}: cannot decode: {type(e).__name__}: {e}") from None
        finally:
            container.close()


def source_frames(source: str, fps: float, budget: DecodeBudget | None = None) -> Iterator[tuple[Any, float]]:
    """`file_frames`, or for an HLS playlist URL its segments read one by one through the URL guard (vtg.data.hls;
    non-public hosts only with VTG_ALLOW_PRIVATE_URLS=1, as for any fetched video)."""
    import os

    from vtg.data.hls import GuardedFetcher, hls_frames, is_hls_url
    from vtg.data.video import MAX_DOWNLOAD_BYTES

    if not is_hls_url(source):
        return file_frames(source, fps, budget)
    allow_private = os.environ.get("VTG_ALLOW_PRIVATE_URLS") == "1"
    fetcher = GuardedFetcher(max_segment_bytes=MAX_DOWNLOAD_BYTES, allow_private=allow_private)
    return hls_frames(source, fps, budget, fetcher=fetcher)


def replay_asks(
    session: StreamSession, frames: Iterator[tuple[Any, float]], emit: Callable[[dict[str, Any]], None]
) -> Generator[Ask, list[list[Completion]], None]:
    """`replay` as a strategy-style generator (vtg.grounding's protocol): yields each due window's `Ask`, is sent its
    completions, and hands the events and `progress` records to `emit`. Drivers that pool the asks of several
    streams into one engine call run it (eval's `streaming` strategy); `replay` runs one stream."""
    for frame, t in frames:
        session.push(frame, t)
        ask = session.ask()
        if ask is None:
            continue
        answers = yield ask
        for e in session.answer(answers):
            emit(e.to_dict())
        emit(session.progress())


def replay(session: StreamSession, frames: Iterator[tuple[Any, float]], generate) -> Iterator[dict[str, Any]]:
    """Run a session over `frames` on a virtual clock: before each frame past a due time, the window is asked and
    answered (`generate(ask) -> list[list[Completion]]`), so the model never falls behind and a replay is
    deterministic. Yields events (`Event.to_dict()`) and, after each window, a `progress` record."""
    out: list[dict[str, Any]] = []
    steps = replay_asks(session, frames, out.append)
    answers = None
    while True:
        try:
            ask = steps.send(answers)
        except StopIteration:
            ask = None
        yield from out
        out.clear()
        if ask is None:
            return
        answers = generate(ask)


def llm_generate(llm, base_params):
    """`generate` for `replay` on a `vllm.LLM`: one engine call for an ask's calls."""
    from vtg.grounding import _generate_all

    def generate(ask: Ask) -> list[list[Completion]]:
        answers = _generate_all(llm, list(enumerate(ask.calls)), lambda _i: base_params)
        failed = next((a for a in answers if isinstance(a, str)), None)
        if failed is not None:
            raise StreamError(failed)
        return answers

    return generate
