"""Controls: does a model read the video, does it read the question? (docs/eval.md#controls-and-baselines)

A control asks the same test queries twice, with one input changed, and scores both against the records' own
answers:
- **video** (`swapped_video_records`): each video swapped for another video of the same duration (the prompt text
  is then identical, only the frames differ). A model that reads the video loses accuracy; one that answers from
  the text (duration and wording priors) scores the same. Training that silently drops the video passes every
  other metric and fails this one.
- **question** (`swapped_query_records`): each record keeps its video and answer but is asked another record's
  query whose answer differs (no moment of one overlaps a moment of the other by SWAP_QUERY_MAX_IOU or more, in
  normalized time). A model that reads the question answers the other query and loses accuracy; one that answers
  from the video alone (the salient moment, the location prior) scores the same.

Both build (own, changed) record sets the same way (`control_sets`): only records with moments, absolute video
paths, the same ids in the same order, each changed record marked `extra["control"]` so `vtg eval report` knows
what a run of it controls.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vtg.data.grammar import iou
from vtg.data.records import Record, load_records, write_jsonl
from vtg.errors import UserError

CONTROL_KINDS = ("single", "multi")  # synthetic-world kinds with moments that belong to one object of the video
CONTROLS = ("video", "question")
CONTROL_MARK = {"video": "swapped_video", "question": "swapped_query"}  # the records' `extra["control"]`

# mIoU points the control run must lose for the verdict "reads the video" / "reads the question". Both runs score
# the same queries against the same answers, so the gap is the changed input's effect; ten points leaves room for
# the chance agreement of a model that ignores the input (a drop of a few points) and is a sixth of what a model that
# uses it loses (the quickstart's GRPO model: 65 points with swapped videos).
READS_VIDEO_MIOU_GAP = 10.0
READS_QUESTION_MIOU_GAP = 10.0
# Two answers "differ" when no moment of one reaches this IoU with a moment of the other (normalized time): an exact
# answer to the swapped query is then a miss at every R@K threshold vtg reports (0.3, 0.5, 0.7) on the own answer.
SWAP_QUERY_MAX_IOU = 0.3


def reads_video(own_miou: float, swapped_miou: float) -> bool:
    """The video control's verdict: swapping the videos costs at least READS_VIDEO_MIOU_GAP points of mIoU."""
    return own_miou - swapped_miou >= READS_VIDEO_MIOU_GAP


def reads_question(own_miou: float, swapped_miou: float) -> bool:
    """The question control's verdict: swapping the queries costs at least READS_QUESTION_MIOU_GAP points of mIoU."""
    return own_miou - swapped_miou >= READS_QUESTION_MIOU_GAP


def verdict(control: str, own_miou: float, swapped_miou: float) -> str:
    """The verdict line of a control: "reads the video" / "does not read the video", or the question's."""
    if control not in CONTROLS:
        raise UserError(f"unknown control {control!r}; known: {', '.join(CONTROLS)}")
    thing = "video" if control == "video" else "question"
    ok = (reads_video if control == "video" else reads_question)(own_miou, swapped_miou)
    return f"{'reads' if ok else 'does not read'} the {thing}"


def _kept(records: list[Record], root: str | Path, kinds: tuple[str, ...] | None) -> list[Record]:
    """Records with moments (of `kinds` by `extra["kind"]`; None: all), their video paths made absolute."""
    keep = [r for r in records if r.moments and (kinds is None or r.extra.get("kind") in kinds)]
    return [replace(r, video=str(Path(r.video_path(root)).resolve())) for r in keep]


def control_sets(
    records: list[Record], root: str | Path, control: str, seed: int = 0, kinds: tuple[str, ...] | None = CONTROL_KINDS
) -> tuple[list[Record], list[Record]]:
    """(own, changed) for `control`: the kept records that have a partner (absolute video paths), and the same
    records with the control's change, marked `extra["control"]`. Deterministic for a seed."""
    if control not in CONTROLS:
        raise UserError(f"unknown control {control!r}; known: {', '.join(CONTROLS)}")
    keep = _kept(records, root, kinds)
    change = _video_swapper(keep) if control == "video" else _query_swapper(keep)
    rng = random.Random(seed)
    own, changed = [], []
    for r in keep:
        new = change(r, rng)
        if new is not None:
            own.append(r)
            changed.append(replace(new, extra={**new.extra, "control": CONTROL_MARK[control]}))
    return own, changed


def _video_swapper(keep: list[Record]) -> Callable[[Record, random.Random], Record | None]:
    """Another video of the same duration (None when there is none)."""
    by_duration: dict[float, set[str]] = defaultdict(set)
    for r in keep:
        by_duration[r.duration].add(r.video)

    def swap(r: Record, rng: random.Random) -> Record | None:
        others = sorted(by_duration[r.duration] - {r.video})
        return replace(r, video=rng.choice(others)) if others else None

    return swap


def answers_differ(a: Record, b: Record) -> bool:
    """No moment of `a` reaches SWAP_QUERY_MAX_IOU with a moment of `b`, both in normalized time (÷ duration)."""
    na = [(s / a.duration, e / a.duration) for s, e in a.moments]
    nb = [(s / b.duration, e / b.duration) for s, e in b.moments]
    return max(iou(x, y) for x in na for y in nb) < SWAP_QUERY_MAX_IOU


def _query_swapper(keep: list[Record]) -> Callable[[Record, random.Random], Record | None]:
    """Another record's query whose answer differs: one about the same video when it has one (its answer on this
    video is known to differ), else one about another video. `extra["query_from"]` names the record it came from."""
    import numpy as np

    from vtg.data.grammar import iou_table

    by_video: dict[str, list[Record]] = defaultdict(list)
    for r in keep:
        by_video[r.video].append(r)
    flat = np.array([(s / r.duration, e / r.duration) for r in keep for s, e in r.moments]).reshape(-1, 2)
    owner = np.repeat(np.arange(len(keep)), [len(r.moments) for r in keep])
    video = np.unique([r.video for r in keep], return_inverse=True)[1]
    query = np.unique([r.query for r in keep], return_inverse=True)[1]
    rank = np.argsort(np.argsort([r.id for r in keep]))  # each record's rank by id: pools are drawn in id order
    position = {id(r): i for i, r in enumerate(keep)}  # swap() is called with these very objects

    def other_videos(i: int):
        """Indices (in id order) of the records about other videos whose answer differs from record i's; vectorized,
        since this scans the whole split."""
        r = keep[i]
        best = np.zeros(len(keep))
        np.maximum.at(best, owner, iou_table([(s / r.duration, e / r.duration) for s, e in r.moments], flat).max(0))
        fits = np.nonzero((best < SWAP_QUERY_MAX_IOU) & (video != video[i]) & (query != query[i]))[0]
        return fits[np.argsort(rank[fits])]

    def swap(r: Record, rng: random.Random) -> Record | None:
        same = sorted((o for o in by_video[r.video] if o.query != r.query and answers_differ(r, o)), key=lambda o: o.id)
        if same:
            o = rng.choice(same)
        else:
            fits = other_videos(position[id(r)])
            if not len(fits):
                return None
            o = keep[fits[rng.randrange(len(fits))]]  # the draw rng.choice would make
        return replace(r, query=o.query, extra={**r.extra, "query_from": o.id, "same_video": bool(same)})

    return swap


def swapped_video_records(
    records: list[Record], root: str | Path, seed: int = 0, kinds: tuple[str, ...] | None = CONTROL_KINDS
) -> tuple[list[Record], list[Record]]:
    """(own, swapped): the records that have another video of the same duration, and the same with that video."""
    return control_sets(records, root, "video", seed, kinds)


def swapped_query_records(
    records: list[Record], root: str | Path, seed: int = 0, kinds: tuple[str, ...] | None = CONTROL_KINDS
) -> tuple[list[Record], list[Record]]:
    """(own, swapped): the records that have a query whose answer differs, and the same asked that query."""
    return control_sets(records, root, "question", seed, kinds)


def write_control_sets(
    records_path: str | Path,
    out: str | Path,
    seed: int = 0,
    kinds: tuple[str, ...] | None = CONTROL_KINDS,
    control: str = "video",
) -> tuple[Path, Path, int]:
    """own.jsonl and swapped.jsonl of `control` under `out` for the records file; their paths and the query count."""
    records_path, out = Path(records_path), Path(out)
    own, swapped = control_sets(load_records(records_path), records_path.parent, control, seed, kinds)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(own, out / "own.jsonl")
    write_jsonl(swapped, out / "swapped.jsonl")
    return out / "own.jsonl", out / "swapped.jsonl", len(own)
