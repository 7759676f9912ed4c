"""The synthetic grounding world: real H.264 MP4s of coloured shapes that appear and disappear, with exact answers.

Each video has a few objects (colour × shape), each at its own place (no overlap), each visible during whole
frames [a, b) → the moment [a/fps, b/fps] in seconds, exact. Query kinds (record `extra["kind"]`):
- single: an object visible in exactly one interval;
- multi: an object visible 2–3 separate times (several moments);
- compositional: "after X disappears / before X appears, when does Y appear?" with X shown once and Y shown on
  both sides of X, so the answer is a strict, non-empty subset of Y's occurrences;
- absent: a colour/shape combination that is not in the video (`moments: []`).
By default every video holds one query of each kind (so one object per kind, side by side: a query must name the
right one). With `one_kind_per_video` each video holds the objects of one kind only (kinds in turn by video
index): single, multi and absent videos show one object, compositional ones the anchor and the target, so per-kind
skills can be measured without telling objects apart.
Everything is drawn from `numpy.random.default_rng([seed, video index])`: same seed → byte-identical records,
and videos can be generated in any order or in parallel.
Besides the records, `scenes.jsonl` lists every object's colour, shape, pixel box and frame intervals (for tests
and inspection) and `world.json` holds the config.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from vtg.errors import UserError

KINDS = ("single", "multi", "compositional", "absent")
SPLITS = ("train", "val", "test")
COLOURS = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 70, 235), "yellow": (235, 220, 30)}
SHAPES = ("square", "circle", "triangle")
GRID = 3  # objects sit in distinct cells of a GRID × GRID layout, so they never overlap
MIN_EVENT = 2  # frames an object stays visible, at least
MIN_GAP = 2  # frames between two occurrences of the same object, at least
MIN_FRAMES = 10  # enough for 3 occurrences with gaps, or the compositional layout
BASE_GREY = (40, 110)  # a video's background grey is drawn from [40, 110)
NOISE = 12  # grey noise of ±NOISE levels on every pixel, fresh every frame
QUERY_TEMPLATES = ("when does the {o} appear?", "when is the {o} visible?", "find when the {o} is on screen.")
RELATION_TEMPLATES = {
    "after": "after the {a} disappears, when does the {o} appear?",
    "before": "before the {a} appears, when does the {o} appear?",
}  # compositional: o relative to a


@dataclass(frozen=True)
class SynthConfig:
    n_videos: int = 200
    seed: int = 0
    fps: float = 2.0
    size: int = 56  # frame width = height in pixels; odd sizes are padded to even (yuv420p)
    min_duration: float = 5.0
    max_duration: float = 120.0
    kinds: tuple[str, ...] = KINDS
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    one_kind_per_video: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "split_fractions", tuple(float(x) for x in self.split_fractions))
        if not isinstance(self.n_videos, int) or self.n_videos < 1:
            raise UserError(f"synth: n_videos must be a positive integer, got {self.n_videos!r}")
        if not (self.fps > 0):
            raise UserError(f"synth: fps must be > 0, got {self.fps!r}")
        if not isinstance(self.size, int) or self.size < 24:
            raise UserError(f"synth: size must be an integer >= 24 pixels (room for a 3×3 layout), got {self.size!r}")
        if not (0 < self.min_duration <= self.max_duration):
            raise UserError(
                f"synth: need 0 < min_duration <= max_duration, got {self.min_duration!r}, {self.max_duration!r}"
            )
        lo, hi = self.frame_range
        if lo < MIN_FRAMES:
            raise UserError(
                f"synth: min_duration × fps = {self.min_duration * self.fps:g} frames; videos need at "
                f"least {MIN_FRAMES} frames: raise min_duration to {MIN_FRAMES / self.fps:g}s or raise fps"
            )
        if lo > hi:
            raise UserError(
                f"synth: no whole number of frames at {self.fps:g} fps lies between min_duration "
                f"{self.min_duration:g}s and max_duration {self.max_duration:g}s; widen the range"
            )
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise UserError(f"synth: kinds must be distinct names from {list(KINDS)}, got {list(self.kinds)}")
        fr = self.split_fractions
        if len(fr) != 3 or any(x < 0 for x in fr) or abs(sum(fr) - 1) > 1e-6 or fr[0] <= 0:
            raise UserError(
                f"synth: split_fractions must be three numbers >= 0 (train > 0) summing to 1, got {list(fr)}"
            )

    @property
    def frame_range(self) -> tuple[int, int]:
        """Fewest and most frames a video may have (its duration stays within [min_duration, max_duration])."""
        return math.ceil(self.min_duration * self.fps - 1e-9), math.floor(self.max_duration * self.fps + 1e-9)

    @property
    def frame_size(self) -> int:
        return self.size + self.size % 2


# ---------------------------------------------------------------- the scene (pure, seeded)


def _intervals(rng, lo: int, hi: int, k: int) -> list[list[int]]:
    """k disjoint [a, b) frame intervals inside [lo, hi), each >= MIN_EVENT long, >= MIN_GAP apart, at random."""
    need = k * MIN_EVENT + (k - 1) * MIN_GAP
    slack = hi - lo - need
    assert slack >= 0, (lo, hi, k)
    # stars and bars: slack split into margin, k length extras, k-1 gap extras, margin
    cuts = sorted(rng.choice(slack + 2 * k, size=2 * k, replace=False).tolist())
    parts = [b - a - 1 for a, b in zip([-1] + cuts, cuts + [slack + 2 * k])]
    out, t = [], lo + parts[0]
    for j in range(k):
        length = MIN_EVENT + parts[1 + 2 * j]
        out.append([t, t + length])
        t += length + (MIN_GAP + parts[2 + 2 * j] if j < k - 1 else 0)
    return out


def _max_occurrences(frames: int, cap: int = 3) -> int:
    return max(1, min(cap, (frames + MIN_GAP) // (MIN_EVENT + MIN_GAP)))


def _split3(rng, n: int, mins: tuple[int, int, int]) -> tuple[int, int]:
    """Two cut points splitting [0, n) into three segments of at least mins[i] frames."""
    slack = n - sum(mins)
    a, b = sorted(rng.integers(0, slack + 1, size=2).tolist())
    return mins[0] + a, mins[0] + mins[1] + b


def _compositional(rng, n: int) -> tuple[str, list[list[int]], list[list[int]], list[list[int]]]:
    """(relation, anchor intervals, target intervals, answer intervals): target shown on both sides of the anchor."""
    relation = "after" if rng.random() < 0.5 else "before"
    answer_k = 2 if n >= 16 and rng.random() < 0.5 else 1
    answer_min = answer_k * MIN_EVENT + (answer_k - 1) * MIN_GAP
    if relation == "after":
        c1, c2 = _split3(rng, n, (MIN_EVENT, MIN_EVENT, answer_min))
        other, answer = _intervals(rng, 0, c1, 1), _intervals(rng, c2, n, answer_k)
    else:
        c1, c2 = _split3(rng, n, (answer_min, MIN_EVENT, MIN_EVENT))
        answer, other = _intervals(rng, 0, c1, answer_k), _intervals(rng, c2, n, 1)
    anchor = _intervals(rng, c1, c2, 1)
    return relation, anchor, sorted(other + answer), answer


def make_scene(cfg: SynthConfig, index: int) -> dict[str, Any]:
    """One video's objects, timelines and queries, drawn from rng([seed, index])."""
    import numpy as np

    rng = np.random.default_rng([cfg.seed, index])
    lo, hi = cfg.frame_range
    if lo + lo % 2 <= hi - hi % 2:  # even counts: Qwen-VL pairs frames, so sampling at the video's fps drops none
        lo, hi = lo + lo % 2, hi - hi % 2
    n = min(max(2 * int(round(rng.uniform(cfg.min_duration, cfg.max_duration) * cfg.fps / 2)), lo), hi)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    order = rng.permutation(len(combos)).tolist()
    cells = rng.permutation(GRID * GRID).tolist()
    objects: list[dict[str, Any]] = []

    def new_object(intervals):
        colour, shape = combos[order[len(objects)]]
        objects.append({"colour": colour, "shape": shape, "cell": cells[len(objects)], "intervals": intervals})
        return objects[-1]

    queries: list[dict[str, Any]] = []
    # one kind per video: in turn by index (no extra random draw, so default worlds stay byte-identical)
    kinds = (cfg.kinds[index % len(cfg.kinds)],) if cfg.one_kind_per_video else cfg.kinds
    for kind in kinds:
        if kind == "single":
            o = new_object(_intervals(rng, 0, n, 1))
            queries.append({"kind": kind, "target": o, "moments": o["intervals"]})
        elif kind == "multi":
            k = int(rng.integers(2, _max_occurrences(n) + 1))
            o = new_object(_intervals(rng, 0, n, k))
            queries.append({"kind": kind, "target": o, "moments": o["intervals"]})
        elif kind == "compositional":
            relation, anchor, target, answer = _compositional(rng, n)
            a, t = new_object(anchor), new_object(target)
            queries.append({"kind": kind, "target": t, "anchor": a, "relation": relation, "moments": answer})
    if not objects:  # absent-only worlds still show something
        new_object(_intervals(rng, 0, n, 1))
    if "absent" in kinds:
        colour, shape = combos[order[len(objects)]]  # never used by a present object
        queries.append({"kind": "absent", "target": {"colour": colour, "shape": shape}, "moments": []})
    for q in queries:
        q["query"] = _query_text(rng, q)
    return {"index": index, "frames": n, "objects": objects, "queries": queries}


def _query_text(rng, q: dict[str, Any]) -> str:
    name = f"{q['target']['colour']} {q['target']['shape']}"
    if q["kind"] == "compositional":
        anchor = f"{q['anchor']['colour']} {q['anchor']['shape']}"
        return RELATION_TEMPLATES[q["relation"]].format(a=anchor, o=name)
    return QUERY_TEMPLATES[int(rng.integers(len(QUERY_TEMPLATES)))].format(o=name)


def all_query_texts() -> list[str]:
    """Every query wording the world can produce (the tiny tokenizer learns its words from them)."""
    names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    texts = [t.format(o=n) for n in names for t in QUERY_TEMPLATES]
    for a in names:
        for template in RELATION_TEMPLATES.values():
            texts += [template.format(a=a, o=n) for n in names if n != a]
    return texts


# ---------------------------------------------------------------- drawing and encoding


def cell_box(cell: int, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box of a layout cell, with a margin so shapes never touch."""
    step = size / GRID
    x0, y0 = int((cell % GRID) * step), int((cell // GRID) * step)
    m = max(1, int(step * 0.12))
    return x0 + m, y0 + m, int(x0 + step) - m, int(y0 + step) - m


def _shape_mask(shape: str, h: int, w: int):
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    if shape == "square":
        return np.ones((h, w), bool)
    if shape == "circle":
        return (yy - cy) ** 2 / (h / 2) ** 2 + (xx - cx) ** 2 / (w / 2) ** 2 <= 1.0
    return np.abs(xx - cx) <= (yy + 1) / h * (w / 2)  # triangle, apex up


def render_frames(scene: dict[str, Any], cfg: SynthConfig):
    """uint8 [T, H, W, 3] frames: a dark noisy background, each object drawn in the frames it is visible."""
    import numpy as np

    size = cfg.frame_size
    rng = np.random.default_rng([cfg.seed, scene["index"], 1])
    base = int(rng.integers(*BASE_GREY))
    frames = np.full((scene["frames"], size, size, 3), base, np.int16)
    frames += rng.integers(-NOISE, NOISE + 1, size=(scene["frames"], size, size, 1), dtype=np.int16)  # grey noise
    frames = frames.clip(0, 255).astype(np.uint8)
    paint_objects(frames, scene["objects"], cfg.size)
    return frames


def paint_objects(frames, objects: list[dict[str, Any]], size: int, first: int = 0) -> None:
    """Draw each object (colour, shape, cell, frame intervals) in place into `frames`, which hold the video's frames
    [first, first + len(frames)): the long world paints a video chunk by chunk with the same pixels."""
    import numpy as np

    stop = first + len(frames)
    for o in objects:
        x0, y0, x1, y1 = cell_box(o["cell"], size)
        mask = _shape_mask(o["shape"], y1 - y0, x1 - x0)
        colour = np.array(COLOURS[o["colour"]], np.uint8)
        for a, b in o["intervals"]:
            a, b = max(a, first), min(b, stop)
            if a < b:
                region = frames[a - first : b - first, y0:y1, x0:x1]
                region[:, mask] = colour


def encode_mp4(frames, path: str | os.PathLike, fps: float) -> None:
    """H.264 yuv420p MP4 with pts = frame index / fps (so frame i is on screen from i/fps)."""
    encode_mp4_chunks([frames], path, fps)


def encode_mp4_chunks(chunks: Iterable[Any], path: str | os.PathLike, fps: float) -> int:
    """`encode_mp4` for frames that arrive in chunks (uint8 [t, H, W, 3] each, numbered on from 0), so a long video
    is never in memory whole; returns the number of frames written."""
    import av

    chunks = iter(chunks)
    first = next(chunks)
    rate = Fraction(fps).limit_denominator(1001)
    i = 0
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = first.shape[2], first.shape[1], "yuv420p"
        s.codec_context.time_base = 1 / rate
        s.options = {"crf": "16", "preset": "veryfast", "tune": "zerolatency"}
        for chunk in itertools.chain([first], chunks):
            for arr in chunk:
                f = av.VideoFrame.from_ndarray(arr, format="rgb24")
                f.pts = i
                i += 1
                for p in s.encode(f):
                    c.mux(p)
        for p in s.encode():
            c.mux(p)
    return i


# ---------------------------------------------------------------- records and the world on disk


def video_name(index: int) -> str:
    return f"videos/v{index:05d}.mp4"


def scene_records(scene: dict[str, Any], cfg: SynthConfig, split: str) -> list[dict[str, Any]]:
    fps = cfg.fps
    out = []
    for q in scene["queries"]:
        t = q["target"]
        out.append(
            {
                "id": f"synth-s{cfg.seed}-v{scene['index']:05d}-{q['kind']}",
                "video": video_name(scene["index"]),
                "duration": round(scene["frames"] / fps, 6),
                "query": q["query"],
                "moments": [[round(a / fps, 6), round(b / fps, 6)] for a, b in q["moments"]],
                "source": "synth",
                "split": split,
                "kind": q["kind"],
                "target": f"{t['colour']} {t['shape']}",
                "fps": fps,
            }
        )
    return out


def scene_summary(scene: dict[str, Any], cfg: SynthConfig) -> dict[str, Any]:
    return {
        "video": video_name(scene["index"]),
        "frames": scene["frames"],
        "fps": cfg.fps,
        "size": cfg.frame_size,
        "objects": [
            {
                "colour": o["colour"],
                "shape": o["shape"],
                "box": list(cell_box(o["cell"], cfg.size)),
                "intervals": o["intervals"],
            }
            for o in scene["objects"]
        ],
    }


def split_of(cfg: SynthConfig) -> list[str]:
    """The split of each video index: a seeded shuffle of the videos cut by split_fractions."""
    import numpy as np

    n = cfg.n_videos
    perm = np.random.default_rng([cfg.seed, 2**31]).permutation(n)
    b1 = round(n * cfg.split_fractions[0])
    b2 = round(n * (cfg.split_fractions[0] + cfg.split_fractions[1]))
    out = [""] * n
    for rank, idx in enumerate(perm.tolist()):
        out[idx] = SPLITS[0] if rank < b1 else SPLITS[1] if rank < b2 else SPLITS[2]
    return out


def _make_video(args: tuple[SynthConfig, int, str]) -> dict[str, Any]:
    cfg, index, out_dir = args
    scene = make_scene(cfg, index)
    encode_mp4(render_frames(scene, cfg), Path(out_dir) / video_name(index), cfg.fps)
    return scene


def check_reused_world(cfg: SynthConfig, out_dir: str | os.PathLike) -> None:
    """Refuse a world already on disk in `out_dir` that `world.json` says was made with settings other than `cfg`
    (reruns reuse it; training on the wrong one would be silent)."""
    meta = Path(out_dir) / "world.json"
    if not meta.exists():
        return
    have = json.loads(meta.read_text())
    want = json.loads(json.dumps(asdict(cfg)))  # tuples as lists, like world.json
    diff = {k: (have.get(k), v) for k, v in want.items() if k in have and have[k] != v}
    if diff:
        said = ", ".join(f"{k}: {a!r} on disk vs {b!r} asked" for k, (a, b) in diff.items())
        raise UserError(
            f"{out_dir} holds a synthetic world made with other settings ({said}); "
            "pass --fresh to start over, or another --out"
        )


def generate(
    cfg: SynthConfig,
    out_dir: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> dict[str, Path]:
    """Write videos/*.mp4, {train,val,test}.jsonl, scenes.jsonl and world.json; returns {split: jsonl path}."""
    from vtg.data.records import write_jsonl

    out = Path(out_dir)
    try:
        (out / "videos").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"synth: cannot create output folder {out}: {e}") from None
    splits = split_of(cfg)
    workers = workers or min(os.cpu_count() or 1, 4, max(1, cfg.n_videos // 50))
    t0, scenes = time.time(), []
    jobs = [(cfg, i, str(out)) for i in range(cfg.n_videos)]
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(_make_video, jobs, chunksize=16) if pool else map(_make_video, jobs)
        for i, scene in enumerate(results, 1):
            scenes.append(scene)
            if progress and (i % max(1, cfg.n_videos // 10) == 0 or i == cfg.n_videos):
                progress(f"synth: {i}/{cfg.n_videos} videos ({time.time() - t0:.1f}s)")
    finally:
        if pool:
            pool.shutdown()
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for scene in scenes:
        by_split[splits[scene["index"]]] += scene_records(scene, cfg, splits[scene["index"]])
    paths = {s: out / f"{s}.jsonl" for s in SPLITS}
    for s in SPLITS:
        write_jsonl(by_split[s], paths[s])
    write_jsonl([scene_summary(sc, cfg) for sc in scenes], out / "scenes.jsonl")
    (out / "world.json").write_text(json.dumps({**asdict(cfg), "frame_size": cfg.frame_size}, indent=1) + "\n")
    if progress:
        progress(summary(by_split, splits, time.time() - t0, out))
    return paths


def summary(by_split: dict[str, list[dict[str, Any]]], splits: list[str], seconds: float, out: Path) -> str:
    videos = Counter(splits)
    lines = [f"synth: wrote {len(splits)} videos to {out} in {seconds:.1f}s"]
    for s in SPLITS:
        kinds = Counter(r["kind"] for r in by_split[s])
        lines.append(
            f"  {s}: {videos[s]} videos, {len(by_split[s])} queries ("
            + ", ".join(f"{k} {kinds[k]}" for k in KINDS if kinds[k])
            + ")"
        )
    return "\n".join(lines)
