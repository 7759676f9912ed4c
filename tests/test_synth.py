"""vtg.data.synth: the synthetic world's records are exact, checked against the pixels of the decoded MP4s."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from vtg.data.records import read_jsonl
from vtg.data.synth import COLOURS, KINDS, SPLITS, SynthConfig, generate, make_scene
from vtg.data.video import FrameSampling, read_video
from vtg.errors import UserError


def _scenes(world):
    with open(world / "scenes.jsonl") as f:
        return {s["video"]: s for s in map(json.loads, f)}


def _records(world):
    out = []
    for split in SPLITS:
        records, report = read_jsonl(world / f"{split}.jsonl", check_video=True)
        assert not report.errors, report.summary()
        assert report.n_ok == report.n_read == len(records)
        out += records
    return out


def test_deterministic_by_seed(tmp_path):
    cfg = SynthConfig(n_videos=4, seed=3, min_duration=5.0, max_duration=8.0)
    a, b = generate(cfg, tmp_path / "a", workers=1), generate(cfg, tmp_path / "b", workers=2)
    for split in SPLITS:
        assert a[split].read_bytes() == b[split].read_bytes()
    assert (tmp_path / "a/scenes.jsonl").read_bytes() == (tmp_path / "b/scenes.jsonl").read_bytes()
    other = generate(SynthConfig(n_videos=4, seed=4, min_duration=5.0, max_duration=8.0), tmp_path / "c", workers=1)
    assert b"".join(p.read_bytes() for p in other.values()) != b"".join(p.read_bytes() for p in a.values())
    assert json.loads((tmp_path / "a/world.json").read_text())["seed"] == 3


def test_records_valid_and_well_formed(synth_world):
    records = _records(synth_world)
    cfg = json.loads((synth_world / "world.json").read_text())
    assert len({r.id for r in records}) == len(records)
    assert {r.extra["kind"] for r in records} == set(KINDS)
    for r in records:
        assert cfg["min_duration"] <= r.duration <= cfg["max_duration"]
        assert all(e - s >= 2 / cfg["fps"] - 1e-9 for s, e in r.moments)  # events last >= 2 frames
        assert (r.moments == []) == (r.extra["kind"] == "absent")
        if r.extra["kind"] == "multi":
            assert len(r.moments) >= 2


def test_splits_disjoint_by_video(synth_world):
    videos = defaultdict(set)
    for r in _records(synth_world):
        videos[r.split].add(r.video)
    assert set(videos) == set(SPLITS)
    assert not (videos["train"] & videos["val"] or videos["train"] & videos["test"] or videos["val"] & videos["test"])
    assert sum(len(v) for v in videos.values()) == 12


def _is_colour(px: np.ndarray, rgb) -> np.ndarray:
    return np.abs(px.astype(int) - np.array(rgb)).max(axis=-1) < 45


def test_pixels_match_ground_truth(synth_world):
    """Decode every video at its own frame rate: each object's colour is at its box centre in exactly the frames of
    its intervals; everything outside the boxes is grey background; each record's moments follow from the scene."""
    scenes, records = _scenes(synth_world), _records(synth_world)
    for video, scene in scenes.items():
        v = read_video(synth_world / video, FrameSampling(fps=scene["fps"], min_pixels=56 * 56, max_frames=10_000))
        frames = v.frames.permute(0, 2, 3, 1).numpy()
        assert frames.shape[0] == scene["frames"] and v.metadata.timestamps[1] == 1 / scene["fps"]
        background = np.ones(frames.shape[1:3], bool)
        for o in scene["objects"]:
            x0, y0, x1, y1 = o["box"]
            centre = frames[:, (y0 + y1) // 2, (x0 + x1) // 2]
            on = np.zeros(len(frames), bool)
            for a, b in o["intervals"]:
                on[a:b] = True
            assert np.array_equal(_is_colour(centre, COLOURS[o["colour"]]), on), (video, o)
            background[max(0, y0 - 3) : y1 + 3, max(0, x0 - 3) : x1 + 3] = False
        spread = frames[:, background].max(axis=-1).astype(int) - frames[:, background].min(axis=-1)
        assert spread.max() < 40, video  # grey: no hidden coloured object
    by_video = defaultdict(list)
    for r in records:
        by_video[r.video].append(r)
    for video, recs in by_video.items():
        _check_answers(scenes[video], recs)


def _check_answers(scene, records):
    fps = scene["fps"]
    objs = {f"{o['colour']} {o['shape']}": [[a / fps, b / fps] for a, b in o["intervals"]] for o in scene["objects"]}
    for r in records:
        kind, target = r.extra["kind"], r.extra["target"]
        assert target in r.query
        if kind == "absent":
            assert target not in objs and r.moments == []
        elif kind in ("single", "multi"):
            assert r.moments == objs[target] and (len(r.moments) == 1) == (kind == "single")
        else:
            m = re.match(
                r"(after|before) the (\w+ \w+) (disappears|appears), when does the (\w+ \w+) appear\?", r.query
            )
            assert m and m.group(4) == target, r.query
            (anchor,) = objs[m.group(2)]  # the anchor is shown exactly once: the relation is unambiguous
            keep = [s >= anchor[1] if m.group(1) == "after" else e <= anchor[0] for s, e in objs[target]]
            expected = [iv for iv, k in zip(objs[target], keep) if k]
            assert r.moments == expected and 0 < len(expected) < len(objs[target]), r.query


def test_config_rejects_impossible_settings():
    for bad, msg in [
        (dict(min_duration=2.0), "at least 10 frames"),
        (dict(kinds=("single", "sometimes")), "kinds"),
        (dict(split_fractions=(0.5, 0.2, 0.2)), "summing to 1"),
        (dict(size=8), "size"),
        (dict(min_duration=10.0, max_duration=5.0), "min_duration <= max_duration"),
        (dict(n_videos=0), "n_videos"),
    ]:
        with pytest.raises(UserError, match=msg):
            SynthConfig(**bad)


def test_odd_size_and_single_kind_world(tmp_path):
    generate(SynthConfig(n_videos=2, size=45, kinds=("single",), min_duration=5, max_duration=6), tmp_path, workers=1)
    records = _records(tmp_path)
    assert [r.extra["kind"] for r in records] == ["single", "single"]
    v = read_video(tmp_path / records[0].video, FrameSampling(fps=2.0, image_factor=2, min_pixels=4))
    assert v.metadata.width == v.metadata.height == 46  # padded to even for yuv420p


def test_one_kind_per_video_world(tmp_path):
    generate(
        SynthConfig(n_videos=8, kinds=KINDS, one_kind_per_video=True, min_duration=8, max_duration=10),
        tmp_path,
        workers=1,
    )
    records, scenes = _records(tmp_path), _scenes(tmp_path)
    by_video = defaultdict(list)
    for r in records:
        by_video[r.video].append(r)
    assert len(by_video) == 8 and all(len(rs) == 1 for rs in by_video.values())
    kinds = [by_video[f"videos/v{i:05d}.mp4"][0].extra["kind"] for i in range(8)]
    assert kinds == list(KINDS) * 2  # in turn by index, balanced
    for video, (r,) in by_video.items():
        shown = {f"{o['colour']} {o['shape']}" for o in scenes[video]["objects"]}
        assert len(shown) == (2 if r.extra["kind"] == "compositional" else 1)
        assert (r.extra["target"] in shown) == (r.extra["kind"] != "absent")
    default = SynthConfig(n_videos=8, kinds=KINDS, min_duration=8, max_duration=10)
    assert [q["kind"] for q in make_scene(default, 3)["queries"]] == list(KINDS)  # default: every kind, every video


def test_cli_end_to_end(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "vtg",
        "data",
        "synth",
        "--out",
        str(tmp_path / "w"),
        "--n",
        "3",
        "--seed",
        "1",
        "--min-duration",
        "5",
        "--max-duration",
        "7",
        "--kinds",
        "single,absent",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "synth: wrote 3 videos" in p.stdout and "train:" in p.stdout
    records = _records(tmp_path / "w")
    assert len(records) == 6 and {r.extra["kind"] for r in records} == {"single", "absent"}
    bad = subprocess.run(
        cmd[:-2] + ["--kinds", "single,sometimes"], capture_output=True, text=True, env=env, timeout=300
    )
    assert bad.returncode == 2 and "kinds must be" in bad.stderr and "Traceback" not in bad.stderr
