"""predictions.jsonl: one line per query, appended as the job goes, so a killed job resumes where it stopped.

Line: {"id", "qid"? (QVHighlights), "text" (raw model output, null on failure), "moments" (parsed, as written),
"parse": "strict" | "lenient" | "not_present" | "failed" | "error", "error" (message or null),
"latency_s", "decode_s", and "parser" when the model's profile reads answers with its own parser}. Scoring re-parses
`text` with the grammar (that parser, if named); `moments`/`parse` are for people reading it.

A kill can leave a half-written last line: readers ignore it (and say so) and `repair_tail` cuts it off before the
job appends again. Any other malformed line is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vtg.data.grammar import moments_as_lists, parse_with
from vtg.errors import UserError


def parse_status(text: str | None, error: str | None = None, parser: str = "vtg") -> str:
    if error:
        return "error"
    p = parse_with(parser, text)
    if not p.ok:
        return "failed"
    if p.strict:
        return "strict"
    return "not_present" if p.not_present else "lenient"


def make_line(
    rid: str,
    text: str | None,
    *,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
    parser: str = "vtg",
    **timing: float,
) -> dict[str, Any]:
    """A predictions line; `parser` (grammar.PARSERS, the profile's) is recorded when it is not vtg's, so scoring
    reads the text as the model's own evaluation does."""
    p = parse_with(parser, text)
    line = {
        "id": rid,
        **(extra or {}),
        "text": text,
        "moments": moments_as_lists(p.moments),
        "parse": parse_status(text, error, parser),
        "error": error,
        **({"parser": parser} if parser != "vtg" else {}),
    }
    line.update({k: round(v, 4) for k, v in timing.items()})
    return line


def json_lines(path: str | os.PathLike, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of a JSONL file written line by line, blank lines skipped. A half-written last
    line (a killed writer) is skipped; any other bad line is an error naming it (`what`: what the file holds)."""
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    for n, b in enumerate(lines, 1):
        if not b.strip():
            continue
        try:
            yield n, json.loads(b)
        except json.JSONDecodeError:
            if n == len(lines) and not raw.endswith(b"\n"):
                continue  # half-written tail of a killed run
            raise UserError(f"{path}: line {n} is not valid JSON; {what} files hold one JSON object a line") from None


def read_predictions(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """id -> line. A truncated final line (killed writer) is skipped; duplicates keep the first (a resumed run
    never writes one, so a duplicate means two runs shared a file: reported)."""
    out: dict[str, dict[str, Any]] = {}
    dups: list[str] = []
    for n, d in json_lines(path, "predictions"):
        if not isinstance(d, dict) or "id" not in d:
            raise UserError(f"{path}: line {n} has no 'id'")
        if d["id"] in out:
            dups.append(d["id"])
            continue
        out[str(d["id"])] = d
    if dups:
        raise UserError(
            f"{path}: {len(dups)} duplicate id(s), e.g. {dups[:3]}: did two jobs write one file? "
            "Give each shard its own --out or use `vtg eval merge`"
        )
    return out


def repair_tail(path: str | os.PathLike) -> int:
    """Cut a half-written last line off (a kill mid-write); returns the bytes removed."""
    p = Path(path)
    if not p.exists():
        return 0
    raw = p.read_bytes()
    if not raw or raw.endswith(b"\n"):
        return 0
    keep = raw.rfind(b"\n") + 1
    with open(p, "r+b") as f:
        f.truncate(keep)
    return len(raw) - keep


class Appender:
    """Appends lines and makes them durable batch by batch (flush + fsync), so a kill loses at most one batch."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, lines: Iterable[dict[str, Any]]) -> None:
        for line in lines:
            self._f.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def shard_file_name(shard: tuple[int, int] | None) -> str:
    return (
        "predictions.jsonl" if shard is None or shard[1] == 1 else f"predictions.shard-{shard[0]}-of-{shard[1]}.jsonl"
    )


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text}: need 0 <= i < n")
    return i, n


def take_shard(items: list, shard: tuple[int, int] | None) -> list:
    """Deterministic split by position in the records file: shard i of n takes items i, i+n, i+2n, …"""
    if shard is None:
        return list(items)
    i, n = shard
    return items[i::n]


def merge(inputs: list[str | os.PathLike], expected_ids: list[str] | None, out: str | os.PathLike) -> dict[str, int]:
    """Join shard files (or folders holding them) into `out/predictions.jsonl`, in the records' order.

    Refuses duplicates across shards and, given the expected ids, missing or unknown ones.
    """
    files: list[Path] = []
    for x in map(Path, inputs):
        files += sorted(x.glob("predictions*.jsonl")) if x.is_dir() else [x]
    if not files:
        raise UserError(f"no predictions*.jsonl found in {[str(x) for x in inputs]}")
    merged: dict[str, dict[str, Any]] = {}
    for f in files:
        for rid, line in read_predictions(f).items():
            if rid in merged:
                raise UserError(f"id {rid!r} is in more than one shard (second time in {f}); shards must not overlap")
            merged[rid] = line
    if expected_ids is not None:
        missing = [i for i in expected_ids if i not in merged]
        unknown = sorted(set(merged) - set(expected_ids))
        if missing or unknown:
            raise UserError(
                f"merge: {len(missing)} id(s) missing (e.g. {missing[:3]}) and {len(unknown)} unknown "
                f"(e.g. {unknown[:3]}); finish every shard (rerun resumes) before merging"
            )
        order = expected_ids
    else:
        order = list(merged)
    dest = Path(out) / "predictions.jsonl"
    if dest.resolve() in {f.resolve() for f in files}:
        raise UserError(f"merge would overwrite its input {dest}; choose another --out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rid in order:
            fh.write(json.dumps(merged[rid], ensure_ascii=False) + "\n")
    os.replace(tmp, dest)
    return {"files": len(files), "lines": len(order)}
