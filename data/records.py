"""The record schema every part of vtg speaks (docs/data.md#the-record), its validation, and JSONL / HF `datasets` I/O.

One grounding sample:
    {"id": str, "video": str, "duration": float (s), "query": str, "moments": [[start, end], ...] (s),
     "source": str, "split": str, ...optional extras ("saliency", "qid", "vid", "fps", "kind", ...)}
`moments == []` means the query does not happen in the video.

Validation rules (each problem is reported with the line and id, nothing is dropped silently):
- errors (the record is rejected): missing/ill-typed required field, empty query, duration <= 0, a moment that is
  not a pair of finite numbers, reversed (start > end) or zero-length (start == end) moment, a moment that starts at
  or after the duration or ends at or before 0 (clamping would leave nothing), a missing video file (only when
  `check_video=True`).
- flagged, kept: a zero-length moment in a record marked `"zero_length_window": true` (`ZERO_LENGTH_FLAG`): an
  official evaluator scores such queries (Ego4D-NLQ), so they are kept for it; vtg's own metrics leave them out and
  count them, and nothing should train on them.
- fixes (the record is kept, the fix is counted): a moment ending past the duration is clamped to it; a start below
  0 is clamped to 0; optionally (`fix_reversed=True`) a reversed pair is swapped.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg.data.grammar import clamp_moment
from vtg.errors import UserError

REQUIRED = ("id", "video", "duration", "query", "moments")
ZERO_LENGTH_FLAG = "zero_length_window"  # a record whose true window has no length, kept for the official scorer
CORE_FIELDS = REQUIRED + ("source", "split")


class RecordError(UserError, ValueError):
    """A record that cannot be used; the message names the line/id and the problem."""


@dataclass
class Record:
    id: str
    video: str
    duration: float
    query: str
    moments: list[list[float]]
    source: str = ""
    split: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "video": self.video,
            "duration": self.duration,
            "query": self.query,
            "moments": [list(m) for m in self.moments],
            "source": self.source,
            "split": self.split,
        }
        d.update(self.extra)
        return d

    def video_path(self, root: str | os.PathLike | None = None) -> str:
        """The video's location; relative paths are resolved against `root` (the JSONL file's folder by default)."""
        if "://" in self.video or os.path.isabs(self.video) or root is None:
            return self.video
        return str(Path(root) / self.video)


@dataclass
class ValidationReport:
    """Counts and per-line problems of one validation pass; printed by every tool that reads records."""

    n_read: int = 0
    n_ok: int = 0
    errors: list[str] = field(default_factory=list)  # rejected records, "line N (id X): reason"
    fixes: Counter = field(default_factory=Counter)  # "clamped end to duration": count, ...
    fix_examples: list[str] = field(default_factory=list)

    @property
    def n_rejected(self) -> int:
        return len(self.errors)

    def add_fix(self, kind: str, where: str) -> None:
        self.fixes[kind] += 1
        if len(self.fix_examples) < 5:
            self.fix_examples.append(f"{where}: {kind}")

    def summary(self, max_lines: int = 10, full_report: str | os.PathLike | None = None) -> str:
        """Counts, fixes and the first `max_lines` rejections; with more, they all go to `full_report` (a text file,
        one rejection a line), which the summary names."""
        lines = [f"{self.n_read} read, {self.n_ok} valid, {self.n_rejected} rejected"]
        for kind, n in sorted(self.fixes.items()):
            lines.append(f"  fixed: {kind}: {n}")
        for e in self.errors[:max_lines]:
            lines.append(f"  rejected: {e}")
        if len(self.errors) > max_lines:
            more = f"  … and {len(self.errors) - max_lines} more rejected"
            if full_report is not None:
                Path(full_report).write_text("".join(e + "\n" for e in self.errors), encoding="utf-8")
                more += f"; every rejected line: {full_report}"
            lines.append(more)
        return "\n".join(lines)

    def merge(self, other: ValidationReport) -> None:
        self.n_read += other.n_read
        self.n_ok += other.n_ok
        self.errors += other.errors
        self.fixes.update(other.fixes)
        self.fix_examples += other.fix_examples[: max(0, 5 - len(self.fix_examples))]


def _where(line: int | None, rid: Any) -> str:
    parts = []
    if line is not None:
        parts.append(f"line {line}")
    if rid is not None:
        parts.append(f"id {rid!r}")
    return " ".join(parts) or "record"


def validate(
    d: dict[str, Any],
    *,
    line: int | None = None,
    report: ValidationReport | None = None,
    check_video: bool = False,
    video_root: str | os.PathLike | None = None,
    fix_reversed: bool = False,
) -> Record:
    """Check one raw dict against the schema; return a Record (with fixes applied) or raise RecordError."""
    report = report if report is not None else ValidationReport()
    where = _where(line, d.get("id") if isinstance(d, dict) else None)
    if not isinstance(d, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(d).__name__}")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise RecordError(f"{where}: missing field(s) {missing}; a record needs {list(REQUIRED)}")
    rid, video, query = d["id"], d["video"], d["query"]
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid:
        raise RecordError(f"{where}: 'id' must be a non-empty string, got {d['id']!r}")
    if not isinstance(video, str) or not video:
        raise RecordError(f"{where}: 'video' must be a non-empty path or URL string, got {video!r}")
    if not isinstance(query, str) or not query.strip():
        raise RecordError(f"{where}: 'query' is empty")
    try:
        duration = float(d["duration"])
    except (TypeError, ValueError):
        raise RecordError(f"{where}: 'duration' must be a number of seconds, got {d['duration']!r}") from None
    if not math.isfinite(duration) or duration <= 0:
        raise RecordError(f"{where}: 'duration' must be > 0 seconds, got {d['duration']!r}")
    if not isinstance(d["moments"], list):
        raise RecordError(f"{where}: 'moments' must be a list of [start, end] pairs, got {d['moments']!r}")
    moments: list[list[float]] = []
    for k, m in enumerate(d["moments"]):
        try:
            s, e = (float(x) for x in m)
            if isinstance(m, (str, bytes)) or not (math.isfinite(s) and math.isfinite(e)):
                raise ValueError
        except (TypeError, ValueError):
            raise RecordError(f"{where}: moment {k} must be a pair of finite numbers [start, end], got {m!r}") from None
        if s > e:
            if not fix_reversed:
                raise RecordError(
                    f"{where}: moment {k} {m!r} is reversed (start > end); fix the data or convert with --fix-reversed"
                )
            s, e = e, s
            report.add_fix("swapped reversed moment", where)
        if s == e and d.get(ZERO_LENGTH_FLAG) is not True:
            raise RecordError(f"{where}: moment {k} {m!r} has zero length")
        if s >= duration:
            raise RecordError(f"{where}: moment {k} {m!r} starts at or after the duration {duration:g}s")
        if (clamp_moment((s, e), duration) is None) if s < e else s < 0:
            raise RecordError(f"{where}: moment {k} {m!r} ends at or before 0 s: nothing of it is in the video")
        if s < 0:
            s = 0.0
            report.add_fix("clamped negative start to 0", where)
        if e > duration:
            e = duration
            report.add_fix("clamped end to duration", where)
        moments.append([s, e])
    rec = Record(
        id=rid,
        video=video,
        duration=duration,
        query=query.strip(),
        moments=moments,
        source=str(d.get("source", "")),
        split=str(d.get("split", "")),
        extra={k: v for k, v in d.items() if k not in CORE_FIELDS},
    )
    if check_video and "://" not in video:
        path = rec.video_path(video_root)
        if not os.path.exists(path):
            raise RecordError(f"{where}: video file not found: {path}")
    return rec


def validate_all(
    dicts: Iterable[tuple[int | None, dict[str, Any]]], **kwargs: Any
) -> tuple[list[Record], ValidationReport]:
    """Validate (line, dict) pairs; rejected ones are listed in the report, the rest returned."""
    report = ValidationReport()
    out = []
    for line, d in dicts:
        report.n_read += 1
        try:
            out.append(validate(d, line=line, report=report, **kwargs))
            report.n_ok += 1
        except RecordError as e:
            report.errors.append(str(e))
    _check_unique_ids(out, report)
    return out, report


def _check_unique_ids(records: list[Record], report: ValidationReport) -> None:
    seen = Counter(r.id for r in records)
    dup = sorted(k for k, n in seen.items() if n > 1)
    if dup:
        report.errors.append(f"duplicate ids (kept, but ids must be unique): {dup[:5]}{' …' if len(dup) > 5 else ''}")


def jsonl_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, problem) for each non-empty line of a JSONL file: the one way vtg splits JSONL.

    Lines end at "\\n" only: a JSON string may hold U+2028, U+2029 or U+0085 unescaped (vtg's own writer leaves them
    so), and splitting on them would drop a valid record and shift every later line number. A line that is not
    UTF-8 is that line's problem (text None); a byte-order mark before the first line is dropped.
    """
    for n, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield n, None, f"not UTF-8 ({e.reason} at byte {e.start} of the line)"
            continue
        yield n, (text.removeprefix("\ufeff") if n == 1 else text), None


def read_jsonl(
    path: str | os.PathLike, *, check_video: bool = False, fix_reversed: bool = False, strict: bool = False
) -> tuple[list[Record], ValidationReport]:
    """Read and validate a records file. Malformed JSON lines are rejected and reported like invalid records.

    `strict=True` raises RecordError on the first problem instead. Relative video paths resolve against the
    file's folder when `check_video` is on.
    """
    report = ValidationReport()
    records: list[Record] = []
    root = Path(path).parent
    for n, text, problem in jsonl_lines(path):
        report.n_read += 1
        try:
            if problem:
                raise RecordError(f"line {n}: {problem}")
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise RecordError(f"line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
            records.append(
                validate(d, line=n, report=report, check_video=check_video, video_root=root, fix_reversed=fix_reversed)
            )
            report.n_ok += 1
        except RecordError as e:
            if strict:
                raise RecordError(f"{path}: {e}") from None
            report.errors.append(str(e))
    _check_unique_ids(records, report)
    return records, report


def load_records(path: str | os.PathLike, **kwargs: Any) -> list[Record]:
    """Read a records file that must be entirely valid (training/eval inputs): any problem raises, naming the line."""
    records, report = read_jsonl(path, **kwargs)
    if report.errors:
        summary = report.summary(full_report=rejected_report_path(path))
        raise RecordError(f"{path}: {report.n_rejected} invalid record(s):\n{summary}")
    return records


def rejected_report_path(path: str | os.PathLike) -> Path:
    """Where the full list of a file's rejected lines goes: beside it, or in the temp folder if that is read-only."""
    beside = Path(f"{path}.rejected.txt")
    if os.access(beside.parent, os.W_OK):
        return beside
    import tempfile

    return Path(tempfile.gettempdir()) / f"{Path(path).name}.rejected.txt"


def write_jsonl(records: Iterable[Record | dict[str, Any]], path: str | os.PathLike) -> int:
    """Write records (or dicts) one JSON object a line; returns the count. Writes atomically via a temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict() if isinstance(r, Record) else r, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def to_hf_dataset(records: list[Record]):
    """An HF `datasets.Dataset` with one column per field (extras included); moments stay [[s, e], ...]."""
    import datasets

    rows = [r.to_dict() for r in records]
    # Dataset.from_list takes its columns from the FIRST row and silently drops other keys: use the union of all
    # rows' keys (missing ones as None) so mixed sources keep every extra.
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return datasets.Dataset.from_list([{k: row.get(k) for k in keys} for row in rows])


def from_hf_dataset(ds) -> tuple[list[Record], ValidationReport]:
    # None extras are the padding to_hf_dataset added for rows that lacked the column: drop them again.
    rows = ({k: v for k, v in row.items() if v is not None or k in REQUIRED} for row in ds)
    return validate_all(enumerate(rows))


def describe(records: list[Record]) -> str:
    """Summary of a record set: records, videos, moments per query, duration range, per source/split."""
    if not records:
        return "0 records"
    durs = [r.duration for r in records]
    nm = Counter(len(r.moments) for r in records)
    lens = [e - s for r in records for s, e in r.moments]
    lines = [
        f"{len(records)} records, {len({r.video for r in records})} videos",
        f"duration: {min(durs):.1f}–{max(durs):.1f}s (mean {sum(durs) / len(durs):.1f}s)",
        "moments per query: " + ", ".join(f"{k}: {v}" for k, v in sorted(nm.items())),
    ]
    if lens:
        lines.append(f"moment length: {min(lens):.1f}–{max(lens):.1f}s (mean {sum(lens) / len(lens):.1f}s)")
    splits = Counter((r.source, r.split) for r in records)
    lines.append("by source/split: " + ", ".join(f"{s or '-'}/{p or '-'}: {n}" for (s, p), n in sorted(splits.items())))
    return "\n".join(lines)
