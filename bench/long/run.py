"""Long videos: one tiny model asked the same queries on synthetic videos of 2, 10, 30 and 60 minutes, `direct` vs
`coarse_to_fine` (vtg.grounding), on the CPU; in a world where the question matters (distractors, decoys of the
queried colour and shape) and, as a mechanics check, in the one-object world.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.long.run          # ~37 min on 2 CPU cores; results.json + README
    .venv/bin/python -m bench.long.run --render                   # README table from the committed results.json
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.long.run --families 3 --train-clips 40 --val-clips 20 \
        --sft-steps 800 --out /tmp/bench-long --results /tmp/bench-long/results.json   # smoke (minutes; meaningless)

Stages, each through the product's CLI and skipped when its output exists (a stopped run continues; --fresh
starts over):
1. `vtg model tiny --family qwen2.5-vl --size small` (random init);
2. `vtg data synth --long --seed 1` with WORLD (3 distractors: one of the queried colour, one of the queried
   shape, one other): test families (the same objects, events and query at every length, only the empty stretches
   differ) and the short training and held-out clips, cut from other videos of the same world, 30 % of them empty;
   then the one-object world's test videos at 10 and 30 min (`--distractors 0`, same seed, no clips): the mechanics
   rows. Seed 1's test families were never used to choose anything; seed 0's are the validation set (README);
3. `vtg train sft --config recipes/tiny/sft/config_long.yaml` on the distractor world's clips (one model for every row);
4. `vtg eval run` of the model on the held-out clips, then on the test videos of each length with `--strategy direct`
   and `--strategy coarse_to_fine`, and on the mechanics videos with `coarse_to_fine`, each run in its own process
   whose peak RSS (process tree, sampled every 0.1 s) is recorded with its seconds per query (the eval loop's wall
   time over its queries: the engine's start is apart). Each run's predictions are scored twice with eval's own
   metrics: over its present queries (R1, mIoU, F1@0.5) and over its absent ones (share answered "not present").

Targets (issue: long videos), on the distractor world's present queries: at 10 and 30 min coarse_to_fine keeps
R1@0.5 within 10 points of the held-out clips' and at least 3x direct's; its peak RSS grows < 20 % from 2 to 60 min;
its seconds per query grow no faster than linearly in length (and the line through the four lengths is reported).
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
MECHANICS_LENGTHS = (10, 30)  # the lengths the accuracy targets name; the one-object world is a check, not a headline
STRATEGIES = ("direct", "coarse_to_fine")
METRICS = ("R@1,IoU=0.3", "R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU", "F1@0.5")
TEST_SEED = 1  # seed 0's test families informed earlier choices (experiments/long_scores, the recipe): validation
WORLD = {"distractors": 3, "colour_decoys": 1, "shape_decoys": 1}  # besides the queried object: 2 decoys, 1 other
MECHANICS = {"distractors": 0, "colour_decoys": 0, "shape_decoys": 0}  # the one-object world
VERSION = 2  # results layout: present and absent queries apart, mechanics rows (1: one table, one-object world)


def refuse_test_world(bench_out: str | os.PathLike) -> None:
    """Stop an experiment that would choose a setting on the bench's held-out test families: a bench `--out` made
    with the test seed. Experiments run the bench with `--seed 0` (the validation families) instead."""
    world = Path(bench_out) / "world" / "world.json"
    seed = read_json(world)["seed"] if world.exists() else None
    if seed == TEST_SEED:
        raise SystemExit(
            f"{world}: seed {seed} holds bench/long's held-out test families; choose settings on the validation "
            f"families: python -m bench.long.run --seed 0 --out DIR, then pass DIR"
        )


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
    model, world, mechanics, sft = out / "model-base", out / "world", out / "world-mechanics", out / "sft"

    def timed(name, done, fn):
        t0 = time.perf_counter()
        if not done.exists():
            stage(name, done, fn)
            times[name] = round(time.perf_counter() - t0, 1)
            write_json(saved, times)
        else:
            stage(name, done, fn)

    def synth(where: Path, lengths, objects: dict, train: int, val: int, log: str):
        flags = [x for k, v in objects.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        vtg("data", "synth", "--long", "--out", str(where), "--durations-min", ",".join(str(n) for n in lengths),
            "--videos-per-length", str(args.families), "--train-clips", str(train), "--val-clips", str(val),
            "--seed", str(args.seed), *flags, log=out / log)  # fmt: skip

    want = {"seed": args.seed, "videos_per_length": args.families, "train_clips": args.train_clips,
            "val_clips": args.val_clips}  # fmt: skip
    check_reused(world, {**want, **WORLD})
    check_reused(mechanics, {**want, **MECHANICS, "train_clips": 0, "val_clips": 0})
    tiny = ["model", "tiny", "--family", "qwen2.5-vl", "--size", "small", "--out", str(model)]
    timed("tiny model", model / "config.json", lambda: vtg(*tiny, log=out / "model.log"))
    timed("world", world / "test.jsonl", lambda: synth(
        world, LENGTHS, WORLD, args.train_clips, args.val_clips, "world.log"))  # fmt: skip
    timed("mechanics world", mechanics / "test.jsonl", lambda: synth(
        mechanics, MECHANICS_LENGTHS, MECHANICS, 0, 0, "world-mechanics.log"))  # fmt: skip
    overrides = ["--model", str(model), "--train_file", str(world / "train.jsonl"), "--output_dir", str(sft)]
    if args.sft_steps:
        overrides += ["--max_steps", str(args.sft_steps), "--save_steps", str(max(args.sft_steps, 1))]
    timed("SFT", sft / "final" / "config.json", lambda: vtg(
        "train", "sft", "--config", "recipes/tiny/sft/config_long.yaml", *overrides, log=out / "sft.log"))  # fmt: skip
    return times


def check_reused(world: Path, want: dict) -> None:
    """Refuse to reuse a world made with other settings (an --out of an earlier layout or other flags): its stages
    would be skipped and the table would describe another world."""
    made = world / "world.json"
    if not made.exists():
        return
    have = read_json(made)
    wrong = {k: (have.get(k, 0), v) for k, v in want.items() if have.get(k, 0) != v}
    if wrong:
        raise SystemExit(
            f"{made} was made with other settings ("
            + ", ".join(f"{k} {a} there, {b} wanted" for k, (a, b) in wrong.items())
            + "); pass --fresh to start over, or another --out"
        )


def split_by_length(world: Path, lengths: tuple[int, ...]) -> dict[int, Path]:
    """The test records of each length in a file of their own (videos stay where the world put them)."""
    records = read_jsonl(world / "test.jsonl")
    paths = {}
    for n in lengths:
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
    meta = read_json(run / "bench.json")
    summary = _summary(run / "eval.log")
    return {
        **split_scores(records, run),
        "queries": summary["queries"],
        "s_per_query": round(summary["loop_s"] / max(summary["queries"], 1), 3),
        "engine_start_s": summary.get("engine_start_s"),
        "wall_s": meta["wall_s"],
        "peak_rss_mb": round(meta["peak_rss_bytes"] / 2**20),
    }


def split_scores(records: Path, run: Path) -> dict:
    """The run's predictions scored by eval's own metrics (its conventions, from metrics.json) twice: over the
    present queries only (R1, mIoU, F1@0.5, the share answered "not present") and over the absent ones only (the share
    answered "not present"). Neither set's numbers are diluted by the other's."""
    from vtg.data.records import read_jsonl as read_records
    from vtg.eval.metrics import Conventions, pct, score_predictions
    from vtg.eval.predictions import read_predictions

    conv = read_json(run / "metrics.json")["conventions"]
    conv = Conventions(**{k: tuple(v) if isinstance(v, list) else v for k, v in conv.items()})
    rows, report = read_records(records)
    if report.errors:
        raise SystemExit(f"{records}: {report.summary()}")
    preds = read_predictions(run / "predictions.jsonl")
    out: dict = {"present": None, "absent": None}
    for part, keep in (("present", True), ("absent", False)):
        chosen = [r for r in rows if bool(r.moments) == keep]
        if not chosen:
            continue
        _, result = score_predictions(chosen, {r.id: preds[r.id] for r in chosen if r.id in preds}, conv)
        m, c = result["metrics"], result["counts"]
        out[part] = {
            "queries": c["queries"],
            **({k: m.get(k) for k in METRICS} if keep else {}),
            "said_absent_pct": pct(c["said_absent_on_present"], c["queries"]) if keep else m["absent_acc"],
            "parse_failure_rate": m["parse_failure_rate"],
        }
    return out


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
    runs = {"held-out clips": evaluate(out, "short", world / "val.jsonl", "direct")}
    for n, path in split_by_length(world, LENGTHS).items():
        for strategy in STRATEGIES:
            runs[f"{n} min, {strategy}"] = evaluate(out, f"{n}min-{strategy}", path, strategy)
    for n, path in split_by_length(out / "world-mechanics", MECHANICS_LENGTHS).items():
        runs[f"mechanics: {n} min, coarse_to_fine"] = evaluate(out, f"mechanics-{n}min", path, "coarse_to_fine")
    sampling = read_json(out / "sft" / "final" / "vtg_sampling.json")
    return {
        "version": VERSION,
        **provenance(),
        "command": "python -m bench.long.run " + " ".join(sys.argv[1:]),
        "settings": {
            "families": args.families,
            "seed": args.seed,
            "world": WORLD,
            "mechanics world": {**MECHANICS, "lengths_min": list(MECHANICS_LENGTHS)},
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


def linear_fit(xs, ys) -> dict:
    """Least-squares line y = intercept + slope * x, and the largest gap between a point and it (share of the point)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    intercept = my - slope * mx
    worst = max(abs(y - (intercept + slope * x)) / y for x, y in zip(xs, ys))
    return {"slope": round(slope, 4), "intercept": round(intercept, 3), "worst_residual_pct": round(100 * worst, 1)}


def targets(runs: dict) -> dict:
    """Each target of the issue, met or not, with the numbers it compares (distractor world, present queries)."""
    short = _present(runs["held-out clips"])["R@1,IoU=0.5"]
    out = {}
    for n in (10, 30):
        c2f = _present(runs[f"{n} min, coarse_to_fine"])["R@1,IoU=0.5"]
        direct = _present(runs[f"{n} min, direct"])["R@1,IoU=0.5"]
        out[f"{n} min: R1@0.5 within 10 points of held-out clips"] = {
            "met": short - c2f <= 10,
            "clips": short,
            "c2f": c2f,
        }
        out[f"{n} min: R1@0.5 >= 3x direct"] = {"met": c2f >= 3 * direct and c2f > 0, "c2f": c2f, "direct": direct}
    rss = {n: runs[f"{n} min, coarse_to_fine"]["peak_rss_mb"] for n in LENGTHS}
    out["peak RSS grows < 20 % from 2 to 60 min"] = {"met": rss[60] < 1.2 * rss[2], "mb": rss}
    spq = {n: runs[f"{n} min, coarse_to_fine"]["s_per_query"] for n in LENGTHS}
    per_min = {n: round(spq[n] / n, 4) for n in LENGTHS}
    out["seconds per query grow no faster than linearly"] = {
        "met": all(per_min[b] <= per_min[a] * 1.1 for a, b in zip(LENGTHS, LENGTHS[1:])),
        "s_per_query": spq,
        "s_per_query_per_min": per_min,
        "fit (s = intercept + slope x min)": linear_fit(LENGTHS, [spq[n] for n in LENGTHS]),
    }
    return out


def _present(run: dict) -> dict:
    if not run["present"]:
        raise SystemExit("a run has no present queries: raise --families (at least 2 per length)")
    return run["present"]


def _r(v):
    return round(v, 1) if isinstance(v, float) else v


def render(result: dict) -> str:
    if result.get("version", 1) < VERSION:
        return render_v1(result)
    present, absent = [], []
    for name, r in result["runs"].items():
        if r["present"]:
            p = r["present"]
            present.append([name, p["queries"], *(_r(p[k]) for k in METRICS), _r(p["said_absent_pct"]),
                            _r(p["parse_failure_rate"]), r["s_per_query"], r["peak_rss_mb"]])  # fmt: skip
        if r["absent"]:
            a = r["absent"]
            absent.append([name, a["queries"], _r(a["said_absent_pct"]), _r(a["parse_failure_rate"])])
    head = ["run", "present queries", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "F1@0.5", "said absent %", "unparsed %"]
    first = table([*head, "s / query (run)", "peak RSS MB (run)"], present)
    second = table(["run", "absent queries", 'answered "not present" %', "unparsed %"], absent)
    marks = [f"- {'met' if t['met'] else '**not met**'}: {name} ({_brief(t)})" for name, t in result["targets"].items()]
    st = result["stage_s"]
    return (
        f"Present queries (truth: one or more moments):\n\n{first}\n\nAbsent queries (truth: none; the queried "
        f"object never appears):\n\n{second}\n\nTargets:\n" + "\n".join(marks) + f"\n\nCommand: "
        f"`{result['command']}`; {result['total_s'] / 60:.1f} min in all (worlds "
        f"{(st.get('world', 0) + st.get('mechanics world', 0)) / 60:.1f} min, SFT {st.get('SFT', 0) / 60:.1f} min, "
        f"the evals {result['eval_s'] / 60:.1f} min). {measured_line(result)}"
    )


def render_v1(result: dict) -> str:
    """A result of the first layout (one object per video, present and absent queries in one row): its table, marked."""
    rows = []
    for name, r in result["runs"].items():
        rows.append([name, r["queries"], *(_r(r[k]) for k in METRICS), _r(r["absent_accuracy"]),
                     _r(r.get("parse_failure_rate")), r["s_per_query"], r["peak_rss_mb"]])  # fmt: skip
    head = ["run", "queries", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "F1@0.5 (all queries)", "absent acc."]
    return (
        "**To be re-run: this is the previous layout's result** (one object per video, no distractors, the 25 "
        "validation families; F1@0.5 over present and absent queries together).\n\n"
        + table([*head, "unparsed %", "s / query", "peak RSS MB"], rows)
        + f"\n\nCommand: `{result['command']}`; {result['total_s'] / 60:.1f} min in all. {measured_line(result)}"
    )


def _brief(t: dict) -> str:
    return ", ".join(f"{k} {_r(v)}" for k, v in t.items() if k != "met")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench-long")
    p.add_argument("--results", default=str(HERE / "results.json"))
    p.add_argument(
        "--families", type=int, default=64, help="test queries per length (one video family each; 20 %% absent)"
    )
    p.add_argument("--train-clips", type=int, default=3000)
    p.add_argument("--val-clips", type=int, default=300)
    p.add_argument("--sft-steps", type=int, default=None, help="default: the recipe's")
    p.add_argument(
        "--seed", type=int, default=TEST_SEED, help="the worlds' seed (0: the validation families; see README)"
    )
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
