"""A stream's false announcements: fragments of true moments? And an end rule that keeps one event one moment.

The question came from bench/stream's test events (its one-object row: of 879 `moment.started`, 59 % overlapped a
true moment without starting within ±2 s of it); everything chosen here is chosen on validation streams only:
`experiments/stream_thresholds`' streams (seed 2, never the test families), replayed once with every window's
candidates recorded (its `sweep.py`), then the trackers re-run for each grid point, for both end rules of
`vtg.stream.MomentTracker` (`seen`: a window that sees the end ends the moment; `gone`: `release` windows without
it do) and `release` up to 8 windows, in the one-object and the distractor world:

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/stream_release/run.py --model OUT/sft/final \
        --world-config OUT/world/world.json --work /tmp/stream-release

(`OUT`: bench/long's --out.) Writes results.json here (every grid point, both rules, both worlds, and the old
default's starts by kind) and prints the rows README.md quotes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "stream_thresholds"))

GRID = {"start_score": (0.3, 0.5, 0.7, 0.85, 0.9), "keep_score": (0.1, 0.3, 0.5, 0.7, 0.85), "confirm": (1, 2),
        "release": (1, 2, 3, 4, 6, 8)}


def main() -> None:
    import sweep  # experiments/stream_thresholds/sweep.py

    from vtg.data.records import load_records

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--world-config", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--videos", type=int, default=16)
    args = ap.parse_args()
    work = Path(args.work)
    config = json.loads(Path(args.world_config).read_text())
    one_object = {**config, "distractors": 0, "colour_decoys": 0, "shape_decoys": 0}
    (work / "one_object.json").parent.mkdir(parents=True, exist_ok=True)
    (work / "one_object.json").write_text(json.dumps(one_object))
    sweep.GRID = GRID
    out = {"grid": GRID, "worlds": {}}
    for name, cfg in (("one object", work / "one_object.json"), ("distractor", Path(args.world_config))):
        ns = argparse.Namespace(world=None, world_out=str(work / name.replace(" ", "_")), world_config=str(cfg),
                                seed=None, videos=args.videos, durations="10", out=str(work))  # fmt: skip
        world = sweep.val_world(ns)
        records = load_records(world / "test.jsonl")
        t0 = time.perf_counter()
        cache = work / f"{name.replace(' ', '_')}_windows.pkl"
        if cache.exists():
            recorded, base = pickle.loads(cache.read_bytes())
        else:
            recorded, base = sweep.record_windows(args.model, records, world, {}, 16)
            cache.write_bytes(pickle.dumps((recorded, base)))
        replay_s = round(time.perf_counter() - t0, 1)
        rules = {rule: sweep.sweep(records, recorded, dataclasses.replace(base, end_rule=rule))
                 for rule in ("seen", "gone")}  # fmt: skip
        world_out = {"streams": len(records), "replay_s": replay_s, "rows": rules,
                     "old_default_starts": classify_starts(records, recorded, dataclasses.replace(
                         base, start_score=OLD[0], keep_score=OLD[1], confirm=OLD[2], release=OLD[3], end_rule="seen"))}
        print(f"{name}: the old default's moment.started, by kind: {world_out['old_default_starts']}")
        print(f"== {name}: {len(records)} streams, replay {replay_s} s", flush=True)
        for label, rule, point in (("old default", "seen", OLD), ("new default", "gone", NEW)):
            r = next(r for r in rules[rule] if (r["start_score"], r["keep_score"], r["confirm"], r["release"]) == point)
            world_out[label] = r
            print(f"{label} ({rule}, {point}): {line(r)}")
        for rule, rows in rules.items():
            for rel in GRID["release"]:
                b = max((r for r in rows if r["release"] == rel), key=lambda r: (r["event_F1@2s"],
                                                                                 -r["false_alarms_per_hour"]))
                print(f"  {rule} release {rel}: best at {b['start_score']}/{b['keep_score']}: {line(b)}")
        out["worlds"][name] = world_out
        (HERE / "results.json").write_text(json.dumps(out, indent=1))


OLD = (0.85, 0.85, 1, 2)  # start_score, keep_score, confirm, release (experiments/stream_thresholds' choice)
NEW = (0.7, 0.7, 1, 2)


def classify_starts(records, recorded, settings) -> dict[str, int]:
    """Each `moment.started` of a setting on the validation streams: within ±2 s of a true start, overlapping a true
    moment elsewhere (the same event announced again: a fragment), on a stream without the event, or far from any
    true moment (a phantom)."""
    from collections import Counter

    from vtg.stream import MomentTracker

    kinds = Counter()
    for r in records:
        if recorded[r.id]["error"]:
            continue
        tracker = MomentTracker("q", settings)
        for ws, we, at, cands in recorded[r.id]["windows"]:
            tracker.observe(ws, we, cands, at=at)
        truth = [(a, b) for a, b in r.moments]
        for m in tracker.moments:
            end = m.end if m.end is not None else m.start
            if not truth:
                kinds["stream without the event"] += 1
            elif any(abs(m.start - a) <= 2 for a, _ in truth):
                kinds["within 2 s of a true start"] += 1
            elif any(m.start < b + 2 and end > a - 2 for a, b in truth):
                kinds["overlapping a true moment (fragment)"] += 1
            else:
                kinds["far from any true moment"] += 1
    return dict(kinds)


def line(r: dict) -> str:
    return (f"event F1 {r['event_F1@2s']:.1f}, span F1 {r['span_F1@IoU0.5']:.1f}, false alarms/h "
            f"{r['false_alarms_per_hour']}, start delay {r['start_delay_median_s']} s, end delay "
            f"{r['end_delay_median_s']} s")  # fmt: skip


if __name__ == "__main__":
    main()
