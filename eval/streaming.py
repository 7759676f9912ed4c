"""Streaming eval: each record replayed causally (`vtg.stream`) on a virtual clock, and how early and how right its
announcements were.

The `streaming` strategy (`stream_strategy`) is a grounding strategy in `vtg.grounding`'s protocol: it replays the
record's video through a `StreamSession` (frames at the model's fps, one ask per stride; `vtg.stream.replay_asks`)
and returns the final spans as its answer, so the offline metrics score it like any other strategy. The events it
emitted go to `events.jsonl` beside the predictions, one line per record; the functions below score them.

Definitions (docs/streaming.md#metrics). Per record: its true moments, its events, and its stream's end.
- **start rule** (StreamingBench's ±τ rule, τ = 2 s): a true moment is detected when a `moment.started` is emitted
  (its `media_time`) within τ of the true start, inclusive; one-to-one, in time order. Event precision = detected /
  `moment.started` events, recall = detected / true moments.
- **span rule**: the final spans (every moment's last borders; one still ongoing ends at the stream's end) matched
  one-to-one to the true moments at IoU >= 0.5 (`grammar.match_moments`). Precision = matched / spans, recall =
  matched / true moments.
- **delays** (OnVTG's SD / ED), on the span rule's matched pairs: start delay = `media_time` of the moment's
  `moment.started` - true start; end delay = `media_time` of its `moment.ended` - true end (a moment still ongoing
  at the stream's end has none: counted as `unended`). Median and p90, in seconds.
- **false alarms per hour**: `moment.started` events on records without a true moment, over those records' hours.
- A record that failed (its video unreadable, the engine refused it, no events line) has no events: its true
  moments are misses, its hours count. Precision with no announcement at all is 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vtg.errors import UserError

if TYPE_CHECKING:
    from vtg.grounding import Strategy
    from vtg.request import Requests
    from vtg.stream import StreamSettings

TAU_S = 2.0  # StreamingBench: an answer counts within ±2 s of the right time
SPAN_IOU = 0.5
QUERY_ID = "q"  # a record's one query in its stream


# ---- the strategy ------------------------------------------------------------------------------------------------


@dataclass
class StreamLog:
    """What one record's replay emitted: its moment events, and where the stream ended."""

    events: list[dict[str, Any]] = field(default_factory=list)
    windows: int = 0
    skipped: int = 0
    media_end: float = 0.0
    on_window: Any = None  # passed to StreamSession.on_window (threshold sweeps)

    def emit(self, item: dict[str, Any]) -> None:
        if item["type"] == "progress":
            self.windows, self.skipped, self.media_end = item["windows"], item["skipped"], item["media_time"]
        else:
            self.events.append(item)

    def line(self, rid: str, error: str | None = None) -> dict[str, Any]:
        """This record's events.jsonl line."""
        return {"id": rid, "events": self.events, "media_end": self.media_end, "windows": self.windows,
                "skipped": self.skipped, "error": error}  # fmt: skip


def stream_strategy(
    requests: Requests, source: str, query: str, settings: StreamSettings, mode: str, log: StreamLog
) -> Strategy:
    """Replay `source` as a stream (frames at the session's fps, read in one forward pass) with `query` as its one
    query; the answer is the final spans, best-scored first (`mode` single: the best one), "not present" when none.
    Windows are asked in `multi` mode, as coarse_to_fine asks its windows ("not present" is an answer)."""
    from vtg.data.grammar import NOT_PRESENT, format_moments
    from vtg.grounding import Grounding
    from vtg.stream import StreamSession, file_frames, replay_asks

    session = StreamSession(requests.asking(mode="multi"), settings, source=source)
    session.on_window = log.on_window
    session.add_query(query, QUERY_ID)
    yield from replay_asks(session, file_frames(source, session.ring.fps, requests.budget), log.emit)
    log.media_end = round(session.now, 3)
    spans = sorted(session.spans()[QUERY_ID], key=lambda s: (-s[2], s[0]))
    spans = spans[:1] if mode == "single" else spans
    moments = [(round(s, 3), round(e, 3)) for s, e, _, _ in spans]
    return Grounding(
        moments=moments,
        scores=[round(sc, 4) for _, _, sc, _ in spans],
        text=format_moments(moments) if moments else NOT_PRESENT,
        strategy="streaming",
        calls=session.asked,
        windows=session.asked,
    )


def events_file_name(shard: tuple[int, int] | None) -> str:
    from vtg.eval.predictions import shard_file_name

    return shard_file_name(shard).replace("predictions", "events", 1)


def read_events(path: str | Path) -> dict[str, dict[str, Any]]:
    """id -> events line; a rerun's later line for an id wins (the record was replayed again); a half-written last
    line (a killed run) is skipped."""
    from vtg.eval.predictions import json_lines

    out: dict[str, dict[str, Any]] = {}
    for n, d in json_lines(path, "events"):
        if not isinstance(d, dict) or "id" not in d or not isinstance(d.get("events"), list):
            raise UserError(f"{path}: line {n} is not an events line (needs 'id' and a list 'events')")
        out[str(d["id"])] = d
    return out


def merge_events(inputs: Sequence[str | Path], out: str | Path) -> int:
    """`vtg eval merge` of a streaming run's shards: their events*.jsonl (in the folders given, or beside the
    prediction files given) joined into `out/events.jsonl`; returns the lines written (0: no events files)."""
    files: list[Path] = []
    for x in map(Path, inputs):
        files += sorted((x if x.is_dir() else x.parent).glob("events*.jsonl"))
    dest = Path(out) / "events.jsonl"
    files = [f for f in dict.fromkeys(files) if f.resolve() != dest.resolve()]
    if not files:
        return 0
    merged: dict[str, dict[str, Any]] = {}
    for f in files:
        merged.update(read_events(f))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in merged.values()))
    return len(merged)


# ---- per record --------------------------------------------------------------------------------------------------


@dataclass
class StreamScore:
    """One record's streaming counts."""

    id: str
    duration: float
    n_truth: int
    failed: bool
    started: int = 0  # moment.started events
    start_hits: int = 0  # true moments detected by the start rule
    spans: int = 0  # final spans
    span_hits: int = 0  # true moments matched by the span rule
    start_delays: list[float] = field(default_factory=list)
    end_delays: list[float] = field(default_factory=list)
    unended: int = 0  # span-matched moments with no moment.ended (ongoing at the stream's end)

    @property
    def absent(self) -> bool:
        return self.n_truth == 0


def final_spans(events: Sequence[dict[str, Any]], media_end: float) -> dict[str, tuple[float, float]]:
    """moment_id -> (start, end) from the events: each moment's last borders, one still ongoing ending at
    `media_end` (vtg.stream's `spans()`)."""
    out: dict[str, tuple[float, float]] = {}
    for e in events:
        if e["type"] not in ("moment.started", "moment.updated", "moment.ended"):
            continue
        m = e["moment"]
        out[e["moment_id"]] = (float(m["start"]), float(m["end"]) if m["end"] is not None else float(media_end))
    return out


def match_starts(truth: Sequence[Sequence[float]], emitted: Sequence[float], tau: float = TAU_S) -> list[tuple]:
    """One-to-one (true index, emitted time) pairs: each true moment, in start order, takes the earliest unused
    emission within `tau` of its start (inclusive)."""
    times = sorted(emitted)
    used, pairs = [False] * len(times), []
    for j in sorted(range(len(truth)), key=lambda j: truth[j][0]):
        start = float(truth[j][0])
        for i, t in enumerate(times):
            if not used[i] and abs(t - start) <= tau + 1e-9:
                used[i] = True
                pairs.append((j, t))
                break
    return pairs


def score_stream(
    rid: str,
    truth: Sequence[Sequence[float]],
    duration: float,
    events: Sequence[dict[str, Any]] | None,
    media_end: float = 0.0,
    tau: float = TAU_S,
) -> StreamScore:
    """One record's counts; `events=None`: the record failed (no events: every true moment a miss)."""
    from vtg.data.grammar import match_moments

    truth = [[float(s), float(e)] for s, e in truth]
    sc = StreamScore(rid, float(duration), len(truth), failed=events is None)
    if events is None:
        return sc
    started = {e["moment_id"]: float(e["media_time"]) for e in events if e["type"] == "moment.started"}
    ended = {e["moment_id"]: float(e["media_time"]) for e in events if e["type"] == "moment.ended"}
    sc.started = sum(1 for e in events if e["type"] == "moment.started")
    sc.start_hits = len(match_starts(truth, list(started.values()), tau))
    spans = final_spans(events, media_end)
    ids = list(spans)
    sc.spans = len(ids)
    for i, j, v in match_moments([spans[k] for k in ids], truth):
        if v < SPAN_IOU:
            continue
        sc.span_hits += 1
        mid = ids[i]
        if mid in started:
            sc.start_delays.append(started[mid] - truth[j][0])
        if mid in ended:
            sc.end_delays.append(ended[mid] - truth[j][1])
        else:
            sc.unended += 1
    return sc


# ---- aggregates --------------------------------------------------------------------------------------------------


def _prf(hits: int, predicted: int, truths: int) -> dict[str, float]:
    from vtg.eval.metrics import pct

    p, r = pct(hits, predicted), pct(hits, truths)
    return {"precision": p, "recall": r, "F1": 0.0 if p + r == 0 else 2 * p * r / (p + r)}


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    a = np.asarray(values, dtype=float)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90))}


def aggregate(scores: Sequence[StreamScore], tau: float = TAU_S) -> dict[str, Any]:
    """The streaming metrics of a set of records (percentages for P/R/F1, seconds for delays)."""
    truths = sum(s.n_truth for s in scores)
    start = _prf(sum(s.start_hits for s in scores), sum(s.started for s in scores), truths)
    span = _prf(sum(s.span_hits for s in scores), sum(s.spans for s in scores), truths)
    absent = [s for s in scores if s.absent]
    hours = sum(s.duration for s in absent) / 3600
    sd = _quantiles([d for s in scores for d in s.start_delays])
    ed = _quantiles([d for s in scores for d in s.end_delays])
    metrics = {
        **{f"event_{k}@{tau:g}s": v for k, v in start.items()},
        **{f"span_{k}@IoU{SPAN_IOU:g}": v for k, v in span.items()},
        "start_delay_median_s": sd["median"],
        "start_delay_p90_s": sd["p90"],
        "end_delay_median_s": ed["median"],
        "end_delay_p90_s": ed["p90"],
        "false_alarms_per_hour": (sum(s.started for s in absent) / hours) if hours > 0 else None,
    }
    counts = {
        "streams": len(scores),
        "failed": sum(s.failed for s in scores),
        "true_moments": truths,
        "started_events": sum(s.started for s in scores),
        "final_spans": sum(s.spans for s in scores),
        "matched_spans": sum(s.span_hits for s in scores),
        "unended": sum(s.unended for s in scores),
        "absent_streams": len(absent),
        "absent_hours": round(hours, 4),
        "false_alarms": sum(s.started for s in absent),
    }
    return {"metrics": metrics, "counts": counts}


def by_video_length(scores: Sequence[StreamScore], tau: float = TAU_S) -> dict[str, dict[str, Any]]:
    """The metrics per fixed video-length bin (eval.report's bins; `n`: records in the bin)."""
    from vtg.eval.report import length_bin, length_labels

    bins: dict[str, list[StreamScore]] = {label: [] for label in length_labels()}
    for s in scores:
        bins[length_bin(s.duration)].append(s)
    return {b: {"n": len(sel), **(aggregate(sel, tau)["metrics"] if sel else {})} for b, sel in bins.items()}


def score_records(
    records: Iterable[Any], events: dict[str, dict[str, Any]], predictions: dict[str, dict[str, Any]]
) -> tuple[list[StreamScore], dict[str, Any]]:
    """Every record scored from its events line; one with no line, an error in it, or an error prediction line
    failed (kept in every denominator)."""
    scores = []
    for r in records:
        line, pred = events.get(r.id), predictions.get(r.id)
        failed = line is None or line.get("error") or pred is None or pred.get("error")
        scores.append(
            score_stream(r.id, r.moments, r.duration, None if failed else line["events"], line and line["media_end"])
        )
    result = aggregate(scores)
    result["tau_s"], result["span_iou"] = TAU_S, SPAN_IOU
    result["by_video_length"] = by_video_length(scores)
    return scores, result


def score_run_folder(records: Sequence[Any], run_dir: str | Path, shard=None) -> dict[str, Any] | None:
    """The streaming metrics of a run folder, None when it has no events file (not a streaming run)."""
    from vtg.eval.predictions import read_predictions, shard_file_name

    d = Path(run_dir)
    path = d / events_file_name(shard)
    if not path.exists():
        return None
    pred = d / shard_file_name(shard)
    preds = read_predictions(pred) if pred.exists() else {}
    return score_records(records, read_events(path), preds)[1]


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else str(v)
