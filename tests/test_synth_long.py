"""vtg.data.synth_long: long test videos and window-like training clips, with truth checked against decoded pixels.

"Long" videos are 0.5–1 min here (the properties do not need 60 min); the family and memory tests use longer ones
where that is the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict

import numpy as np
import pytest

from vtg.data.records import read_jsonl
from vtg.data.synth import COLOURS, MIN_GAP, all_query_texts
from vtg.data.synth_long import (
    CHUNK_BYTES,
    CLIP_KINDS,
    SPLITS,
    TEST_KINDS,
    LongSynthConfig,
    benchmark_families,
    clips,
    generate_long,
    render_chunks,
    target_intervals,
    timeline,
)
from vtg.data.video import FrameSampling, read_video
from vtg.errors import UserError

SMALL = dict(
    durations_min=(0.5, 1.0),
    videos_per_length=4,
    event_s=(2.0, 30.0),
    absent_fraction=0.25,
    distractors=1,
    train_clips=30,
    val_clips=10,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("long_world")
    generate_long(LongSynthConfig(**SMALL), out, workers=2)
    return out


def _records(world):
    out = {}
    for split in SPLITS:
        records, report = read_jsonl(world / f"{split}.jsonl", check_video=True)
        assert not report.errors and not report.fixes, report.summary()
        out[split] = records
    return out


def _scenes(world):
    with open(world / "scenes.jsonl") as f:
        return {s["video"]: s for s in map(json.loads, f)}


def _on_runs(on: np.ndarray, fps: float) -> list[list[float]]:
    """[start, end] seconds of each run of True frames (frame i covers [i/fps, (i+1)/fps))."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
    return [[a / fps, b / fps] for a, b in zip(edges[::2].tolist(), edges[1::2].tolist())]


def _is_colour(px: np.ndarray, rgb) -> np.ndarray:
    return np.abs(px.astype(int) - np.array(rgb)).max(axis=-1) < 45


def test_records_load_and_are_well_formed(world):
    records = _records(world)
    assert [len(records[s]) for s in SPLITS] == [8, 30, 10]
    every = [r for s in SPLITS for r in records[s]]
    assert len({r.id for r in every}) == len(every) and len({r.video for r in every}) == len(every)
    words = set(all_query_texts())  # the tiny tokenizer is trained on these: it knows every long-world query
    assert all(r.query in words and r.extra["target"] in r.query for r in every)
    assert {r.extra["kind"] for r in records["test"]} <= set(TEST_KINDS)
    assert sorted({r.extra["length_min"] for r in records["test"]}) == [0.5, 1.0]
    for r in records["test"]:
        assert r.duration == r.extra["length_min"] * 60 and r.source == "synth-long" and r.split == "test"
    for split in ("train", "val"):
        for r in records[split]:
            assert r.extra["kind"] in CLIP_KINDS and 8 <= r.duration <= 20 and r.split == split
            assert r.extra["source_video"].startswith(f"{split}-")  # cut from its own split's long videos
            assert r.extra["clip_end"] - r.extra["clip_start"] == r.duration


def test_decoded_pixels_match_every_record(world):
    """Decode every video and clip at its fps: the runs of frames showing the queried object's colour at its box
    centre are exactly the record's moments (so borders are right to the frame); every other object shows only in
    its own intervals, and the rest of the frame is grey."""
    scenes, records = _scenes(world), _records(world)
    for r in [r for s in SPLITS for r in records[s]]:
        scene = scenes[r.video]
        v = read_video(world / r.video, FrameSampling(fps=r.extra["fps"], min_pixels=56 * 56, max_frames=10_000))
        frames = v.frames.permute(0, 2, 3, 1).numpy()
        assert len(frames) == scene["frames"] == round(r.duration * r.extra["fps"])
        background = np.ones(frames.shape[1:3], bool)
        shown = {}
        for o in scene["objects"]:
            x0, y0, x1, y1 = o["box"]
            on = _is_colour(frames[:, (y0 + y1) // 2, (x0 + x1) // 2], COLOURS[o["colour"]])
            shown[f"{o['colour']} {o['shape']}"] = _on_runs(on, scene["fps"])
            assert shown[f"{o['colour']} {o['shape']}"] == [[a / 2, b / 2] for a, b in o["intervals"]], r.video
            background[max(0, y0 - 3) : y1 + 3, max(0, x0 - 3) : x1 + 3] = False
        spread = frames[:, background].max(axis=-1).astype(int) - frames[:, background].min(axis=-1)
        assert spread.max() < 40, r.video
        assert r.moments == shown.get(r.extra["target"], []), r.id
        assert (r.extra["target"] in shown) == (not scene["absent"])  # a clip's scene: its long video's objects


def test_clip_truth_is_cut_and_rebased():
    """Clips are windows of their long video: truth = the queried object's events cut at the clip's borders and
    rebased to its start; empty clips show none of it, the share of them is exact, and cut moments occur."""
    cfg = LongSynthConfig(**{**SMALL, "train_clips": 200, "empty_fraction": 0.3})
    made = clips(cfg, "train")
    assert sum(not _cut(c) for c in made) == 60  # round(200 × 0.3), exactly
    cut_start = cut_end = inside = 0
    for c in made:
        n, s, video = c["frames"], c["start"], c["source"]
        assert 16 <= n <= 40 and n % 2 == 0 and 0 <= s <= video["frames"] - n
        moments = _cut(c)
        for (a, b), (ca, cb) in zip([iv for iv in target_intervals(video) if iv[1] > s and iv[0] < s + n], moments):
            assert (ca, cb) == (max(a, s) - s, min(b, s + n) - s) and 0 <= ca < cb <= n
            cut_start += a < s
            cut_end += b > s + n
            inside += a >= s and b <= s + n
    assert cut_start and cut_end and inside  # events cut at either border, and whole ones
    empty_sources = Counter(c["source"]["absent"] for c in made if not _cut(c))
    assert empty_sources[True] and empty_sources[False]  # empty windows of present videos, and of absent ones
    for fraction in (0.0, 1.0):
        share = LongSynthConfig(**{**SMALL, "train_clips": 20, "empty_fraction": fraction})
        assert [bool(_cut(c)) for c in clips(share, "train")] == [fraction == 0.0] * 20


def _cut(clip) -> list[list[int]]:
    from vtg.data.synth_long import clip_intervals

    return clip_intervals(target_intervals(clip["source"]), clip["start"], clip["frames"])


def test_clip_records_say_the_window(world):
    """The clip's record: moments are the cut events in seconds, 'clip-empty' exactly when there are none; the
    clip's frames are the long video's frames [clip_start, clip_end) (same pixels, rendered chunk by chunk)."""
    cfg = LongSynthConfig(**SMALL)
    records = {r.video: r for r in _records(world)["train"]}
    for c in clips(cfg, "train"):
        r = records[f"clips/train/c{c['index']:06d}.mp4"]
        assert r.moments == [[a / 2, b / 2] for a, b in _cut(c)]
        assert (r.extra["kind"] == "clip-empty") == (r.moments == [])
        assert r.extra["clip_start"] == c["start"] / 2 and r.extra["length_min"] == c["source"]["minutes"]
    c = next(c for c in clips(cfg, "train") if _cut(c))
    whole = np.concatenate(list(render_chunks(cfg, c["source"])))
    part = np.concatenate(list(render_chunks(cfg, c["source"], c["start"], c["start"] + c["frames"])))
    assert np.array_equal(part, whole[c["start"] : c["start"] + c["frames"]])


def test_family_has_the_same_events_at_every_length():
    """Video j of every length (2 to 60 min) shows the same object in the same cell with the same event lengths in
    the same order, at the same relative places; only the empty stretches differ."""
    cfg = LongSynthConfig(videos_per_length=12, distractors=2)
    for family in benchmark_families(cfg):
        versions = [timeline(cfg, family, m) for m in cfg.durations_min]
        assert [v["frames"] for v in versions] == [240, 1200, 3600, 7200]
        for v in versions:
            assert {k: v[k] for k in ("query", "target", "absent")} == {
                k: family[k] for k in ("query", "target", "absent")
            }
            for o, fo in zip(v["objects"], family["objects"], strict=True):
                assert (o["colour"], o["shape"], o["cell"]) == (fo["colour"], fo["shape"], fo["cell"])
                assert [b - a for a, b in o["intervals"]] == fo["lengths"]
                assert sum(fo["lengths"]) <= cfg.event_budget == 120  # fits the 2-min version with room to spare
                assert all(4 <= n <= 360 for n in fo["lengths"]) and 1 <= len(fo["lengths"]) <= 3
                assert 0 <= o["intervals"][0][0] and o["intervals"][-1][1] <= v["frames"]
                assert all(b2 - a1 >= MIN_GAP for (_, a1), (b2, _) in zip(o["intervals"], o["intervals"][1:]))
        for objects in zip(*(v["objects"] for v in versions)):
            # the empty frames before each event, as a share of the video's empty frames: the same at every length
            (first, free_short), *longer = [
                _empty_before(o["intervals"], v["frames"]) for o, v in zip(objects, versions)
            ]
            for share, _ in longer:  # each is floor(free × the family's cumulative weight) / free
                assert np.allclose(share, first, rtol=0, atol=1 / free_short), (share, first)
    kinds = Counter(len(f["objects"][0]["lengths"]) for f in benchmark_families(cfg) if not f["absent"])
    assert set(kinds) == {1, 2, 3}


def _empty_before(intervals: list[list[int]], n: int) -> tuple[list[float], int]:
    """(empty frames before each event / all empty frames beyond the minimum gaps, that count)."""
    free = n - sum(b - a for a, b in intervals) - (len(intervals) - 1) * MIN_GAP
    out, used = [], 0
    for j, (a, b) in enumerate(intervals):
        out.append((a - used - j * MIN_GAP) / free)
        used += b - a
    return out, free


def test_family_records_ask_the_same_query_at_every_length(world):
    by_family = defaultdict(list)
    for r in _records(world)["test"]:
        by_family[r.extra["family"]].append(r)
    assert len(by_family) == 4
    for family in by_family.values():
        assert [r.extra["length_min"] for r in family] == [0.5, 1.0]
        assert len({(r.query, r.extra["kind"], len(r.moments)) for r in family}) == 1
        assert len({tuple(round(e - s, 6) for s, e in r.moments) for r in family}) == 1  # same event lengths


def test_absent_videos(world):
    """round(4 × 0.25) = 1 family is absent at every length: truth [], the named object is not shown, another is."""
    scenes = _scenes(world)
    absent = [r for r in _records(world)["test"] if r.extra["kind"] == "long-absent"]
    assert len(absent) == 2 and len({r.extra["family"] for r in absent}) == 1
    for r in absent:
        shown = {f"{o['colour']} {o['shape']}" for o in scenes[r.video]["objects"]}
        assert r.moments == [] and r.extra["target"] not in shown and len(shown) == 2  # a decoy + 1 distractor


def test_decoys_share_the_queried_colour_or_shape():
    """Decoys are distractors of the queried colour (another shape) or shape (another colour): present or absent, a
    family shows them, and an absent one never shows the queried kind. Without decoys the layout is unchanged."""
    cfg = LongSynthConfig(videos_per_length=20, distractors=3, colour_decoys=1, shape_decoys=1)
    families = benchmark_families(cfg)
    assert sum(f["absent"] for f in families) == 4
    for f in families:
        t = f["target"]
        kinds = [(o["colour"], o["shape"]) for o in f["objects"]]
        assert len(kinds) == 4 == len(set(kinds)) == len({o["cell"] for o in f["objects"]})
        others = kinds if f["absent"] else kinds[1:]
        assert (t["colour"], t["shape"]) not in others
        assert f["absent"] or kinds[0] == (t["colour"], t["shape"])
        assert others[0][0] == t["colour"] and others[0][1] != t["shape"]  # the colour decoy
        assert others[1][1] == t["shape"] and others[1][0] != t["colour"]  # the shape decoy
        assert f"{t['colour']} {t['shape']}" in f["query"]
    plain = LongSynthConfig(videos_per_length=20, distractors=3)
    for f, g in zip(benchmark_families(plain), families, strict=True):  # the same queried object, events, cell
        assert f["target"] == g["target"] and f["absent"] == g["absent"]
        if not f["absent"]:
            assert f["objects"][0] == g["objects"][0]
    shares = Counter(o["colour"] == f["target"]["colour"] for f in benchmark_families(plain) for o in f["objects"][1:])
    assert shares[False] > shares[True]  # without decoys most distractors differ in colour from the queried object
    for bad, msg in [
        (dict(distractors=1, colour_decoys=1, shape_decoys=1), r"must be at most distractors \(--distractors\) \(1\)"),
        (dict(distractors=4, colour_decoys=3), r"colour_decoys \(--colour-decoys\) must be at most 2"),
        (dict(distractors=4, shape_decoys=4), r"shape_decoys \(--shape-decoys\) must be at most 3"),
        (dict(distractors=1, shape_decoys=-1), "shape_decoys"),
    ]:
        with pytest.raises(UserError, match=msg):
            LongSynthConfig(**bad)


def test_same_seed_same_world_byte_for_byte(tmp_path):
    cfg = LongSynthConfig(**{**SMALL, "videos_per_length": 2, "train_clips": 6, "val_clips": 2})
    a, b = generate_long(cfg, tmp_path / "a", workers=1), generate_long(cfg, tmp_path / "b", workers=2)
    for split in SPLITS:
        assert a[split].read_bytes() == b[split].read_bytes()
    for name in ("scenes.jsonl", "world.json", "videos/test/f0001-1min.mp4", "clips/train/c000005.mp4"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = generate_long(LongSynthConfig(**{**SMALL, "seed": 1, "train_clips": 6, "val_clips": 2}), tmp_path / "c")
    assert other["test"].read_bytes() != a["test"].read_bytes()
    assert json.loads((tmp_path / "a/world.json").read_text())["world"] == "synth-long"


def test_config_rejects_impossible_settings():
    for bad, msg in [
        (dict(durations_min=()), "distinct positive minutes"),
        (dict(durations_min=(2, 2.0)), "distinct positive minutes"),
        (dict(durations_min=(0.1,)), r"clips of up to 20s are longer than the shortest length \(0.1 min"),
        (dict(durations_min=(0.5,), event_s=(10, 20)), "3 events of at least 10s do not fit"),
        (dict(events_per_video=(0, 2)), r"events_per_video \(--events-per-video\) must be two numbers"),
        (dict(events_per_video=(3, 1)), "0 < min <= max"),
        (dict(event_s=(0.2, 0.4)), "no whole number of frames"),
        (dict(clip_s=(20, 8)), r"clip_s \(--clip-seconds\) must be two numbers 0 < min <= max"),
        (dict(empty_fraction=1.5), r"empty_fraction \(--empty-fraction\) must be a number in \[0, 1\]"),
        (dict(absent_fraction=-0.1), "absent_fraction"),
        (dict(max_event_share=1.0), "max_event_share"),
        (dict(distractors=9), "at most 8"),
        (dict(videos_per_length=0), "videos_per_length"),
        (dict(train_clips=-1), "train_clips"),
        (dict(size=16), "size"),
        (dict(fps=0), "fps"),
        (dict(durations_min=5), "must be a list of numbers"),
    ]:
        with pytest.raises(UserError, match=msg):
            LongSynthConfig(**bad)


def test_memory_stays_flat_while_writing_a_long_video(tmp_path):
    """A 30-min 112×112 video is 3600 frames, 135 MB of uint8 pixels: written in chunks, the peak RSS of a fresh
    process grows by a fraction of that (chunks of CHUNK_BYTES, plus the encoder's own buffers)."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        from pathlib import Path
        from vtg.data.synth_long import LongSynthConfig, benchmark_families, timeline, write_video
        cfg = LongSynthConfig(durations_min=(30,), videos_per_length=1, size=112)
        family = benchmark_families(cfg)[0]
        write_video(cfg, timeline(cfg, family, 0.5), Path(r"{tmp_path}") / "warm.mp4")  # load the encoder
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        n = write_video(cfg, timeline(cfg, family, 30), Path(r"{tmp_path}") / "long.mp4")
        print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    frames, grown_mb = p.stdout.split()
    assert int(frames) == 3600
    whole_mb = 3600 * 112 * 112 * 3 / 2**20
    assert float(grown_mb) < 0.25 * whole_mb, (grown_mb, whole_mb)
    assert CHUNK_BYTES < 0.1 * whole_mb * 2**20


def test_chunks_do_not_change_the_pixels():
    """Noise comes in fixed seeded blocks, so any cut of a video into chunks renders the same frames."""
    cfg = LongSynthConfig(durations_min=(4,), videos_per_length=1, distractors=3)
    video = timeline(cfg, benchmark_families(cfg)[0], 4)
    chunks = list(render_chunks(cfg, video))
    assert len(chunks) > 1 and max(c.nbytes for c in chunks) <= CHUNK_BYTES
    whole = np.concatenate(chunks)
    assert len(whole) == 480
    for a, b in [(0, 1), (63, 65), (100, 479), (250, 480)]:
        assert np.array_equal(np.concatenate(list(render_chunks(cfg, video, a, b))), whole[a:b])


def test_cli_long_world(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "vtg", "data", "synth", "--out", str(tmp_path / "w")]
    flags = ["--long", "--durations-min", "0.5,1", "--videos-per-length", "2", "--event-seconds", "2,20"]
    flags += ["--train-clips", "5", "--val-clips", "2", "--empty-fraction", "0.4", "--distractors", "2"]
    flags += ["--colour-decoys", "1", "--shape-decoys", "1"]
    p = subprocess.run(base + flags, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "wrote 4 test videos and 7 clips" in p.stdout and "clip-empty 2" in p.stdout
    world = json.loads((tmp_path / "w/world.json").read_text())
    assert world["durations_min"] == [0.5, 1.0] and world["empty_fraction"] == 0.4 and world["distractors"] == 2
    assert (world["colour_decoys"], world["shape_decoys"]) == (1, 1)
    for bad, msg in [
        (["--long", "--n", "3"], "--n: only for the short world"),
        (["--train-clips", "3"], "--train-clips: only for the long world (--long); add --long"),
        (["--long", "--clip-seconds", "8"], "--clip-seconds must be 2 comma-separated numbers"),
        (["--long", "--shape-decoys", "1"], "must be at most distractors (--distractors) (0)"),
        (["--n", "2"], "holds the long synthetic world"),  # the short world would overwrite its records
    ]:
        q = subprocess.run(base + bad, capture_output=True, text=True, env=env, timeout=300)
        assert q.returncode == 2 and msg in q.stderr and "Traceback" not in q.stderr, (bad, q.stderr)
