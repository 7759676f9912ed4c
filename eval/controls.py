"""The video control: does a model read the video, or answer from the text alone?

Ask the same test queries twice: with their own videos, and with each video swapped for another video of the same
duration (the prompt text is then identical, only the frames differ). A model that reads the video loses accuracy
on the swapped set; one that answers from the text (duration and wording priors) scores the same on both. Training
that silently drops the video passes every other metric and fails this one.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from vtg.data.records import Record, load_records, write_jsonl

CONTROL_KINDS = ("single", "multi")  # synthetic-world kinds with moments that belong to one object of the video


def swapped_video_records(records: list[Record], root: str | Path, seed: int = 0,
                          kinds: tuple[str, ...] | None = CONTROL_KINDS) -> tuple[list[Record], list[Record]]:
    """(own, swapped): the records that have another video of the same duration, with absolute video paths, and
    the same records with that other video. `kinds` filters by `extra["kind"]` (None: every record with moments)."""
    keep = [r for r in records if r.moments and (kinds is None or r.extra.get("kind") in kinds)]
    by_duration: dict[float, set[str]] = defaultdict(set)
    for r in keep:
        by_duration[r.duration].add(r.video_path(root))
    rng = random.Random(seed)
    own, swapped = [], []
    for r in keep:
        path = str(Path(r.video_path(root)).resolve())
        others = sorted(str(Path(v).resolve()) for v in by_duration[r.duration] if v != r.video_path(root))
        if not others:
            continue
        own.append(replace(r, video=path))
        swapped.append(replace(r, video=rng.choice(others)))
    return own, swapped


def write_control_sets(records_path: str | Path, out: str | Path, seed: int = 0,
                       kinds: tuple[str, ...] | None = CONTROL_KINDS) -> tuple[Path, Path, int]:
    """own.jsonl and swapped.jsonl under `out` for the records file; returns their paths and the query count."""
    records_path, out = Path(records_path), Path(out)
    own, swapped = swapped_video_records(load_records(records_path), records_path.parent, seed, kinds)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(own, out / "own.jsonl")
    write_jsonl(swapped, out / "swapped.jsonl")
    return out / "own.jsonl", out / "swapped.jsonl", len(own)
