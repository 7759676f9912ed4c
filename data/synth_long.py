"""The long synthetic world: 2–60 min test videos for long-video grounding, and the short training clips it needs.

Same look as the short world (vtg.data.synth: its colours, shapes, 3×3 cells, grey noisy background, H.264 MP4s,
exact frame intervals [a, b) → [a/fps, b/fps] s), but one queried object per video, shown once or a few times among
long empty stretches (or never: `long-absent`, truth []), optionally beside a few distractor objects of other kinds,
some of which may be decoys that share the queried object's colour (another shape) or its shape (another colour), so
that only the query's words tell them apart.

Families: test video j of every length is the same *family*: the same object, cell, query text, event lengths and
order (and distractors), drawn once from rng([seed, STREAM, split, j]). Only the empty stretches differ: the free
frames of a length are cut at the same fractions (the family's Dirichlet weights), so every event sits at the same
relative place (up to a frame) in the 2-, 10-, 30- and 60-min versions, and a benchmark asks the same queries at
every length. So that the events fit in the shortest length, a family's events fill at most `max_event_share` of it.

Training clips: a coarse-to-fine grounder asks the model about ~20-s windows of a long video, each presented as a
clip starting at 0, so the model is trained on such windows: clips of `clip_s` seconds cut from other long videos
(train/val families with their own seeds, at a random length), at a uniformly random position among the windows that
show part of an event (truth: the events cut at the clip's borders and rebased to its start) or among those that
show none (`empty_fraction` of the clips, exactly; truth []). Only the clip's frames are rendered, then encoded as
their own MP4; the pixels equal those frames of the long video.

Memory stays flat: a video is rendered and encoded in chunks of CHUNK_BYTES, and each chunk's noise comes from
fixed blocks of NOISE_BLOCK frames keyed by their index, so the pixels do not depend on how the video is cut.
Everything is seeded: the same config gives byte-identical records, scenes and videos.
Files: videos/test/fJJJJ-<L>min.mp4, clips/{train,val}/cNNNNNN.mp4, {test,train,val}.jsonl, scenes.jsonl (each
video's objects, pixel boxes and frame intervals), world.json (the config).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vtg.data.synth import (
    BASE_GREY,
    COLOURS,
    GRID,
    MIN_EVENT,
    MIN_GAP,
    NOISE,
    QUERY_TEMPLATES,
    SHAPES,
    cell_box,
    encode_mp4_chunks,
    paint_objects,
)
from vtg.errors import UserError

WORLD = "synth-long"
TEST_KINDS = ("long-single", "long-multi", "long-absent")
CLIP_KINDS = ("clip-event", "clip-empty")
SPLITS = ("test", "train", "val")
SPLIT_NO = {"test": 0, "train": 1, "val": 2}  # part of every seed: the splits never share a video
STREAM = 0x6C6F6E67  # "long": keeps these seeds apart from the short world's [seed, index] streams
NOISE_BLOCK = 64  # frames whose noise comes from one seeded draw (so any chunking gives the same pixels)
CHUNK_BYTES = 4 << 20  # frames rendered and encoded at a time: ~440 frames of 56×56
CLIPS_PER_JOB = 32


@dataclass(frozen=True)
class LongSynthConfig:
    durations_min: tuple[float, ...] = (2.0, 10.0, 30.0, 60.0)  # test video lengths, minutes
    videos_per_length: int = 10  # = families: video j of every length holds the same events
    fps: float = 2.0
    size: int = 56
    seed: int = 0
    events_per_video: tuple[int, int] = (1, 3)  # times the object is shown, inclusive range
    event_s: tuple[float, float] = (2.0, 180.0)  # event lengths, log-uniform, seconds
    max_event_share: float = 0.5  # an object's events fill at most this share of the shortest length
    absent_fraction: float = 0.2  # test families (and empty clips' sources) whose queried object never appears
    distractors: int = 0  # other objects (other kinds, own cells, own events) in every video
    colour_decoys: int = 0  # of the distractors: this many of the queried colour (other shapes)
    shape_decoys: int = 0  # of the distractors: this many of the queried shape (other colours)
    train_clips: int = 3000
    val_clips: int = 300
    clip_s: tuple[float, float] = (8.0, 20.0)  # clip lengths, uniform, seconds
    empty_fraction: float = 0.3  # share of clips showing no part of an event (exactly, rounded)

    def __post_init__(self) -> None:
        for name in ("durations_min", "events_per_video", "event_s", "clip_s"):
            try:
                object.__setattr__(self, name, tuple(getattr(self, name)))
            except TypeError:
                raise UserError(
                    f"synth --long: {_n(name)} must be a list of numbers, got {getattr(self, name)!r}"
                ) from None
        self._check_counts()
        self._check_shares()
        self._check_lengths()
        self._check_fit()

    def _check_counts(self) -> None:
        for name in (
            "videos_per_length",
            "train_clips",
            "val_clips",
            "distractors",
            "colour_decoys",
            "shape_decoys",
            "seed",
        ):
            v, least = getattr(self, name), int(name == "videos_per_length")
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise UserError(f"synth --long: {_n(name)} must be an integer >= {least}, got {v!r}")
        if self.distractors > GRID * GRID - 1:
            raise UserError(
                f"synth --long: {_n('distractors')} must be at most {GRID * GRID - 1} (each object needs its own of "
                f"the {GRID * GRID} cells), got {self.distractors}"
            )
        for name, most in (("colour_decoys", len(SHAPES) - 1), ("shape_decoys", len(COLOURS) - 1)):
            if getattr(self, name) > most:
                raise UserError(
                    f"synth --long: {_n(name)} must be at most {most} (the other "
                    f"{'shapes' if name == 'colour_decoys' else 'colours'}), got {getattr(self, name)}"
                )
        if self.colour_decoys + self.shape_decoys > self.distractors:
            raise UserError(
                f"synth --long: decoys are distractors: {_n('colour_decoys')} + {_n('shape_decoys')} "
                f"({self.colour_decoys} + {self.shape_decoys}) must be at most {_n('distractors')} ({self.distractors})"
            )
        if not (_number(self.fps) and self.fps > 0):
            raise UserError(f"synth --long: fps must be > 0, got {self.fps!r}")
        if not isinstance(self.size, int) or self.size < 24:
            raise UserError(
                f"synth --long: size must be an integer >= 24 pixels (room for a 3×3 layout), got {self.size!r}"
            )
        lo, hi = _pair(self.events_per_video, "events_per_video", int)
        if lo < 1:
            raise UserError(
                f"synth --long: {_n('events_per_video')} must be two integers 1 <= min <= max, got {[lo, hi]}"
            )

    def _check_shares(self) -> None:
        for name in ("absent_fraction", "empty_fraction"):
            v = getattr(self, name)
            if not (_number(v) and 0 <= v <= 1):
                raise UserError(f"synth --long: {_n(name)} must be a number in [0, 1], got {v!r}")
        if not (_number(self.max_event_share) and 0 < self.max_event_share <= 0.9):
            raise UserError(
                f"synth --long: {_n('max_event_share')} must be in (0, 0.9] (the rest of a video is empty), "
                f"got {self.max_event_share!r}"
            )

    def _check_lengths(self) -> None:
        d = self.durations_min
        names = {f"{x:g}" for x in d if _number(x)}  # the file names say {minutes:g}
        if not d or not all(_number(x) and x > 0 for x in d) or len(names) != len(d):
            raise UserError(f"synth --long: {_n('durations_min')} must be distinct positive minutes, got {list(d)}")
        object.__setattr__(self, "durations_min", tuple(float(x) for x in d))
        for name in ("event_s", "clip_s"):
            _pair(getattr(self, name), name, float)
        if self.event_frames[0] > self.event_frames[1]:
            raise UserError(
                f"synth --long: {_n('event_s')} {list(self.event_s)} holds no whole number of frames >= {MIN_EVENT} "
                f"at {self.fps:g} fps; raise its maximum to at least {MIN_EVENT / self.fps:g}s"
            )
        if self.clip_frames[0] > self.clip_frames[1]:
            raise UserError(
                f"synth --long: {_n('clip_s')} {list(self.clip_s)} holds no even number of frames >= {MIN_EVENT} "
                f"at {self.fps:g} fps; widen it"
            )

    def _check_fit(self) -> None:
        shortest, frames = min(self.durations_min), self.frames_of(min(self.durations_min))
        if self.clip_frames[1] > frames:
            raise UserError(
                f"synth --long: clips of up to {self.clip_s[1]:g}s are longer than the shortest length "
                f"({shortest:g} min = {frames} frames); lower {_n('clip_s')} or raise {_n('durations_min')}"
            )
        k, lo = self.events_per_video[1], self.event_frames[0]
        if k * lo > self.event_budget or self.event_budget + (k - 1) * MIN_GAP > frames:
            raise UserError(
                f"synth --long: {k} events of at least {lo / self.fps:g}s do not fit in {self.max_event_share:g} of "
                f"the shortest length ({shortest:g} min); raise {_n('durations_min')} or {_n('max_event_share')}, "
                f"or lower {_n('events_per_video')} or the minimum of {_n('event_s')}"
            )

    def frames_of(self, minutes: float) -> int:
        """Frames of a video `minutes` long: even, so sampling at the video's fps drops none (Qwen-VL pairs frames)."""
        return max(2, 2 * round(minutes * 60 * self.fps / 2))

    @property
    def frame_size(self) -> int:
        return self.size + self.size % 2

    @property
    def event_frames(self) -> tuple[int, int]:
        """Fewest and most frames of an event."""
        lo = max(MIN_EVENT, math.ceil(self.event_s[0] * self.fps - 1e-9))
        return lo, math.floor(self.event_s[1] * self.fps + 1e-9)

    @property
    def clip_frames(self) -> tuple[int, int]:
        """Fewest and most frames of a clip, both even."""
        lo = max(MIN_EVENT, math.ceil(self.clip_s[0] * self.fps - 1e-9))
        hi = math.floor(self.clip_s[1] * self.fps + 1e-9)
        return lo + lo % 2, hi - hi % 2

    @property
    def event_budget(self) -> int:
        """Frames one object's events may fill in all: max_event_share of the shortest length."""
        return math.floor(self.max_event_share * self.frames_of(min(self.durations_min)))


FLAGS = {
    "durations_min": "--durations-min",
    "videos_per_length": "--videos-per-length",
    "events_per_video": "--events-per-video",
    "event_s": "--event-seconds",
    "max_event_share": "--max-event-share",
    "absent_fraction": "--absent-fraction",
    "distractors": "--distractors",
    "colour_decoys": "--colour-decoys",
    "shape_decoys": "--shape-decoys",
    "train_clips": "--train-clips",
    "val_clips": "--val-clips",
    "clip_s": "--clip-seconds",
    "empty_fraction": "--empty-fraction",
}  # the flag of `vtg data synth --long` that sets each field, for messages


def _n(name: str) -> str:
    """A field as messages name it: with its command-line flag where the two differ."""
    flag = FLAGS.get(name)
    return f"{name} ({flag})" if flag else name


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pair(value: tuple, name: str, kind: type) -> tuple:
    ok = len(value) == 2 and all(_number(v) and (kind is float or isinstance(v, int)) for v in value)
    if not ok or not (0 < value[0] <= value[1]):
        raise UserError(f"synth --long: {_n(name)} must be two numbers 0 < min <= max, got {list(value)}")
    return value


# ---------------------------------------------------------------- families and timelines (pure, seeded)


def _rng(cfg: LongSynthConfig, split: str, index: int, *tail: int):
    import numpy as np

    return np.random.default_rng([cfg.seed, STREAM, SPLIT_NO[split], index, *tail])


def make_family(cfg: LongSynthConfig, split: str, index: int, absent: bool) -> dict[str, Any]:
    """A family's content, the same at every length: the queried object (shown, or not when `absent`: then one more
    object of another kind is shown instead), distractors (first the decoys of the queried colour, then those of the
    queried shape, then other kinds in a seeded order), their cells, event lengths and relative placement, the
    query. Without decoys the objects are the first of a seeded order of kinds (the world's layout since the start)."""
    rng = _rng(cfg, split, index)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    order = rng.permutation(len(combos)).tolist()
    cells = rng.permutation(GRID * GRID).tolist()
    colour, shape = combos[order[0]]
    rest = order[1:]
    decoys = [c for c in rest if combos[c][0] == colour][: cfg.colour_decoys]
    decoys += [c for c in rest if combos[c][1] == shape][: cfg.shape_decoys]
    rest = [c for c in rest if c not in decoys]
    others = cfg.distractors - len(decoys) + absent  # an absent family shows as many objects as a present one
    shown = ([] if absent else order[:1]) + decoys + rest[:others]
    objects = []
    for cell, combo in zip(cells, shown):
        lengths = _event_lengths(rng, cfg)
        weights = rng.dirichlet([1.0] * (len(lengths) + 1)).tolist()
        c, sh = combos[combo]
        objects.append({"colour": c, "shape": sh, "cell": cell, "lengths": lengths, "weights": weights})
    query = QUERY_TEMPLATES[int(rng.integers(len(QUERY_TEMPLATES)))].format(o=f"{colour} {shape}")
    base = int(rng.integers(*BASE_GREY))
    target = {"colour": colour, "shape": shape}
    return {
        "split": split,
        "index": index,
        "absent": absent,
        "target": target,
        "query": query,
        "base": base,
        "objects": objects,
    }


def _event_lengths(rng, cfg: LongSynthConfig) -> list[int]:
    """1–3 (events_per_video) event lengths in frames, log-uniform in event_s, together within the event budget:
    each is capped so the ones still to draw keep their minimum, then the order is shuffled (no long-first bias)."""
    k = int(rng.integers(cfg.events_per_video[0], cfg.events_per_video[1] + 1))
    lo, hi = cfg.event_frames
    out: list[int] = []
    for j in range(k):
        cap = min(hi, cfg.event_budget - sum(out) - (k - j - 1) * lo)
        x = math.exp(rng.uniform(math.log(lo), math.log(cap)))
        out.append(max(lo, min(cap, round(x))))
    return [out[i] for i in rng.permutation(k).tolist()]


def timeline(cfg: LongSynthConfig, family: dict[str, Any], minutes: float) -> dict[str, Any]:
    """The family at one length: each object's events placed in whole frames."""
    n = cfg.frames_of(minutes)
    objects = [
        {
            "colour": o["colour"],
            "shape": o["shape"],
            "cell": o["cell"],
            "intervals": _place(o["lengths"], o["weights"], n),
        }
        for o in family["objects"]
    ]
    return {
        **{k: family[k] for k in ("split", "index", "absent", "target", "query", "base")},
        "minutes": minutes,
        "frames": n,
        "objects": objects,
    }


def _place(lengths: list[int], weights: list[float], n: int) -> list[list[int]]:
    """[a, b) intervals of these lengths, in order, >= MIN_GAP apart: the free frames of an n-frame video are cut at
    the cumulative weights, so the same family sits at the same relative places at every length."""
    k = len(lengths)
    free = n - sum(lengths) - (k - 1) * MIN_GAP
    cuts = [min(free, math.floor(free * sum(weights[: j + 1]))) for j in range(k)]
    out, t = [], cuts[0]
    for j, length in enumerate(lengths):
        out.append([t, t + length])
        if j + 1 < k:
            t += length + MIN_GAP + cuts[j + 1] - cuts[j]
    return out


def target_intervals(video: dict[str, Any]) -> list[list[int]]:
    """The queried object's frame intervals ([] in an absent video: objects[0] is then a decoy)."""
    return [] if video["absent"] else video["objects"][0]["intervals"]


def benchmark_families(cfg: LongSynthConfig) -> list[dict[str, Any]]:
    """The test families; exactly round(videos_per_length × absent_fraction) of them absent, at seeded places."""
    n = cfg.videos_per_length
    absent = _chosen(cfg, "test", n, round(n * cfg.absent_fraction))
    return [make_family(cfg, "test", j, j in absent) for j in range(n)]


def _chosen(cfg: LongSynthConfig, split: str, n: int, k: int) -> set[int]:
    """k of range(n), seeded: exact shares (absent families, empty clips) rather than coin flips."""
    return set(_rng(cfg, split, 2**31).permutation(n)[:k].tolist())


# ---------------------------------------------------------------- clips (pure, seeded)


def make_clip(cfg: LongSynthConfig, split: str, index: int, empty: bool) -> dict[str, Any]:
    """A window of a train/val long video, as a clip: which video (family `index` of `split` at a random length),
    where, and its truth in the clip's frames. A non-empty clip is a uniformly random window among those showing
    part of an event; an empty one among those showing none (from an absent video with probability
    absent_fraction, or when no empty window of that length exists at any length)."""
    rng = _rng(cfg, split, index, 1)
    lo, hi = cfg.clip_frames
    n = min(max(2 * round(rng.uniform(cfg.clip_s[0], cfg.clip_s[1]) * cfg.fps / 2), lo), hi)
    lengths = sorted(cfg.durations_min)
    first = int(rng.integers(len(lengths)))
    absent = empty and bool(rng.random() < cfg.absent_fraction)
    family = make_family(cfg, split, index, absent)
    for minutes in lengths[first:]:  # a longer version of the same family has longer empty stretches
        video = timeline(cfg, family, minutes)
        ranges = _window_starts(target_intervals(video), video["frames"], n, empty)
        if ranges:
            break
    else:
        video = timeline(cfg, make_family(cfg, split, index, True), lengths[first])
        ranges = _window_starts([], video["frames"], n, empty)
    start = _pick(rng, ranges)
    return {"split": split, "index": index, "frames": n, "start": start, "source": video}


def _window_starts(intervals: list[list[int]], total: int, n: int, empty: bool) -> list[tuple[int, int]]:
    """[lo, hi) ranges of the start frames of n-frame windows that overlap some interval (or, `empty`, none)."""
    hit: list[tuple[int, int]] = []
    for a, b in intervals:
        lo, hi = max(0, a - n + 1), min(total - n, b - 1) + 1
        if hit and lo <= hit[-1][1]:
            hit[-1] = (hit[-1][0], max(hit[-1][1], hi))
        else:
            hit.append((lo, hi))
    if not empty:
        return hit
    out, t = [], 0
    for lo, hi in hit + [(total - n + 1, total - n + 1)]:
        if lo > t:
            out.append((t, lo))
        t = max(t, hi)
    return out


def _pick(rng, ranges: list[tuple[int, int]]) -> int:
    r = int(rng.integers(sum(hi - lo for lo, hi in ranges)))
    for lo, hi in ranges:
        if r < hi - lo:
            return lo + r
        r -= hi - lo
    raise AssertionError("unreachable")


def clip_intervals(intervals: list[list[int]], start: int, n: int) -> list[list[int]]:
    """Intervals cut to the window [start, start + n) and rebased to it; one the cut empties is dropped."""
    cut = [[max(a, start) - start, min(b, start + n) - start] for a, b in intervals]
    return [[a, b] for a, b in cut if a < b]


def clips(cfg: LongSynthConfig, split: str) -> list[dict[str, Any]]:
    n = cfg.train_clips if split == "train" else cfg.val_clips
    empty = _chosen(cfg, split, n, round(n * cfg.empty_fraction))
    return [make_clip(cfg, split, i, i in empty) for i in range(n)]


# ---------------------------------------------------------------- rendering and encoding, in chunks


def render_chunks(cfg: LongSynthConfig, video: dict[str, Any], start: int = 0, stop: int | None = None) -> Iterator:
    """Frames [start, stop) of a video as uint8 [t, H, W, 3] chunks of at most CHUNK_BYTES."""
    stop = video["frames"] if stop is None else stop
    step = max(1, CHUNK_BYTES // (cfg.frame_size**2 * 3))
    for a in range(start, stop, step):
        b = min(stop, a + step)
        frames = _background(cfg, video, a, b)
        paint_objects(frames, video["objects"], cfg.size, first=a)
        yield frames


def _background(cfg: LongSynthConfig, video: dict[str, Any], a: int, b: int):
    """Frames [a, b) of the video's grey noisy background; the noise of frame i comes from block i // NOISE_BLOCK."""
    import numpy as np

    size = cfg.frame_size
    out = np.empty((b - a, size, size, 3), np.uint8)
    for block in range(a // NOISE_BLOCK, (b - 1) // NOISE_BLOCK + 1):
        rng = _rng(cfg, video["split"], video["index"], 2, video["frames"], block)
        noise = rng.integers(-NOISE, NOISE + 1, size=(NOISE_BLOCK, size, size, 1), dtype=np.int16)
        b0 = block * NOISE_BLOCK
        lo, hi = max(a, b0), min(b, b0 + NOISE_BLOCK)
        out[lo - a : hi - a] = (noise[lo - b0 : hi - b0] + video["base"]).clip(0, 255).astype(np.uint8)
    return out


def write_video(
    cfg: LongSynthConfig, video: dict[str, Any], path: Path, start: int = 0, stop: int | None = None
) -> int:
    """Encode frames [start, stop) of a video to an MP4 whose first frame is `start` (at 0 s)."""
    return encode_mp4_chunks(render_chunks(cfg, video, start, stop), path, cfg.fps)


# ---------------------------------------------------------------- records and the world on disk


def long_video_name(video: dict[str, Any]) -> str:
    return f"videos/test/f{video['index']:04d}-{video['minutes']:g}min.mp4"


def clip_name(clip: dict[str, Any]) -> str:
    return f"clips/{clip['split']}/c{clip['index']:06d}.mp4"


def _name(o: dict[str, Any]) -> str:
    return f"{o['colour']} {o['shape']}"


def long_record(cfg: LongSynthConfig, video: dict[str, Any]) -> dict[str, Any]:
    moments = target_intervals(video)
    kind = "long-absent" if video["absent"] else "long-single" if len(moments) == 1 else "long-multi"
    return {
        "id": f"{WORLD}-s{cfg.seed}-f{video['index']:04d}-{video['minutes']:g}min",
        "video": long_video_name(video),
        "duration": round(video["frames"] / cfg.fps, 6),
        "query": video["query"],
        "moments": _seconds(moments, cfg.fps),
        "source": WORLD,
        "split": "test",
        "kind": kind,
        "length_min": video["minutes"],
        "target": _name(video["target"]),
        "family": video["index"],
        "fps": cfg.fps,
    }


def clip_record(cfg: LongSynthConfig, clip: dict[str, Any]) -> dict[str, Any]:
    video, s, n = clip["source"], clip["start"], clip["frames"]
    moments = clip_intervals(target_intervals(video), s, n)
    return {
        "id": f"{WORLD}-s{cfg.seed}-{clip['split']}-c{clip['index']:06d}",
        "video": clip_name(clip),
        "duration": round(n / cfg.fps, 6),
        "query": video["query"],
        "moments": _seconds(moments, cfg.fps),
        "source": WORLD,
        "split": clip["split"],
        "kind": "clip-event" if moments else "clip-empty",
        "target": _name(video["target"]),
        "fps": cfg.fps,
        "clip_start": round(s / cfg.fps, 6),  # where the window sits in its long video (as TimeRFT clips say)
        "clip_end": round((s + n) / cfg.fps, 6),
        "source_video": f"{video['split']}-f{video['index']:06d}-{video['minutes']:g}min",  # never written whole
        "length_min": video["minutes"],
    }


def _seconds(intervals: list[list[int]], fps: float) -> list[list[float]]:
    return [[round(a / fps, 6), round(b / fps, 6)] for a, b in intervals]


def scene_line(cfg: LongSynthConfig, video: dict[str, Any], clip: dict[str, Any] | None = None) -> dict[str, Any]:
    """scenes.jsonl: every shown object's colour, shape, pixel box and frame intervals in the written file."""
    s, n = (clip["start"], clip["frames"]) if clip else (0, video["frames"])
    line = {
        "video": clip_name(clip) if clip else long_video_name(video),
        "frames": n,
        "fps": cfg.fps,
        "size": cfg.frame_size,
        "target": _name(video["target"]),
        "absent": video["absent"],
    }
    if clip:
        line.update(source_frames=video["frames"], source_start=s, length_min=video["minutes"])
    else:
        line.update(family=video["index"], length_min=video["minutes"])
    line["objects"] = [
        {
            "colour": o["colour"],
            "shape": o["shape"],
            "box": list(cell_box(o["cell"], cfg.size)),
            "intervals": clip_intervals(o["intervals"], s, n),
        }
        for o in video["objects"]
    ]
    return line


def _write_job(job: tuple) -> float:
    """One test video, or a batch of clips; returns the seconds it took."""
    t0 = time.perf_counter()
    cfg, out, what, items = job
    if what == "video":
        write_video(cfg, items, Path(out) / long_video_name(items))
    else:
        for clip in items:
            s = clip["start"]
            write_video(cfg, clip["source"], Path(out) / clip_name(clip), s, s + clip["frames"])
    return time.perf_counter() - t0


def check_world_folder(out: str | os.PathLike, long_world: bool) -> None:
    """Refuse to write one world (short or long) into a folder holding the other: both write {train,val,test}.jsonl
    and world.json, and a mix would be trained or evaluated on silently."""
    try:
        is_long = json.loads((Path(out) / "world.json").read_text()).get("world") == WORLD
    except (OSError, ValueError, AttributeError):
        return  # no world there (or not one of ours)
    if is_long != long_world:
        have, want = ("long", "short") if is_long else ("short", "long")
        raise UserError(
            f"{out} holds the {have} synthetic world (world.json); writing the {want} one there would mix their "
            "records: pass another --out"
        )


def generate_long(
    cfg: LongSynthConfig,
    out_dir: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> dict[str, Path]:
    """Write videos/test/*.mp4, clips/{train,val}/*.mp4, {test,train,val}.jsonl, scenes.jsonl and world.json;
    returns {split: jsonl path}."""
    out = Path(out_dir)
    check_world_folder(out, long_world=True)
    try:
        for sub in ("videos/test", "clips/train", "clips/val"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"synth --long: cannot create output folder {out}: {e}") from None
    t0 = time.time()
    videos = [timeline(cfg, f, m) for m in cfg.durations_min for f in benchmark_families(cfg)]
    cut = {s: clips(cfg, s) for s in ("train", "val")}
    records = {"test": [long_record(cfg, v) for v in videos]}
    records.update({s: [clip_record(cfg, c) for c in cut[s]] for s in cut})
    _check_records(records)
    seconds = _write_videos(cfg, out, videos, cut, progress, workers)
    from vtg.data.records import write_jsonl

    paths = {s: out / f"{s}.jsonl" for s in SPLITS}
    for s in SPLITS:
        write_jsonl(records[s], paths[s])
    scenes = [scene_line(cfg, v) for v in videos] + [scene_line(cfg, c["source"], c) for s in cut for c in cut[s]]
    write_jsonl(scenes, out / "scenes.jsonl")
    (out / "world.json").write_text(
        json.dumps({"world": WORLD, **asdict(cfg), "frame_size": cfg.frame_size}, indent=1) + "\n"
    )
    if progress:
        progress(summary(cfg, records, videos, seconds, time.time() - t0, out))
    return paths


def _check_records(records: dict[str, list[dict[str, Any]]]) -> None:
    """Every record passes vtg.data.records' rules unchanged (a failure here is a bug in this module)."""
    from vtg.data.records import ValidationReport, validate

    for split, rows in records.items():
        report = ValidationReport()
        for r in rows:
            assert validate(r, report=report).to_dict() == r, r
        assert not report.fixes, (split, report.summary())


def _write_videos(cfg, out: Path, videos, cut, progress, workers) -> dict[str, float]:
    """Encode every test video and clip in a process pool (longest videos first, so they do not finish last);
    returns seconds per test video name."""
    order = sorted(videos, key=lambda v: -v["frames"])
    jobs = [(cfg, str(out), "video", v) for v in order]
    for s in cut:
        jobs += [(cfg, str(out), "clips", cut[s][i : i + CLIPS_PER_JOB]) for i in range(0, len(cut[s]), CLIPS_PER_JOB)]
    workers = workers or max(1, min(os.cpu_count() or 1, 8, len(jobs)))
    t0, seconds = time.time(), {}
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(_write_job, jobs) if pool else map(_write_job, jobs)
        for i, (job, took) in enumerate(zip(jobs, results), 1):
            if job[2] == "video":
                seconds[long_video_name(job[3])] = took
            if progress and (i % max(1, len(jobs) // 10) == 0 or i == len(jobs)):
                progress(f"synth --long: {i}/{len(jobs)} encoding jobs ({time.time() - t0:.1f}s)")
    finally:
        if pool:
            pool.shutdown()
    return seconds


def summary(cfg, records, videos, seconds: dict[str, float], total: float, out: Path) -> str:
    n_clips = len(records["train"]) + len(records["val"])
    lines = [f"synth --long: wrote {len(videos)} test videos and {n_clips} clips to {out} in {total:.1f}s"]
    for m in cfg.durations_min:
        took = [seconds[long_video_name(v)] for v in videos if v["minutes"] == m]
        kinds = Counter(r["kind"] for r in records["test"] if r["length_min"] == m)
        lines.append(
            f"  test {m:g} min: {len(took)} videos ("
            + ", ".join(f"{k} {kinds[k]}" for k in TEST_KINDS if kinds[k])
            + f"), {max(took):.1f}s to encode the slowest"
        )
    for s in ("train", "val"):
        kinds = Counter(r["kind"] for r in records[s])
        lines.append(f"  {s}: {len(records[s])} clips (" + ", ".join(f"{k} {kinds[k]}" for k in CLIP_KINDS) + ")")
    return "\n".join(lines)
