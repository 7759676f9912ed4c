"""Long videos: one tiny model asked the same queries on synthetic videos of 2, 10, 30 and 60 minutes, `direct` vs
`coarse_to_fine` (vtg.grounding), on the CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.long.run          # ~35 min on 2 CPU cores; results.json + README
    .venv/bin/python -m bench.long.run --render                   # README table from the committed results.json
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.long.run --families 2 --train-clips 100 --sft-steps 20 \
        --out /tmp/bench-long --results /tmp/bench-long/results.json   # smoke (minutes; numbers meaningless)

Stages, each through the product's CLI and skipped when its output exists (a stopped run continues; --fresh
starts over):
1. `vtg model tiny --family qwen2.5-vl --size small` (random init);
2. `vtg data synth --long`: test families (the same object, events and query at every length, only the empty
   stretches differ), plus short training clips cut from other long videos, 30 % of them empty;
3. `vtg train sft --config recipes/tiny/sft/config_long.yaml` (the short-clip recipe on those clips);
4. `vtg eval run` of the model on held-out short clips (its accuracy where it was trained), then on the test
   videos of each length with `--strategy direct` and `--strategy coarse_to_fine`, each run in its own process
   whose peak RSS (process tree, sampled every 0.1 s) is recorded with its seconds per query (the eval loop's
   wall time over its queries: the engine's start is apart).

Targets (issue: long videos): at 10 and 30 min coarse_to_fine keeps R1@0.5 within 10 points of the short clips'
and at least 3x direct's; its peak RSS grows < 20 % from 2 to 60 min; its seconds per query grow no faster than
linearly in length.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import ROOT, measured_line, provenance, read_json, read_jsonl, table, update_readme, write_json

HERE = Path(__file__).resolve().parent
LENGTHS = (2, 10, 30, 60)
STRATEGIES = ("direct", "coarse_to_fine")
METRICS = ("R@1,IoU=0.3", "R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU")


def vtg(*args: str, log: Path) -> None:
    """Run a vtg command, its output to `log`; stop the bench naming the log when it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "vtg", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if rc.returncode:
        raise SystemExit(f"`vtg {' '.join(args)}` failed (exit {rc.returncode}); see {log}")


def peak_rss(args: list[str], log: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes of the process and its children) of a vtg command."""
    import psutil

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "vtg", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env
        )
        peak, stop = [0], threading.Event()

        def watch():
            p = psutil.Process(proc.pid)
            while not stop.is_set():
                try:
                    rss = sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])
                    peak[0] = max(peak[0], rss)
                except psutil.Error:
                    pass
                stop.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        rc = proc.wait()
        stop.set()
        watcher.join()
    if rc:
        raise SystemExit(f"`vtg {' '.join(args)}` failed (exit {rc}); see {log}")
    return time.perf_counter() - t0, peak[0]


def stage(name: str, done: Path, fn) -> None:
    if done.exists():
        print(f"[bench.long] {name}: reusing {done}", flush=True)
        return
    t0 = time.perf_counter()
    print(f"[bench.long] {name} ...", flush=True)
    fn()
    print(f"[bench.long] {name}: {time.perf_counter() - t0:.0f} s", flush=True)


def build(args, out: Path) -> dict:
    """Stages 1-3; returns their wall times (a reused stage: the time it took when it ran, kept in stages.json)."""
    saved = out / "stages.json"
    times = read_json(saved) if saved.exists() else {}
    model, world, sft = out / "model-base", out / "world", out / "sft"

    def timed(name, done, fn):
        t0 = time.perf_counter()
        if not done.exists():
            stage(name, done, fn)
            times[name] = round(time.perf_counter() - t0, 1)
            write_json(saved, times)
        else:
            stage(name, done, fn)

    tiny = ["model", "tiny", "--family", "qwen2.5-vl", "--size", "small", "--out", str(model)]
    timed("tiny model", model / "config.json", lambda: vtg(*tiny, log=out / "model.log"))
    lengths = ",".join(str(n) for n in LENGTHS)
    timed("world", world / "test.jsonl", lambda: vtg(
        "data", "synth", "--long", "--out", str(world), "--durations-min", lengths, "--videos-per-length",
        str(args.families), "--train-clips", str(args.train_clips), "--val-clips", str(args.val_clips),
        "--seed", str(args.seed), log=out / "world.log"))  # fmt: skip
    overrides = ["--model", str(model), "--train_file", str(world / "train.jsonl"), "--output_dir", str(sft)]
    if args.sft_steps:
        overrides += ["--max_steps", str(args.sft_steps), "--save_steps", str(max(args.sft_steps, 1))]
    timed("SFT", sft / "final" / "config.json", lambda: vtg(
        "train", "sft", "--config", "recipes/tiny/sft/config_long.yaml", *overrides, log=out / "sft.log"))  # fmt: skip
    return times


def split_by_length(world: Path, out: Path) -> dict[int, Path]:
    """The test records of each length in a file of their own (videos stay where the world put them)."""
    records = read_jsonl(world / "test.jsonl")
    paths = {}
    for n in LENGTHS:
        path = world / f"test_{n}min.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records if round(r["length_min"]) == n))
        paths[n] = path
    return paths


def evaluate(out: Path, name: str, records: Path, strategy: str) -> dict:
    run = out / "eval" / name
    if not (run / "bench.json").exists():
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        args = ["eval", "run", "--config", "recipes/eval/synth_long.yaml", "--model", str(out / "sft" / "final"),
                "--records", str(records), "--strategy", strategy, "--out", str(run)]  # fmt: skip
        print(f"[bench.long] eval {name} ...", flush=True)
        wall, rss = peak_rss(args, run / "eval.log")
        write_json(run / "bench.json", {"wall_s": round(wall, 1), "peak_rss_bytes": rss})
    metrics = read_json(run / "metrics.json")
    meta = read_json(run / "bench.json")
    summary = _summary(run / "eval.log")
    m = metrics["metrics"]
    return {
        **{k: m.get(k) for k in METRICS},
        "absent_accuracy": m.get("absent_acc"),
        "F1@0.5": m.get("F1@0.5"),
        "parse_failure_rate": m.get("parse_failure_rate"),
        "queries": summary["queries"],
        "s_per_query": round(summary["loop_s"] / max(summary["queries"], 1), 3),
        "engine_start_s": summary.get("engine_start_s"),
        "wall_s": meta["wall_s"],
        "peak_rss_mb": round(meta["peak_rss_bytes"] / 2**20),
    }


def _summary(log: Path) -> dict:
    """The JSON summary `vtg eval run` prints last."""
    text = log.read_text()
    start = text.rfind("\n{")
    return json.loads(text[start + 1 :] if start >= 0 else text[text.index("{") :])


def run(args) -> dict:
    out = Path(args.out)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    build_s = build(args, out)
    t_eval = time.perf_counter()
    world = out / "world"
    runs = {"short clips": evaluate(out, "short", world / "val.jsonl", "direct")}
    for n, path in split_by_length(world, out).items():
        for strategy in STRATEGIES:
            runs[f"{n} min, {strategy}"] = evaluate(out, f"{n}min-{strategy}", path, strategy)
    sampling = read_json(out / "sft" / "final" / "vtg_sampling.json")
    return {
        **provenance(),
        "command": "python -m bench.long.run " + " ".join(sys.argv[1:]),
        "settings": {
            "families": args.families,
            "train_clips": args.train_clips,
            "val_clips": args.val_clips,
            "sft_steps": args.sft_steps or "recipe",
            "windows": sampling.get("windows"),
        },
        "runs": runs,
        "targets": targets(runs),
        "stage_s": build_s,
        "eval_s": round(time.perf_counter() - t_eval, 1),
        "total_s": round(sum(build_s.values()) + time.perf_counter() - t_eval, 1),
    }


def targets(runs: dict) -> dict:
    """Each target of the issue, met or not, with the numbers it compares."""
    short = runs["short clips"]["R@1,IoU=0.5"]
    out = {}
    for n in (10, 30):
        c2f, direct = runs[f"{n} min, coarse_to_fine"]["R@1,IoU=0.5"], runs[f"{n} min, direct"]["R@1,IoU=0.5"]
        out[f"{n} min: R1@0.5 within 10 points of short clips"] = {"met": short - c2f <= 10, "short": short, "c2f": c2f}
        out[f"{n} min: R1@0.5 >= 3x direct"] = {"met": c2f >= 3 * direct and c2f > 0, "c2f": c2f, "direct": direct}
    rss = {n: runs[f"{n} min, coarse_to_fine"]["peak_rss_mb"] for n in LENGTHS}
    out["peak RSS grows < 20 % from 2 to 60 min"] = {"met": rss[60] < 1.2 * rss[2], "mb": rss}
    spq = {n: runs[f"{n} min, coarse_to_fine"]["s_per_query"] for n in LENGTHS}
    per_min = {n: round(spq[n] / n, 4) for n in LENGTHS}
    out["seconds per query grow no faster than linearly"] = {
        "met": all(per_min[b] <= per_min[a] * 1.1 for a, b in zip(LENGTHS, LENGTHS[1:])),
        "s_per_query": spq,
        "s_per_query_per_min": per_min,
    }
    return out


def _r(v):
    return round(v, 1) if isinstance(v, float) else v


def render(result: dict) -> str:
    rows = []
    for name, r in result["runs"].items():
        rows.append([name, r["queries"], *(_r(r[k]) for k in METRICS), _r(r["F1@0.5"]), _r(r["absent_accuracy"]),
                     _r(r.get("parse_failure_rate")), r["s_per_query"], r["peak_rss_mb"]])  # fmt: skip
    head = ["run", "queries", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "F1@0.5", "absent acc.", "unparsed %", "s / query"]
    text = table([*head, "peak RSS MB"], rows)
    marks = [f"- {'met' if t['met'] else '**not met**'}: {name} ({_brief(t)})" for name, t in result["targets"].items()]
    return (
        f"{text}\n\nTargets:\n" + "\n".join(marks) + f"\n\nCommand: `{result['command']}`; "
        f"{result['total_s'] / 60:.1f} min in all (SFT {result['stage_s'].get('SFT', 0) / 60:.1f} min, the evals "
        f"{result['eval_s'] / 60:.1f} min). {measured_line(result)}"
    )


def _brief(t: dict) -> str:
    return ", ".join(f"{k} {_r(v)}" for k, v in t.items() if k != "met")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench-long")
    p.add_argument("--results", default=str(HERE / "results.json"))
    p.add_argument("--families", type=int, default=25, help="test queries per length (one video family each)")
    p.add_argument("--train-clips", type=int, default=3000)
    p.add_argument("--val-clips", type=int, default=300)
    p.add_argument("--sft-steps", type=int, default=None, help="default: the recipe's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--render", action="store_true", help="only rewrite the README from --results")
    args = p.parse_args()
    if not args.render:
        write_json(args.results, run(args))
    result = read_json(args.results)
    if Path(args.results).resolve() == (HERE / "results.json").resolve():
        update_readme(HERE / "README.md", render(result))
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
