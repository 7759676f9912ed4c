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
READS_VIDEO_MIOU_GAP = 10.0  # mIoU points the swapped-video run must lose for "the model reads the video"


def reads_video(own_miou: float, swapped_miou: float) -> bool:
    """The control's verdict: swapping the videos costs at least READS_VIDEO_MIOU_GAP points of mIoU."""
    return own_miou - swapped_miou >= READS_VIDEO_MIOU_GAP


def swapped_video_records(
    records: list[Record], root: str | Path, seed: int = 0, kinds: tuple[str, ...] | None = CONTROL_KINDS
) -> tuple[list[Record], list[Record]]:
    """(own, swapped): the records that have another video of the same duration, with absolute video paths, and
    the same records with that other video. `kinds` filters by `extra["kind"]` (None: every record with moments)."""
    keep = [r for r in records if r.moments and (kinds is None or r.extra.get("kind") in kinds)]
    paths = [str(Path(r.video_path(root)).resolve()) for r in keep]  # once per record, not once per pair
    by_duration: dict[float, set[str]] = defaultdict(set)
    for r, path in zip(keep, paths):
        by_duration[r.duration].add(path)
    rng = random.Random(seed)
    own, swapped = [], []
    for r, path in zip(keep, paths):
        others = sorted(by_duration[r.duration] - {path})
        if not others:
            continue
        own.append(replace(r, video=path))
        swapped.append(replace(r, video=rng.choice(others)))
    return own, swapped


def write_control_sets(
    records_path: str | Path, out: str | Path, seed: int = 0, kinds: tuple[str, ...] | None = CONTROL_KINDS
) -> tuple[Path, Path, int]:
    """own.jsonl and swapped.jsonl under `out` for the records file; returns their paths and the query count."""
    records_path, out = Path(records_path), Path(out)
    own, swapped = swapped_video_records(load_records(records_path), records_path.parent, seed, kinds)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(own, out / "own.jsonl")
    write_jsonl(swapped, out / "swapped.jsonl")
    return out / "own.jsonl", out / "swapped.jsonl", len(own)
