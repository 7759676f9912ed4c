"""Adapters from the public data sets' official release files (read UNCHANGED) to vtg records
(docs/data.md#public-data-sets-vtg-data-convert).

Every entry a release holds becomes one raw record dict that goes through `vtg.data.records.validate`, so the same
rules apply everywhere: ends past the duration are clamped and counted, reversed/zero-length moments are rejected
(or swapped with `fix_reversed`), and each rejected entry is reported with its FILE and LINE (or JSON key).

Formats and what each assumes:
- charades-sta: `charades_sta_{train,test}.txt` lines `VIDEOID START END##sentence` plus the Charades CSV(s)
  (`Charades_v1_{train,test}.csv`, column `length`) for durations. A video id not in the CSVs rejects that line.
  Id `charades-sta/<split>/<line number, 6 digits>`.
- activitynet: `train.json`, `val_1.json`, `val_2.json`; split from the file name (val_1 and val_2 stay distinct).
  Id `activitynet/<split>/<video key>/<sentence index>`.
- tacos (2D-TAN release): `{"s13-d21.avi": {"timestamps": FRAME indices, "sentences", "fps", "num_frames"}}`;
  seconds = frame / fps, duration = num_frames / fps; the video keeps the release's file name.
- didemo: `{train,val,test}_data.json`; `times` are 5-s segment indices [first, last], one pair per annotator,
  a pair covers [5·first, 5·(last+1)] s. Consensus `mode` (default): the most frequent annotator pair, ties broken
  by the earliest start, then the shortest span; `all`: every distinct annotator pair is a moment (sorted).
  The release has no durations: unless `durations` (CSV `video,duration` or JSON `{video: seconds}`) is given, a
  video is assumed to last 5 s × num_segments (30 s for the usual 6 segments, 30 s when num_segments is absent);
  durations are capped at 30 s (DiDeMo videos were cut to 30 s). The report says how many records used the guess.
- qvhighlights: `highlight_{train,val,test}_release.jsonl`; moments = `relevant_windows`; `qid`, `vid`,
  `relevant_clip_ids`, `saliency_scores` kept. Test files carry no windows: those records get `moments: []` and
  `has_labels: False` (unlabelled, NOT "absent"); labelled records get `has_labels: True`.
- timerft (Time-R1 release): a JSON list (or JSONL) of `{"video", "duration", "timestamp": [s, e], "sentence"}`,
  and TVGBench's `{"path", "question", "answer": "13.4-28.1", "duration"}`. Clip offsets `video_start`/`video_end`
  (the files are already cut; timestamps are relative to the clip) are kept as `clip_start`/`clip_end`.
- ego4d-nlq: `nlq_{train,val}.json` and `nlq_test_unannotated.json`, v1 and v2 (one nested schema: videos → clips →
  annotations → language_queries). One record per language query, grounded in its CLIP (the benchmark's unit; the
  canonical clips release names the files `<clip_uid>.mp4`). Times: the query's `clip_start_sec`/`clip_end_sec`,
  seconds from the clip's start (its `video_start_sec`/`video_end_sec` are the same window in full-video time, not
  used). Duration: the clip's `video_end_sec − video_start_sec`, as the official VSLNet and 2D-TAN code computes it
  (the clip-level `clip_start_sec`/`clip_end_sec` are absent from some releases). Rejected: a query without `query`
  text (the official preparation skips those). A zero-length window (a known artifact, ~14 % of v1) is KEPT, flagged
  `zero_length_window: true` and counted in a note: the official evaluator scores those queries (always a miss), so
  the official table needs them; vtg's own metrics leave them out. `official_moments` keeps the window as the release
  writes it (before clamping), the truth the official table scores. A file whose name or `description` says
  "unannotated" gives `moments: []`, `has_labels: False` (unlabelled).
  Id `ego4d-nlq/<split>/<clip_uid>/<annotation_uid>/<query index>` (the official evaluator's key); `video_uid`,
  `clip_uid`, `annotation_uid`, `query_idx`, `template`, `nlq_version` kept, `clip_start`/`clip_end` = the clip's
  place in the full video.
- mad: `MAD_{train,val,test}.json` `{"<id>": {"movie", "sentence", "timestamps", "ext_timestamps",
  "movie_duration"}}`; moment = `ext_timestamps` (seconds from the movie's start): the window both official
  baselines (VLG-Net's loader, the zero-shot CLIP evaluation) train and score on; the AD narration's `timestamps` is
  kept as an extra. MAD releases features, not videos: the video is `<video_dir>/<movie><video_ext>`. Id
  `mad/<split>/<id>`.
- vue-tr: VUE-TR and VUE-TR-V2 ground truth (same shape): a JSON list of `{"query_id", "video_id", "duration",
  "query", "gt": [[s, e], ...], "task", "duration_category", "query_format", "query_modality"}`; moments = `gt`
  (several spans, seconds), the other keys kept, `gt` as written as `official_moments` (the official table's
  truth). A file name containing `v2` is VUE-TR-V2 (source `vue-tr-v2`), else source `vue-tr`; split `test` unless
  `--split`. Id `<source>/<split>/<query_id>`.
- jsonl: records already in the vtg schema, validated.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg.data.records import ZERO_LENGTH_FLAG, Record, RecordError, ValidationReport, jsonl_lines, validate
from vtg.data.video import VIDEO_EXTS
from vtg.errors import UserError

DIDEMO_SEGMENT_S = 5.0
DIDEMO_MAX_S = 30.0
_DIDEMO_SEGMENTS = int(DIDEMO_MAX_S // DIDEMO_SEGMENT_S)


@dataclass
class ConvertOptions:
    video_dir: str = ""
    video_ext: str = ".mp4"
    split: str | None = None
    didemo_consensus: str = "mode"
    fix_reversed: bool = False
    check_video: bool = False
    durations: str | None = None  # DiDeMo only: CSV/JSON of source durations

    def __post_init__(self) -> None:
        if self.didemo_consensus not in ("mode", "all"):
            raise UserError(f"didemo consensus must be 'mode' or 'all', got {self.didemo_consensus!r}")
        if self.video_ext and not self.video_ext.startswith("."):
            raise UserError(f"--video-ext must start with a dot (e.g. .mp4), got {self.video_ext!r}")
        if self.split is not None and not self.split.strip():
            raise UserError("--split must be a non-empty name (or leave it out to guess it from the file name)")


@dataclass
class Raw:
    """One release entry turned into a record dict, or the reason it could not be."""

    where: str  # the file, plus the JSON key/index when there is no line number
    line: int | None
    record: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class ConversionReport(ValidationReport):
    """A ValidationReport plus notes on assumptions the conversion made (printed in the summary)."""

    notes: list[str] = field(default_factory=list)

    def summary(self, max_lines: int = 10, full_report=None) -> str:
        return "\n".join([super().summary(max_lines, full_report)] + [f"  note: {n}" for n in self.notes])


Converter = Callable[[list[Path], ConvertOptions, ConversionReport], Iterator[Raw]]


@dataclass(frozen=True)
class FormatSpec:
    help: str
    convert: Converter


# ---------------------------------------------------------------- shared helpers


def _guess_split(path: Path, opts: ConvertOptions) -> str:
    if opts.split:
        return opts.split
    stem = path.stem.lower()
    m = re.search(r"(?<![a-z0-9])(val_1|val_2|train|val|test)(?![a-z0-9])", stem)
    return m.group(1) if m else stem


def _video(opts: ConvertOptions, name: str, *, keep_name: bool = False) -> str:
    """`video_dir/<name><ext>`; a release file name that already has a video extension is kept as is."""
    if not (keep_name and Path(name).suffix.lower() in VIDEO_EXTS):
        name = name + opts.video_ext
    return os.path.join(opts.video_dir, name)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: some releases carry a BOM
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None


def _load_json(path: Path, expected: str) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); expected {expected}"
        ) from None


def _expect_dict_of(path: Path, data: Any, keys: tuple[str, ...], expected: str) -> dict:
    """The release must be an object of objects carrying `keys`; anything else is the wrong file."""
    first = next(iter(data.values()), None) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(first, dict) or not all(k in first for k in keys):
        got = type(data).__name__ if not isinstance(data, dict) else f"an object whose first value is {first!r:.80}"
        raise UserError(f"{path}: expected {expected}; got {got}")
    return data


def _jsonl_lines(path: Path, expected: str) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed object or None, problem) for each non-empty line of a JSONL file."""
    if _read_text(path).lstrip().startswith("["):
        raise UserError(f"{path}: this is a JSON array; expected JSONL ({expected}, one object a line)")
    for n, line, problem in jsonl_lines(path):
        if problem:
            yield n, None, problem
            continue
        try:
            yield n, json.loads(line), None
        except json.JSONDecodeError as e:
            yield n, None, f"not valid JSON ({e.msg} at column {e.colno})"


def _number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and not isinstance(x, bool) else None


def _mismatch(entry: dict, a: str, b: str) -> str | None:
    if not isinstance(entry.get(a), list) or not isinstance(entry.get(b), list):
        return f"'{a}' and '{b}' must be lists"
    if len(entry[a]) != len(entry[b]):
        return f"{len(entry[a])} {a} but {len(entry[b])} {b}: they must pair up"
    return None


# ---------------------------------------------------------------- charades-sta

_CHARADES_EXPECTED = (
    "charades_sta_{train,test}.txt (lines 'VIDEOID START END##sentence') and "
    "Charades_v1_{train,test}.csv (for the 'length' column)"
)


def _charades_durations(path: Path) -> tuple[dict[str, float], dict[str, str]]:
    durations: dict[str, float] = {}
    bad: dict[str, str] = {}
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    cols = reader.fieldnames or []
    if "id" not in cols or "length" not in cols:
        raise UserError(f"{path}: expected the Charades CSV with columns id,…,length; found columns {cols}")
    for row in reader:
        vid, length = (row.get("id") or "").strip(), row.get("length")
        v = _number(length)
        if v is None:
            bad[vid] = f"{path.name} line {reader.line_num}: length {length!r} is not a number"
        else:
            durations[vid] = v
    return durations, bad


def _parse_charades_line(text: str) -> tuple[str, float, float, str] | str:
    head, sep, sentence = text.partition("##")
    parts = head.split()
    if not sep or len(parts) != 3:
        return f"expected 'VIDEOID START END##sentence', got {text[:80]!r}"
    start, end = _number(parts[1]), _number(parts[2])
    if start is None or end is None:
        return f"START and END must be numbers of seconds, got {parts[1]!r} {parts[2]!r}"
    return parts[0], start, end, sentence.strip()


def convert_charades(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    csvs = [p for p in files if p.suffix.lower() == ".csv"]
    txts = [p for p in files if p.suffix.lower() != ".csv"]
    if not csvs or not txts:
        raise UserError(f"charades-sta needs {_CHARADES_EXPECTED}; got {[str(p) for p in files]}")
    durations: dict[str, float] = {}
    bad: dict[str, str] = {}
    for p in csvs:
        d, b = _charades_durations(p)
        durations.update(d)
        bad.update(b)
    for path in txts:
        text = _read_text(path)
        if text.lstrip()[:1] in ("{", "["):
            raise UserError(f"{path}: this is JSON; charades-sta expects {_CHARADES_EXPECTED}")
        split = _guess_split(path, opts)
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parsed = _parse_charades_line(line)
            if isinstance(parsed, str):
                yield Raw(str(path), n, problem=parsed)
                continue
            vid, start, end, sentence = parsed
            if vid not in durations:
                why = bad.get(vid) or f"not in the Charades CSV(s) {[p.name for p in csvs]}"
                yield Raw(str(path), n, problem=f"video id {vid!r}: no duration ({why})")
                continue
            yield Raw(
                str(path),
                n,
                {
                    "id": f"charades-sta/{split}/{n:06d}",
                    "video": _video(opts, vid),
                    "duration": durations[vid],
                    "query": sentence,
                    "moments": [[start, end]],
                    "source": "charades-sta",
                    "split": split,
                    "vid": vid,
                },
            )


# ---------------------------------------------------------------- activitynet

_ANET_EXPECTED = 'ActivityNet Captions JSON {"v_id": {"duration", "timestamps", "sentences"}}'


def convert_activitynet(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    for path in files:
        data = _expect_dict_of(path, _load_json(path, _ANET_EXPECTED), ("timestamps", "sentences"), _ANET_EXPECTED)
        split = _guess_split(path, opts)
        for vid, entry in data.items():
            where = f"{path} key {vid!r}"
            problem = _mismatch(entry, "timestamps", "sentences") if isinstance(entry, dict) else "not an object"
            if problem:
                yield Raw(where, None, problem=problem)
                continue
            for i, (ts, sentence) in enumerate(zip(entry["timestamps"], entry["sentences"])):
                yield Raw(
                    f"{where} sentence {i}",
                    None,
                    {
                        "id": f"activitynet/{split}/{vid}/{i}",
                        "video": _video(opts, vid),
                        "duration": entry.get("duration"),
                        "query": str(sentence).strip(),
                        "moments": [ts],
                        "source": "activitynet",
                        "split": split,
                        "vid": vid,
                    },
                )


# ---------------------------------------------------------------- timelens-bench

_TIMELENS_EXPECTED = 'TimeLens-Bench JSON {"video_id": {"duration", "spans": [[s, e], ...], "queries": [...]}}'


def convert_timelens(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    """charades-timelens.json, activitynet-timelens.json, qvhighlights-timelens.json (TencentARC/TimeLens-Bench):
    the i-th query of a video pairs with its i-th span, one span each; the file's name is the benchmark."""
    for path in files:
        data = _expect_dict_of(path, _load_json(path, _TIMELENS_EXPECTED), ("spans", "queries"), _TIMELENS_EXPECTED)
        bench, split = path.stem.lower(), opts.split or "test"
        for vid, entry in data.items():
            where = f"{path} key {vid!r}"
            problem = _mismatch(entry, "spans", "queries") if isinstance(entry, dict) else "not an object"
            if problem:
                yield Raw(where, None, problem=problem)
                continue
            for i, (span, query) in enumerate(zip(entry["spans"], entry["queries"])):
                yield Raw(
                    f"{where} query {i}",
                    None,
                    {
                        "id": f"{bench}/{vid}/{i}",
                        "video": _video(opts, vid),
                        "duration": entry.get("duration"),
                        "query": str(query).strip(),
                        "moments": [span],
                        "source": bench,
                        "split": split,
                        "vid": vid,
                    },
                )


# ---------------------------------------------------------------- tacos

_TACOS_EXPECTED = 'the 2D-TAN TACoS JSON {"s13-d21.avi": {"timestamps" (frames), "sentences", "fps", "num_frames"}}'


def convert_tacos(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    for path in files:
        data = _expect_dict_of(
            path, _load_json(path, _TACOS_EXPECTED), ("timestamps", "fps", "num_frames"), _TACOS_EXPECTED
        )
        split = _guess_split(path, opts)
        for vid, entry in data.items():
            where = f"{path} key {vid!r}"
            if not isinstance(entry, dict):
                yield Raw(where, None, problem=f"expected an object, got {type(entry).__name__}")
                continue
            fps, frames = _number(entry.get("fps")), _number(entry.get("num_frames"))
            problem = _mismatch(entry, "timestamps", "sentences")
            if not problem and (fps is None or fps <= 0 or frames is None):
                problem = f"fps {entry.get('fps')!r} must be > 0 and num_frames a number ({entry.get('num_frames')!r})"
            if problem:
                yield Raw(where, None, problem=problem)
                continue
            for i, (ts, sentence) in enumerate(zip(entry["timestamps"], entry["sentences"])):
                pair = [_number(x) for x in ts] if isinstance(ts, list) else []
                if len(pair) != 2 or None in pair:
                    yield Raw(
                        f"{where} sentence {i}", None, problem=f"timestamp must be [start_frame, end_frame], got {ts!r}"
                    )
                    continue
                yield Raw(
                    f"{where} sentence {i}",
                    None,
                    {
                        "id": f"tacos/{split}/{Path(vid).stem}/{i}",
                        "video": _video(opts, vid, keep_name=True),
                        "duration": frames / fps,
                        "query": str(sentence).strip(),
                        "moments": [[pair[0] / fps, pair[1] / fps]],
                        "source": "tacos",
                        "split": split,
                        "vid": vid,
                        "fps": fps,
                        "frames": ts,
                    },
                )


# ---------------------------------------------------------------- didemo

_DIDEMO_EXPECTED = 'DiDeMo {train,val,test}_data.json: a list of {"video", "description", "times", "annotation_id"}'


def _load_durations(path: str) -> dict[str, float]:
    """`video,duration` CSV (also `id`/`vid` and `length` column names) or a JSON object {video: seconds}."""
    p = _existing(path)
    if p.suffix.lower() == ".json":
        data = _load_json(p, "a JSON object {video: seconds}")
        if not isinstance(data, dict):
            raise UserError(f"{p}: expected a JSON object {{video: seconds}}, got a {type(data).__name__}")
        items = data.items()
    else:
        reader = csv.DictReader(io.StringIO(_read_text(p), newline=""))
        cols = reader.fieldnames or []
        name = next((c for c in ("video", "id", "vid") if c in cols), None)
        dur = next((c for c in ("duration", "length") if c in cols), None)
        if not name or not dur:
            raise UserError(f"{p}: expected a CSV with columns video,duration; found columns {cols}")
        items = [(r[name], r[dur]) for r in reader]
    out = {}
    for k, v in items:
        sec = _number(v)
        if sec is None or sec <= 0:
            raise UserError(f"{p}: duration of {k!r} must be a positive number of seconds, got {v!r}")
        out[str(k).strip()] = sec
    return out


def _didemo_pairs(
    times: Any, opts: ConvertOptions, report: ConversionReport, where: str
) -> list[tuple[int, int]] | str:
    if not isinstance(times, list) or not times:
        return f"'times' must be a non-empty list of [first, last] segment pairs, got {times!r}"
    pairs = []
    for k, t in enumerate(times):
        ok = isinstance(t, list) and len(t) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in t)
        if not ok or min(t) < 0 or max(t) >= _DIDEMO_SEGMENTS:
            return f"annotator pair {k} must be two segment indices in 0..{_DIDEMO_SEGMENTS - 1}, got {t!r}"
        first, last = t
        if first > last:
            if not opts.fix_reversed:
                return f"annotator pair {k} {t!r} is reversed (first > last); convert with --fix-reversed to swap"
            first, last = last, first
            report.add_fix("swapped reversed DiDeMo segment pair", where)
        pairs.append((first, last))
    return pairs


def didemo_consensus(pairs: list[tuple[int, int]], rule: str = "mode") -> list[tuple[int, int]]:
    """`mode`: the most frequent annotator pair; ties → earliest first segment, then shortest span.
    `all`: every distinct pair, sorted by (first, last)."""
    counts = Counter(pairs)
    if rule == "all":
        return sorted(counts)
    best = min(counts.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] - kv[0][0]))
    return [best[0]]


def _didemo_duration(entry: dict, durations: dict[str, float] | None) -> tuple[float, bool]:
    """(duration, guessed). Capped at 30 s; guessed from num_segments when no durations file names the video."""
    if durations is not None:
        video = str(entry.get("video", ""))
        d = durations.get(video, durations.get(Path(video).stem))
        if d is not None:
            return min(DIDEMO_MAX_S, d), False
    n = entry.get("num_segments")
    segs = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 6
    return min(DIDEMO_MAX_S, DIDEMO_SEGMENT_S * segs), True


def convert_didemo(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    durations = _load_durations(opts.durations) if opts.durations else None
    guessed = 0
    for path in files:
        data = _load_json(path, _DIDEMO_EXPECTED)
        if not isinstance(data, list) or (data and not (isinstance(data[0], dict) and "times" in data[0])):
            raise UserError(f"{path}: expected {_DIDEMO_EXPECTED}; got {type(data).__name__}")
        split = _guess_split(path, opts)
        for i, entry in enumerate(data):
            aid = entry.get("annotation_id", i) if isinstance(entry, dict) else i
            where = f"{path} index {i} (annotation_id {aid})"
            if not isinstance(entry, dict) or not isinstance(entry.get("video"), str):
                yield Raw(where, None, problem="expected an object with a 'video' file name")
                continue
            pairs = _didemo_pairs(entry.get("times"), opts, report, where)
            if isinstance(pairs, str):
                yield Raw(where, None, problem=pairs)
                continue
            duration, was_guessed = _didemo_duration(entry, durations)
            guessed += was_guessed
            chosen = didemo_consensus(pairs, opts.didemo_consensus)
            yield Raw(
                where,
                None,
                {
                    "id": f"didemo/{split}/{aid}",
                    "video": _video(opts, entry["video"], keep_name=True),
                    "duration": duration,
                    "query": str(entry.get("description", "")),
                    "moments": [[DIDEMO_SEGMENT_S * f, DIDEMO_SEGMENT_S * (last + 1)] for f, last in chosen],
                    "source": "didemo",
                    "split": split,
                    "annotation_id": aid,
                    "times": entry["times"],
                    "num_segments": entry.get("num_segments"),
                    "didemo_consensus": opts.didemo_consensus,
                },
            )
    if guessed:
        report.notes.append(
            f"DiDeMo has no durations: {guessed} record(s) assume 5 s × num_segments "
            "(30 s for 6 segments); pass --durations (CSV video,duration or JSON) for real ones"
        )


# ---------------------------------------------------------------- qvhighlights

_QVH_EXPECTED = 'QVHighlights highlight_{train,val,test}_release.jsonl lines {"qid", "query", "duration", "vid", ...}'


def convert_qvhighlights(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    unlabelled = 0
    for path in files:
        split = _guess_split(path, opts)
        for n, d, problem in _jsonl_lines(path, _QVH_EXPECTED):
            if problem is None and not (isinstance(d, dict) and "qid" in d and "vid" in d):
                problem = f"expected an object with 'qid' and 'vid' ({_QVH_EXPECTED})"
            if problem:
                yield Raw(str(path), n, problem=problem)
                continue
            labelled = "relevant_windows" in d
            unlabelled += not labelled
            yield Raw(
                str(path),
                n,
                {
                    "id": f"qvhighlights/{split}/{d['qid']}",
                    "video": _video(opts, str(d["vid"])),
                    "duration": d.get("duration"),
                    "query": d.get("query"),
                    "moments": d["relevant_windows"] if labelled else [],
                    "source": "qvhighlights",
                    "split": split,
                    "qid": d["qid"],
                    "vid": d["vid"],
                    "has_labels": labelled,
                    # same columns labelled or not, so an HF dataset of mixed files keeps every field
                    "relevant_clip_ids": d.get("relevant_clip_ids", []),
                    "saliency_scores": d.get("saliency_scores", []),
                },
            )
    if unlabelled:
        report.notes.append(
            f"QVHighlights: {unlabelled} record(s) have no labels (test release): moments [] with "
            "has_labels=False means unlabelled, not absent; use them for submissions, not scoring"
        )


# ---------------------------------------------------------------- timerft / tvgbench

_TIMERFT_EXPECTED = (
    'a Time-R1 JSON list (or JSONL) of {"video", "duration", "timestamp": [s, e], "sentence"} or '
    'TVGBench {"path", "question", "answer": "s-e", "duration"}'
)
_ANSWER_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")
# kept as extras; video_start/video_end are renamed: the files are already cut, timestamps are clip-relative
_TIMERFT_EXTRAS = {
    "qid": "qid",
    "difficulty": "difficulty",
    "dataset_name": "dataset_name",
    "qsemtype": "qsemtype",
    "question_type": "question_type",
    "video_start": "clip_start",
    "video_end": "clip_end",
}


def _timerft_entries(path: Path) -> Iterator[tuple[str, int | None, Any, str | None]]:
    text = _read_text(path)
    if text.lstrip().startswith("["):
        data = _load_json(path, _TIMERFT_EXPECTED)
        for i, d in enumerate(data):
            yield f"{path} index {i}", None, d, None
    else:
        for n, d, problem in _jsonl_lines(path, _TIMERFT_EXPECTED):
            yield str(path), n, d, problem


def _timerft_moment(d: dict) -> tuple[Any, str | None]:
    """(moment, problem): TimeRFT's `timestamp` pair (checked by validate), or TVGBench's 'START-END' answer."""
    if "timestamp" in d:
        return d["timestamp"], None
    m = _ANSWER_RE.match(str(d.get("answer", "")))
    if not m:
        return None, f"'answer' must be 'START-END' seconds like '13.4-28.1', got {d.get('answer')!r}"
    return [float(m.group(1)), float(m.group(2))], None


def convert_timerft(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    for path in files:
        split = opts.split or ("test" if "tvgbench" in path.stem.lower() else _guess_split(path, opts))
        for k, (where, n, d, problem) in enumerate(_timerft_entries(path)):
            video = d.get("video", d.get("path")) if isinstance(d, dict) else None
            if problem is None and not isinstance(video, str):
                problem = f"expected {_TIMERFT_EXPECTED}"
            if problem is None:
                moment, problem = _timerft_moment(d)
            if problem:
                yield Raw(where, n, problem=problem)
                continue
            rec = {
                "id": f"timerft/{split}/{(n if n is not None else k):06d}",
                "video": os.path.join(opts.video_dir, os.path.basename(video)) if opts.video_dir else video,
                "duration": d.get("duration"),
                "query": d.get("sentence", d.get("question")),
                "moments": [moment],
                "source": "timerft",
                "split": split,
            }
            rec.update({new: d[old] for old, new in _TIMERFT_EXTRAS.items() if d.get(old) is not None})
            yield Raw(where, n, rec)


# ---------------------------------------------------------------- ego4d-nlq

_NLQ_EXPECTED = (
    'Ego4D NLQ nlq_{train,val,test_unannotated}.json: {"version", "videos": [{"video_uid", "clips": [{"clip_uid", '
    '"video_start_sec", "video_end_sec", "annotations": [{"annotation_uid", "language_queries": [...]}]}]}]}'
)
# The README of EGO4D/episodic-memory: ~14% of NLQ windows are (near) zero-length, an annotation artifact. The
# official evaluator scores them (never a hit), so they are kept, flagged (records.ZERO_LENGTH_FLAG).


def _nlq_videos(path: Path) -> tuple[dict, list]:
    data = _load_json(path, _NLQ_EXPECTED)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, list):
        got = f"an object with keys {sorted(data)[:6]}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise UserError(f"{path}: expected {_NLQ_EXPECTED}; got {got}")
    return data, videos


def _nlq_walk(path: Path, videos: list) -> Iterator[tuple[str, tuple | None, str | None]]:
    """(JSON path, (video, clip, annotation, query index, query), problem) for every language query; a malformed
    video, clip or annotation is one problem at its own level."""
    for i, video in enumerate(videos):
        vwhere = f"{path} videos[{i}]"
        if not isinstance(video, dict) or not isinstance(video.get("clips"), list):
            yield vwhere, None, "expected an object with 'video_uid' and a 'clips' list"
            continue
        for j, clip in enumerate(video["clips"]):
            cwhere = f"{vwhere}.clips[{j}]"
            if not isinstance(clip, dict) or not clip.get("clip_uid") or not isinstance(clip.get("annotations"), list):
                yield cwhere, None, "expected an object with 'clip_uid' and an 'annotations' list"
                continue
            for k, ann in enumerate(clip["annotations"]):
                awhere = f"{cwhere}.annotations[{k}]"
                if not (
                    isinstance(ann, dict)
                    and ann.get("annotation_uid")
                    and isinstance(ann.get("language_queries"), list)
                ):
                    yield awhere, None, "expected an object with 'annotation_uid' and a 'language_queries' list"
                    continue
                for n, q in enumerate(ann["language_queries"]):
                    yield f"{awhere}.language_queries[{n}]", (video, clip, ann, n, q), None


def _nlq_moment(q: dict) -> tuple[list | None, str | None]:
    """The query's window in seconds from the CLIP's start (what the canonical clip file and the official evaluator
    use); `video_start_sec`/`video_end_sec` are the same window in the full video's time."""
    s, e = q.get("clip_start_sec"), q.get("clip_end_sec")
    if s is None or e is None:
        return None, "no clip_start_sec/clip_end_sec: a query of a labelled file needs its response window"
    return [s, e], None


def _is_zero_length(moment: list) -> bool:
    return _number(moment[0]) is not None and _number(moment[0]) == _number(moment[1])


def _nlq_record(ctx: tuple, split: str, labelled: bool, opts: ConvertOptions) -> tuple[dict | None, str | None]:
    video, clip, ann, n, q = ctx
    if not isinstance(q, dict):
        return None, f"expected a language query object, got {type(q).__name__}"
    text = q.get("query")
    if not isinstance(text, str) or not text.strip():
        return None, "no 'query' text (missing or empty; the official VSLNet preparation skips these too)"
    start, end = _number(clip.get("video_start_sec")), _number(clip.get("video_end_sec"))
    if start is None or end is None:
        return None, "the clip has no numeric video_start_sec/video_end_sec to take its duration from"
    moments: list = []
    if labelled:
        moment, problem = _nlq_moment(q)
        if problem:
            return None, problem
        moments = [moment]
    rec = {
        "id": f"ego4d-nlq/{split}/{clip['clip_uid']}/{ann['annotation_uid']}/{n}",
        "video": _video(opts, str(clip["clip_uid"])),
        "duration": end - start,  # the clip's length; the official baselines (VSLNet, 2D-TAN) compute it so
        "query": text,
        "moments": moments,
        "source": "ego4d-nlq",
        "split": split,
        "video_uid": video.get("video_uid"),
        "clip_uid": clip["clip_uid"],
        "annotation_uid": ann["annotation_uid"],
        "query_idx": n,  # with clip_uid and annotation_uid: the key the official evaluator and the challenge use
        "clip_start": start,  # where the clip lies in the full (canonical) video
        "clip_end": end,
        "has_labels": labelled,
    }
    if moments:
        rec["official_moments"] = [list(m) for m in moments]  # as written: the official table's truth
        if _is_zero_length(moments[0]):
            rec[ZERO_LENGTH_FLAG] = True
    rec.update({k: q[k] for k in ("template",) if q.get(k) is not None})
    return rec, None


def convert_ego4d_nlq(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    unlabelled = zero = 0
    for path in files:
        data, videos = _nlq_videos(path)
        split = _guess_split(path, opts)
        # nlq_test_unannotated.json carries queries without windows (scored by the challenge server only)
        labelled = "unannotated" not in f"{path.stem} {data.get('description', '')}".lower()
        for where, ctx, problem in _nlq_walk(path, videos):
            rec = None
            if ctx is not None:
                rec, problem = _nlq_record(ctx, split, labelled, opts)
            if problem:
                yield Raw(where, None, problem=problem)
                continue
            zero += rec.get(ZERO_LENGTH_FLAG, False)
            if data.get("version") is not None:
                rec["nlq_version"] = str(data["version"])
            unlabelled += not labelled
            yield Raw(where, None, rec)
    if unlabelled:
        report.notes.append(
            f"Ego4D-NLQ: {unlabelled} record(s) come from an unannotated (test) file: moments [] with "
            "has_labels=False means unlabelled, not absent"
        )
    if zero:
        report.notes.append(
            f"Ego4D-NLQ: {zero} zero-length response window(s) kept, flagged {ZERO_LENGTH_FLAG}=true (a known "
            "annotation artifact): the official table scores them, vtg's own metrics leave them out; do not train "
            "on them"
        )


# ---------------------------------------------------------------- mad

_MAD_EXPECTED = (
    'MAD annotations MAD_{train,val,test}.json: {"<id>": {"movie", "sentence", "timestamps", "ext_timestamps", '
    '"movie_duration"}}'
)


def convert_mad(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    for path in files:
        data = _expect_dict_of(path, _load_json(path, _MAD_EXPECTED), ("movie", "sentence"), _MAD_EXPECTED)
        split = _guess_split(path, opts)
        for key, entry in data.items():
            where = f"{path} key {key!r}"
            if not isinstance(entry, dict) or not isinstance(entry.get("movie"), str) or not entry["movie"]:
                yield Raw(where, None, problem="expected an object with a 'movie' name")
                continue
            if "ext_timestamps" not in entry:
                yield Raw(where, None, problem="no 'ext_timestamps' (the window MAD's own evaluation scores against)")
                continue
            rec = {
                "id": f"mad/{split}/{key}",
                "video": _video(opts, entry["movie"]),  # MAD ships features only: the movie file is the user's
                "duration": entry.get("movie_duration"),
                "query": entry.get("sentence"),
                # ext_timestamps, not timestamps: both official baselines (VLG-Net, zero-shot CLIP) train and score
                # on it; seconds from the movie's start
                "moments": [entry["ext_timestamps"]],
                "source": "mad",
                "split": split,
                "movie": entry["movie"],
            }
            if entry.get("timestamps") is not None:
                rec["timestamps"] = entry["timestamps"]
            yield Raw(where, None, rec)


# ---------------------------------------------------------------- vue-tr

_VUE_EXPECTED = (
    "VUE-TR ground truth (VUE-TR_ground_truth.json or VUE-TRv2_ground_truth.json): a JSON list of "
    '{"query_id", "video_id", "duration", "query", "gt": [[s, e], ...], "duration_category", ...}'
)
_VUE_EXTRAS = ("query_id", "video_id", "task", "duration_category", "query_format", "query_modality")


def _vue_list(path: Path) -> list:
    data = _load_json(path, _VUE_EXPECTED)
    if not isinstance(data, list) or (data and not (isinstance(data[0], dict) and "gt" in data[0])):
        first = data[0] if isinstance(data, list) and data else data
        raise UserError(f"{path}: expected {_VUE_EXPECTED}; got {first!r:.100}")
    return data


def convert_vue_tr(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    for path in files:
        data = _vue_list(path)
        # one format: VUE-TR and VUE-TR-V2 share the shape; the file name tells them apart (ids must not collide)
        source = "vue-tr-v2" if "v2" in path.stem.lower() else "vue-tr"
        split = opts.split or "test"  # both are test-only benchmarks
        for i, d in enumerate(data):
            qid = d.get("query_id") if isinstance(d, dict) else None
            where = f"{path} index {i} (query_id {qid})"
            if qid is None or not isinstance(d.get("video_id"), str) or not d["video_id"]:
                yield Raw(where, None, problem="expected an object with 'query_id', 'video_id' and 'gt'")
                continue
            if not isinstance(d.get("gt"), list):
                yield Raw(where, None, problem=f"'gt' must be a list of [start, end] spans, got {d.get('gt')!r}")
                continue
            rec = {
                "id": f"{source}/{split}/{qid}",
                "video": _video(opts, d["video_id"]),
                "duration": d.get("duration"),
                "query": d.get("query"),
                "moments": d["gt"],  # several spans, seconds; [] would mean "does not happen" (IoU 1 for no answer)
                "source": source,
                "split": split,
                "official_moments": d["gt"],  # as written (no clamping): the official table's truth
            }
            rec.update({k: d[k] for k in _VUE_EXTRAS if d.get(k) is not None})
            yield Raw(where, None, rec)


# ---------------------------------------------------------------- jsonl (our own records)


def convert_jsonl(files: list[Path], opts: ConvertOptions, report: ConversionReport) -> Iterator[Raw]:
    for path in files:
        for n, d, problem in _jsonl_lines(path, "vtg records"):
            if problem is None and not isinstance(d, dict):
                problem = f"expected a JSON object, got {type(d).__name__}"
            if problem:
                yield Raw(str(path), n, problem=problem)
                continue
            if opts.split:
                d["split"] = opts.split
            if opts.video_dir and isinstance(d.get("video"), str) and "://" not in d["video"]:
                d["video"] = os.path.join(opts.video_dir, d["video"])
            yield Raw(str(path), n, d)


FORMATS: dict[str, FormatSpec] = {
    "charades-sta": FormatSpec("charades_sta_*.txt + Charades_v1_*.csv", convert_charades),
    "activitynet": FormatSpec("ActivityNet Captions train.json / val_1.json / val_2.json", convert_activitynet),
    "tacos": FormatSpec("2D-TAN TACoS {train,val,test}.json, frame indices", convert_tacos),
    "didemo": FormatSpec("{train,val,test}_data.json; --didemo-consensus mode|all", convert_didemo),
    "qvhighlights": FormatSpec("highlight_{train,val,test}_release.jsonl", convert_qvhighlights),
    "timerft": FormatSpec("Time-R1 TimeRFT train JSON / TVGBench JSON", convert_timerft),
    "timelens-bench": FormatSpec("TimeLens-Bench {charades,activitynet,qvhighlights}-timelens.json", convert_timelens),
    "ego4d-nlq": FormatSpec("Ego4D nlq_{train,val,test_unannotated}.json (v1/v2), per clip", convert_ego4d_nlq),
    "mad": FormatSpec("MAD_{train,val,test}.json; videos are <movie><ext> (MAD ships features only)", convert_mad),
    "vue-tr": FormatSpec("VUE-TR / VUE-TR-V2 ground truth JSON, several spans per query", convert_vue_tr),
    "jsonl": FormatSpec("vtg records JSONL, validated", convert_jsonl),
}


def get_format(name: str) -> FormatSpec:
    if name not in FORMATS:
        raise UserError(f"unknown format {name!r}; valid formats: {', '.join(FORMATS)}")
    return FORMATS[name]


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: file not found" if not p.exists() else f"{p}: not a file")
    return p


def convert_files(
    fmt: str,
    files: list[str | os.PathLike],
    *,
    video_dir: str = "",
    video_ext: str = ".mp4",
    split: str | None = None,
    didemo_consensus: str = "mode",
    fix_reversed: bool = False,
    check_video: bool = False,
    durations: str | None = None,
    video_root: str | os.PathLike | None = None,
) -> tuple[list[Record], ConversionReport]:
    """Convert official release files of `fmt` to validated records.

    Bad entries are listed in the report (file and line or JSON key); the rest are converted. Raises UserError for
    an unknown format, a missing file, or a file that is not what the format expects. `video_root`: the folder
    relative video paths resolve against for `check_video` (the output file's folder; default: the working dir).
    """
    spec = get_format(fmt)
    if not files:
        raise UserError(f"no input files given for {fmt!r} ({spec.help})")
    paths = [_existing(f) for f in files]
    opts = ConvertOptions(
        video_dir=video_dir,
        video_ext=video_ext,
        split=split,
        didemo_consensus=didemo_consensus,
        fix_reversed=fix_reversed,
        check_video=check_video,
        durations=durations,
    )
    report = ConversionReport()
    records: list[Record] = []
    for raw in spec.convert(paths, opts, report):
        report.n_read += 1
        try:
            if raw.problem is not None:
                raise RecordError(f"line {raw.line}: {raw.problem}" if raw.line is not None else raw.problem)
            records.append(
                validate(
                    raw.record,
                    line=raw.line,
                    report=report,
                    check_video=check_video,
                    video_root=video_root,
                    fix_reversed=fix_reversed,
                )
            )
            report.n_ok += 1
        except RecordError as e:
            report.errors.append(f"{raw.where}: {e}")
    dup = sorted(k for k, n in Counter(r.id for r in records).items() if n > 1)
    if dup:
        report.errors.append(f"duplicate ids (the same file given twice?): {dup[:5]}{' …' if len(dup) > 5 else ''}")
    return records, report
