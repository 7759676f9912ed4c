"""Choose a stream's trigger thresholds (start_score, keep_score, confirm, release) on validation streams.

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python experiments/stream_thresholds/sweep.py \
        --model MODEL_DIR --world-config WORLD/world.json --out experiments/stream_thresholds

Validation streams are long synthetic videos that are NOT the test families: the test split of a long world built
with the model's own world settings (`--world-config`: the `world.json` of the world it was trained on) but another
seed (`--seed`, default the world's + 1; the test families of seed s are drawn from s), written under `--out/val-
world` (or an existing one with `--world`). Each stream is replayed ONCE (`vtg.eval.streaming.stream_strategy`, the
streams pooled as eval pools them) with `StreamSession.on_window` recording every window's scored candidates; the
trackers do not change what the model is asked, so each grid point re-runs only the trackers
(`vtg.stream.MomentTracker`) over the recorded windows — the events are those a replay with that setting would emit
— and scores them with eval's streaming metrics. Picks the best event F1 (start rule, ±2 s), then fewest false
alarms per hour, then best span F1, then the most demanding evidence.
Writes results.json and README.md's table (between the markers).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GRID = {
    "start_score": (0.3, 0.5, 0.7, 0.85, 0.95),
    "keep_score": (0.1, 0.3, 0.5, 0.7, 0.85),
    "confirm": (1, 2, 3),
    "release": (1, 2),
}
BEGIN, END = "<!-- sweep:begin -->", "<!-- sweep:end -->"


def val_world(args) -> Path:
    if args.world:
        return Path(args.world)
    from vtg.data.synth_long import LongSynthConfig, generate_long

    out = Path(args.world_out or Path(args.out) / "val-world")
    if not (out / "test.jsonl").exists():
        d = json.loads(Path(args.world_config).read_text())
        keep = {f.name for f in dataclasses.fields(LongSynthConfig)}
        cfg = {k: v for k, v in d.items() if k in keep}
        dropped = sorted(set(d) - keep - {"world", "frame_size"})
        if dropped:
            print(f"[sweep] {args.world_config}: keys this version's LongSynthConfig lacks, left out: {dropped}")
        seed = args.seed if args.seed is not None else d["seed"] + 1
        if seed == d["seed"]:
            raise SystemExit(f"--seed {seed} is the training world's seed: its test families are the test set")
        cfg.update(seed=seed, train_clips=0, val_clips=0, videos_per_length=args.videos)
        if args.durations:
            cfg["durations_min"] = [float(x) for x in args.durations.split(",")]
        generate_long(LongSynthConfig(**cfg), out, workers=1)
    return out


def record_windows(model: str, records, root: Path, stream_overrides: dict, batch: int) -> dict:
    """One replay per stream: id -> {"windows": [(window_start, window_end, media_time, candidates)], "media_end",
    "error"}."""
    from vllm import SamplingParams

    from vtg.eval.streaming import StreamLog, stream_strategy
    from vtg.grounding import StrategyRunner
    from vtg.model_folder import ModelFolder
    from vtg.request import Requests
    from vtg.stream import StreamSettings
    from vtg.vllm_engine import make_llm

    folder = ModelFolder.read(model)
    requests = Requests.for_model(folder, mode="multi")
    settings = StreamSettings.for_model(folder, stream_overrides)
    llm = make_llm(model)
    seen: dict[str, list] = {r.id: [] for r in records}
    logs = {}
    for r in records:
        logs[r.id] = StreamLog(on_window=lambda q, ws, we, at, c, rid=r.id: seen[rid].append((ws, we, at, c)))
    out = {}
    with ThreadPoolExecutor(2) as pool:
        runner = StrategyRunner(llm, lambda _k: SamplingParams(temperature=0.0, max_tokens=64), pool)
        for i in range(0, len(records), batch):
            chunk = records[i : i + batch]

            def make(r):
                return lambda: stream_strategy(requests, r.video_path(root), r.query, settings, "multi", logs[r.id])

            outcomes = runner.run({r.id: make(r) for r in chunk})
            for r in chunk:
                out[r.id] = {"windows": seen[r.id], "media_end": logs[r.id].media_end, "error": outcomes[r.id].error}
    return out, settings


def sweep(records, recorded: dict, base) -> list[dict]:
    """Every grid point's streaming metrics from the recorded windows."""
    from vtg.eval.streaming import aggregate, score_stream
    from vtg.stream import MomentTracker

    rows = []
    for start, keep, confirm, release in itertools.product(*GRID.values()):
        if keep > start:
            continue
        s = dataclasses.replace(base, start_score=start, keep_score=keep, confirm=confirm, release=release)
        scores = []
        for r in records:
            rec = recorded[r.id]
            if rec["error"]:
                scores.append(score_stream(r.id, r.moments, r.duration, None))
                continue
            tracker, events = MomentTracker("q", s), []
            for ws, we, at, cands in rec["windows"]:
                events += [e.to_dict() for e in tracker.observe(ws, we, cands, at=at)]
            scores.append(score_stream(r.id, r.moments, r.duration, events, rec["media_end"]))
        agg = aggregate(scores)
        rows.append({"start_score": start, "keep_score": keep, "confirm": confirm, "release": release,
                     **agg["metrics"], "counts": agg["counts"]})  # fmt: skip
    return rows


def best(rows: list[dict]) -> dict:
    fa = lambda r: r["false_alarms_per_hour"] if r["false_alarms_per_hour"] is not None else 0.0  # noqa: E731
    # ties beyond that: the most demanding evidence (highest start_score, keep_score), the quickest trigger
    return min(
        rows,
        key=lambda r: (-r["event_F1@2s"], fa(r), -r["span_F1@IoU0.5"], -r["start_score"], -r["keep_score"],
                       r["confirm"], r["release"]),
    )  # fmt: skip


def table(rows: list[dict], chosen: dict) -> str:
    def f(v):
        return "–" if v is None else f"{v:.1f}"

    head = ("| start_score | keep_score | confirm | release | event F1 @2s | span F1 @IoU0.5 | start delay median (s) "
            "| false alarms / h |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for r in sorted(rows, key=lambda r: (-r["event_F1@2s"], -r["span_F1@IoU0.5"])):
        mark = " **(chosen)**" if r is chosen else ""
        lines.append(f"| {r['start_score']} | {r['keep_score']} | {r['confirm']} | {r['release']}{mark} | "
                     f"{f(r['event_F1@2s'])} | {f(r['span_F1@IoU0.5'])} | {f(r['start_delay_median_s'])} | "
                     f"{f(r['false_alarms_per_hour'])} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model folder (vtg_sampling.json; its windows.window_s)")
    ap.add_argument("--world", help="an existing validation long world (its test.jsonl: not the test families)")
    ap.add_argument("--world-config", help="world.json of the model's training world: validation streams are built "
                    "with its settings and another seed")  # fmt: skip
    ap.add_argument("--world-out", help="where to build the validation world (default: OUT/val-world)")
    ap.add_argument("--seed", type=int, help="the validation world's seed (default: the world's + 1; never its own)")
    ap.add_argument("--videos", type=int, default=5, help="validation families per length")
    ap.add_argument("--durations", help="validation lengths in minutes, comma-separated (default: the world's)")
    ap.add_argument("--stream", default="{}", help="StreamSettings overrides as JSON (stride_s, ...)")
    ap.add_argument("--limit", type=int, help="only the first N validation streams")
    ap.add_argument("--batch", type=int, default=8, help="streams replayed together")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not args.world and not args.world_config:
        ap.error("give --world (a validation long world) or --world-config (to build one with --seed)")
    from vtg.data.records import load_records

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = val_world(args)
    records = load_records(world / "test.jsonl")[: args.limit]
    t0 = time.perf_counter()
    recorded, base = record_windows(args.model, records, world, json.loads(args.stream), args.batch)
    replay_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = sweep(records, recorded, base)
    chosen = best(rows)
    result = {
        "model": Path(args.model).name,
        "world_seed": json.loads((world / "world.json").read_text())["seed"],
        "streams": len(records),
        "hours": round(sum(r.duration for r in records) / 3600, 3),
        "settings": dataclasses.asdict(base),
        "replay_s": round(replay_s, 1),
        "sweep_s": round(time.perf_counter() - t1, 2),
        "grid": GRID,
        "chosen": {k: chosen[k] for k in GRID},
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    md = table(rows, chosen)
    readme = out / "README.md"
    if readme.exists() and BEGIN in readme.read_text():
        text = readme.read_text()
        text = text[: text.index(BEGIN) + len(BEGIN)] + "\n" + md + "\n" + text[text.index(END) :]
        readme.write_text(text)
    print(md)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
