"""Learning benchmark: does the tiny Qwen-VL (2.5 or 3) learn the synthetic world by SFT, and does GRPO improve it?

From nothing: synthetic world (train + held-out test, >= 200 test queries per kind) -> `small` tiny model ->
(a) best constant baseline fitted on train -> (b) SFT (tiny recipe) -> (c) GRPO from (b) (tiny recipe), each scored
on the test split per query kind with `vtg.eval` (R1@{0.3,0.5,0.7}, mIoU, F1@0.5, "not present" accuracy), plus the
mean GRPO reward (recipe weights) of the greedy test answers before/after GRPO and GRPO's own logged reward.
Writes results.json and results.md next to this script (or --results DIR).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/learning/run.py            # the committed run
    HF_HUB_OFFLINE=1 .venv/bin/python bench/learning/run.py --videos 300 --sft-steps 200 --grpo-steps 4  # smoke

Stages whose output exists under --out are reused (rerun after a stop); --fresh starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # video_ablation.py next to this script
from video_ablation import swapped_sets  # noqa: E402
RECIPES = ROOT / "recipes"
KINDS = ("single", "multi", "compositional", "absent")
METRIC_KEYS = ("R@1,IoU=0.3", "R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU", "F1@0.5", "absent_acc")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench_learning", help="work folder (world, models, eval runs)")
    p.add_argument("--results", default=str(Path(__file__).resolve().parent), help="where results.{json,md} go")
    p.add_argument("--videos", type=int, default=1500, help="synthetic videos (80%% train, 20%% test)")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="query kinds of the world, comma-separated (e.g. 'single': one object per video)")
    p.add_argument("--sft-steps", type=int, default=None, help="override the tiny SFT recipe's max_steps")
    p.add_argument("--grpo-steps", type=int, default=None, help="override the tiny GRPO recipe's max_steps")
    p.add_argument("--sft", action="append", default=[], metavar="KEY=VALUE", help="extra SFT recipe override")
    p.add_argument("--grpo", action="append", default=[], metavar="KEY=VALUE", help="extra GRPO recipe override")
    p.add_argument("--first-sft", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override for the --first-stage SFT only (after --sft), e.g. learning_rate=1e-4")
    p.add_argument("--size", default="small", help="tiny model size (vtg.train.tiny_model.SIZES)")
    p.add_argument("--family", choices=("qwen2.5-vl", "qwen3-vl"), default="qwen2.5-vl",
                   help="tiny model family; qwen3-vl samples 64x64 frames (its merged tokens are 32 px)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start SFT from this model folder (e.g. another run's model-sft/final: a curriculum) "
                        "instead of a random-init tiny model")
    p.add_argument("--first-stage", default=None, metavar="KINDS:STEPS",
                   help="a curriculum inside the timed run: SFT the random-init model for STEPS steps on a world of "
                        "KINDS first (e.g. 'single:20000', all videos train, seed + 1), then the main SFT from it")
    p.add_argument("--one-kind-per-video", action="store_true",
                   help="the main world shows the objects of one query kind per video (no objects to tell apart)")
    p.add_argument("--init-wall-s", type=float, default=0.0,
                   help="seconds it took to train --init; counted in the 30-CPU-minute total")
    p.add_argument("--train-threads", type=int, default=1,
                   help="torch threads for training (1: the data-loader worker gets the other core)")
    p.add_argument("--frame-size", type=int, default=56,
                   help="synthetic frame width = height in pixels; 84 puts each 28-px layout cell in one merged token")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete --out first")
    args = p.parse_args(argv)
    if args.videos < 10:
        p.error("--videos must be >= 10")
    if args.first_sft and args.first_stage is None:
        p.error("--first-sft overrides the first stage's recipe: it needs --first-stage")
    if args.init is not None and not (Path(args.init) / "config.json").exists():
        p.error(f"--init: {args.init} is not a model folder (no config.json)")
    args.kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if not args.kinds or set(args.kinds) - set(KINDS):
        p.error(f"--kinds: expected names from {','.join(KINDS)}, got {args.kinds}")
    if args.first_stage is not None:
        kinds, _, steps = args.first_stage.partition(":")
        kinds = tuple(k.strip() for k in kinds.split(",") if k.strip())
        if not kinds or set(kinds) - set(KINDS) or not steps.isdigit() or int(steps) < 1:
            p.error(f"--first-stage: expected KINDS:STEPS like single:20000, got {args.first_stage!r}")
        if args.init is not None:
            p.error("--first-stage and --init both choose where SFT starts: pass one")
        args.first_stage = (kinds, int(steps))
    return args


# ---------------------------------------------------------------- stages


class Timer:
    """Wall time per stage, written to `path` after every stage, so a run stopped later keeps what it measured."""

    def __init__(self, path: Path):
        self.path = path
        self.wall: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def stage(self, name: str, done: Path, fn):
        """Run fn unless `done` exists (then reuse it and record no time)."""
        if done.exists():
            print(f"[bench] {name}: reusing {done}", flush=True)
            return None
        print(f"[bench] {name} ...", flush=True)
        t0 = time.time()
        result = fn()
        self.wall[name] = round(time.time() - t0, 1)
        self.path.write_text(json.dumps(self.wall, indent=1))
        print(f"[bench] {name}: {self.wall[name]:.1f}s", flush=True)
        return result


FAMILY_NAMES = {"qwen2.5-vl": "Qwen2.5-VL", "qwen3-vl": "Qwen3-VL"}


def world_config(n_videos: int, seed: int, kinds: tuple[str, ...], frame_size: int = 56,
                 one_kind_per_video: bool = False, split_fractions=(0.8, 0.0, 0.2)):
    from vtg.data.synth import SynthConfig

    # no val split: every held-out video goes to test, so >= 200 test queries per kind need ~1,000 videos
    return SynthConfig(n_videos=n_videos, seed=seed, min_duration=8.0, max_duration=20.0, kinds=kinds,
                       size=frame_size, split_fractions=split_fractions, one_kind_per_video=one_kind_per_video)


def recipe_for(method: str, init: Path, world: Path, out: Path, steps: int | None, extra: list[str], seed: int):
    from vtg.train.config import GRPORecipe, SFTRecipe, load_recipe, parse_overrides

    overrides: dict[str, Any] = {"model": str(init), "train_file": str(world / "train.jsonl"), "output_dir": str(out),
                                 "seed": seed}
    if steps is not None:
        overrides["max_steps"] = steps
    cli = [t for kv in extra for t in ("--" + kv.split("=", 1)[0], kv.split("=", 1)[1])]
    overrides.update(parse_overrides(cli))
    cls = SFTRecipe if method == "sft" else GRPORecipe
    return load_recipe(cls, RECIPES / "tiny" / method / "config_default.yaml", overrides)


class LogCollector:
    """TrainerCallback that keeps every logged dict (GRPO reward curves, SFT loss)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _C(TrainerCallback):
            def __init__(self):
                self.logs: list[dict[str, Any]] = []

            def on_log(self, args, state, control, logs=None, **kw):
                if logs:
                    self.logs.append({"step": state.global_step, **logs})

        return _C()


def train(method: str, recipe, threads: int) -> list[dict[str, Any]]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    logs = LogCollector()
    try:
        if method == "sft":
            from vtg.train.sft import run_sft
            run_sft(recipe, callbacks=[logs])
        else:
            from vtg.train.grpo import run_grpo
            run_grpo(recipe, callbacks=[logs])
    finally:
        torch.set_num_threads(before)
    (Path(recipe.output_dir) / "bench_logs.json").write_text(json.dumps(logs.logs, indent=1))
    return logs.logs


def evaluate(model: Path, records: Path, run_dir: Path) -> None:
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import run_job

    cfg = EvalConfig.load(RECIPES / "eval" / "synthetic.yaml", records=str(records))
    run_job(cfg, out=run_dir, model=str(model))


def score_run(run_dir: Path, records) -> tuple[list, dict[str, Any]]:
    """vtg.eval's per-query scores and aggregate of a run's predictions on `records` (default conventions)."""
    from vtg.eval.metrics import Conventions, score_predictions
    from vtg.eval.predictions import read_predictions

    preds = read_predictions(run_dir / "predictions.jsonl")
    return score_predictions(records, {r.id: preds[r.id] for r in records}, Conventions())


def video_control(run_dir: Path, records_path: Path) -> dict[str, float]:
    """Metrics of one control run (single + multi queries, own or swapped videos), all kinds together."""
    from vtg.data.records import load_records

    records = load_records(records_path)
    _, res = score_run(run_dir, records)
    return {k: round(res["metrics"][k], 2) for k in ("R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU")} | {"queries": len(records)}


def write_predictions(run_dir: Path, texts: dict[str, str]) -> None:
    from vtg.eval.predictions import make_line

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "predictions.jsonl", "w") as f:
        for rid, text in texts.items():
            f.write(json.dumps(make_line(rid, text)) + "\n")


# ---------------------------------------------------------------- the constant baseline


def fit_constant(train_records) -> dict[str, Any]:
    """The one [s, e] (as fractions of the duration, or in seconds) with the highest train mIoU over present
    queries (top-1 IoU against the best-matching true moment, as the metric scores it). Exhaustive on a grid."""
    import numpy as np

    present = [r for r in train_records if r.moments]
    dur = np.array([r.duration for r in present])
    k = max(len(r.moments) for r in present)
    gs = np.full((len(present), k), np.nan)
    ge = np.full((len(present), k), np.nan)
    for i, r in enumerate(present):
        for j, (s, e) in enumerate(r.moments):
            gs[i, j], ge[i, j] = s, e

    def best(cands: np.ndarray, scale: np.ndarray) -> tuple[float, tuple[float, float]]:
        top, arg = -1.0, None
        for s, e in cands:  # a few thousand windows × a few thousand queries: vectorised over queries
            ps, pe = s * scale, e * scale
            inter = np.clip(np.minimum(pe[:, None], ge) - np.maximum(ps[:, None], gs), 0, None)
            union = np.maximum(pe[:, None], ge) - np.minimum(ps[:, None], gs)
            m = np.nanmax(np.where(np.isnan(gs), -1, inter / union), axis=1).mean()
            if m > top:
                top, arg = float(m), (float(s), float(e))
        return top, arg

    grid = np.round(np.arange(0, 1.0001, 0.02), 4)
    frac = np.array([(s, e) for s in grid for e in grid if e > s])
    secs = np.arange(0, float(dur.max()) + 0.25, 0.5)
    absolute = np.array([(s, e) for s in secs for e in secs if e > s])
    f_miou, f_win = best(frac, dur)
    a_miou, a_win = best(absolute, np.ones_like(dur))
    if f_miou >= a_miou:
        return {"kind": "fraction of duration", "window": f_win, "train_mIoU": round(100 * f_miou, 2),
                "other": {"absolute_s": a_win, "train_mIoU": round(100 * a_miou, 2)}}
    return {"kind": "absolute seconds", "window": a_win, "train_mIoU": round(100 * a_miou, 2),
            "other": {"fraction": f_win, "train_mIoU": round(100 * f_miou, 2)}}


def constant_texts(const: dict[str, Any], records) -> dict[str, str]:
    from vtg.data.grammar import format_answer

    s, e = const["window"]
    frac = const["kind"].startswith("fraction")
    return {r.id: format_answer([[s * r.duration, e * r.duration] if frac else [s, e]], decimals=2) for r in records}


# ---------------------------------------------------------------- scoring


def per_kind(run_dir: Path, records, kinds: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """vtg.eval metrics on the whole test split and on each query kind (record extra `kind`)."""
    from vtg.eval.metrics import Conventions, score_predictions
    from vtg.eval.predictions import read_predictions

    preds = read_predictions(run_dir / "predictions.jsonl")
    conv = Conventions()
    out: dict[str, dict[str, float]] = {}
    for kind in ("all",) + kinds:
        sub = [r for r in records if kind == "all" or r.extra.get("kind") == kind]
        _, res = score_predictions(sub, {r.id: preds[r.id] for r in sub}, conv)
        m = res["metrics"]
        out[kind] = {k: round(m[k], 2) for k in METRIC_KEYS if k in m}
        out[kind]["queries"] = len(sub)
        out[kind]["parse_failures"] = res["counts"]["parse_failures"]
    return out


def paired_r1(run_a: Path, run_b: Path, records, threshold: float = 0.7) -> dict[str, Any]:
    """Present queries that run b gets right at R1@threshold and run a not (b_only), the reverse (a_only), and the
    one-sided sign-test p-value of "b is better than a" on those discordant queries."""
    from math import comb

    def hits(run_dir: Path) -> dict[str, bool]:
        scores, _ = score_run(run_dir, records)
        return {s.id: bool(s.ious) and s.ious[0] >= threshold for s in scores if s.truth}

    a, b = hits(run_a), hits(run_b)
    b_only, a_only = sum(b[k] and not a[k] for k in a), sum(a[k] and not b[k] for k in a)
    n = a_only + b_only
    p = sum(comb(n, k) for k in range(b_only, n + 1)) / 2 ** n if n else 1.0
    return {"b_only": b_only, "a_only": a_only, "p_one_sided": round(p, 4)}


def mean_reward(run_dir: Path, records, weights: dict[str, float]) -> dict[str, float]:
    """The GRPO recipe's weighted reward (and each reward) of the run's answers, averaged over the test queries."""
    from vtg.eval.predictions import read_predictions
    from vtg.train.rewards import get_reward

    preds = read_predictions(run_dir / "predictions.jsonl")
    texts = [preds[r.id].get("text") or "" for r in records]
    cols = {"moments": [r.moments for r in records], "duration": [r.duration for r in records]}
    out = {name: sum(get_reward(name)(texts, **cols)) / len(records) for name in weights}
    total = sum(w * out[n] for n, w in weights.items())
    return {"weighted": round(total, 4), **{n: round(v, 4) for n, v in out.items()}}


def grpo_logged_reward(logs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [x for x in logs if "reward" in x]
    if not rows:
        return {}
    n = max(1, len(rows) // 4)
    first, last = rows[:n], rows[-n:]
    avg = lambda xs: round(sum(x["reward"] for x in xs) / len(xs), 4)  # noqa: E731
    return {"first_logs_mean": avg(first), "last_logs_mean": avg(last), "log_points": len(rows),
            "curve": [[x["step"], round(x["reward"], 4)] for x in rows]}


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    from vtg.data.records import load_records
    from vtg.data.synth import check_reused_world, generate
    from vtg.engine import IMAGE_FACTOR
    from vtg.errors import UserError
    from vtg.train.tiny_model import build_tiny_model

    out = Path(args.out).resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t = Timer(out / "timings.json")
    world, base = out / "world", out / "model-base"
    world_cfg = world_config(args.videos, args.seed, args.kinds, args.frame_size, args.one_kind_per_video)
    try:  # a reused --out, or a world linked in by hand
        check_reused_world(world_cfg, world)
    except UserError as e:
        raise SystemExit(f"[bench] {e}") from None
    t.stage("synthetic world", world / "test.jsonl", lambda: generate(world_cfg, world, progress=True))
    if args.frame_size != 56:
        # the tiny recipes give 56-px frames 4 merged tokens per frame pair in either family; keep every pixel of
        # larger ones, rounded up to the family's merged-token size (28 px; Qwen3-VL 32: 84 -> 96, not down to 64)
        factor = IMAGE_FACTOR[args.family]
        side = -(-args.frame_size // factor) * factor
        pixels = [f"sampling.{k}={side ** 2}" for k in ("min_pixels", "max_pixels")]
        args.sft, args.grpo = pixels + args.sft, pixels + args.grpo
    if args.init is None:
        t.stage("tiny model", base / "config.json", lambda: build_tiny_model(args.family, base, args.size, args.seed))
    else:
        t.stage("init model", base / "config.json", lambda: shutil.copytree(args.init, base))
        t.wall["init model training (--init-wall-s)"] = args.init_wall_s
    if args.first_stage is not None:
        base = first_stage(args, out, base, t)
    train_recs, test_recs = load_records(world / "train.jsonl"), load_records(world / "test.jsonl")
    counts = {k: sum(r.extra.get("kind") == k for r in test_recs) for k in args.kinds}
    if min(counts.values()) < 200:
        print(f"[bench] warning: test queries per kind {counts}: fewer than 200 (raise --videos)", flush=True)

    const_path = out / "constant.json"
    t.stage("constant baseline fit", const_path, lambda: const_path.write_text(json.dumps(fit_constant(train_recs))))
    const = json.loads(const_path.read_text())
    write_predictions(out / "eval" / "constant", constant_texts(const, test_recs))

    sft_recipe = recipe_for("sft", base, world, out / "model-sft", args.sft_steps, args.sft, args.seed)
    sft = out / "model-sft" / "final"
    t.stage("SFT", sft / "config.json", lambda: train("sft", sft_recipe, args.train_threads))
    test_file = world / "test.jsonl"
    t.stage("eval SFT", out / "eval" / "sft" / "metrics.json", lambda: evaluate(sft, test_file, out / "eval" / "sft"))

    grpo_recipe = recipe_for("grpo", sft, world, out / "model-grpo", args.grpo_steps, args.grpo, args.seed)
    grpo = out / "model-grpo" / "final"
    t.stage("GRPO", grpo / "config.json", lambda: train("grpo", grpo_recipe, args.train_threads))
    t.stage("eval GRPO", out / "eval" / "grpo" / "metrics.json", lambda: evaluate(grpo, test_file, out / "eval" / "grpo"))
    # The control that tells video grounding from text priors: the same queries with another video of equal length.
    own, swapped, _ = swapped_sets(world, out / "video_control")
    for name, model in (("sft", sft), ("grpo", grpo)):
        for which, recs in (("own", own), ("swapped", swapped)):
            d = out / "video_control" / f"{name}-{which}"
            t.stage(f"eval {name} {which} videos", d / "metrics.json", lambda m=model, r=recs, d=d: evaluate(m, r, d))

    results = collect(args, out, const, sft_recipe, grpo_recipe, train_recs, test_recs, counts, t.wall)
    write_results(Path(args.results), results)
    return 0


def first_stage(args, out: Path, base: Path, t: Timer) -> Path:
    """The curriculum's first lesson, timed with the rest: SFT on a world of the first-stage kinds (its own videos,
    seed + 1, all train), from `base`; returns the model the main SFT starts from."""
    from vtg.data.synth import check_reused_world, generate

    kinds, steps = args.first_stage
    world = out / "world-first-stage"
    cfg = world_config(args.videos, args.seed + 1, kinds, args.frame_size, split_fractions=(1.0, 0.0, 0.0))
    check_reused_world(cfg, world)
    t.stage("first-stage world", world / "train.jsonl", lambda: generate(cfg, world, progress=True))
    recipe = recipe_for("sft", base, world, out / "model-first-stage", steps, args.sft + args.first_sft, args.seed)
    model = out / "model-first-stage" / "final"
    t.stage("first-stage SFT", model / "config.json", lambda: train("sft", recipe, args.train_threads))
    return model


def model_description(model: Path) -> dict[str, Any]:
    """vtg_tiny.json (written by `vtg model tiny`; trained exports, used by --init, lack it: count their weights)."""
    if (model / "vtg_tiny.json").exists():
        return json.loads((model / "vtg_tiny.json").read_text())
    import math

    from safetensors import safe_open

    with safe_open(str(model / "model.safetensors"), "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return {"size": "unknown (a trained model from --init)", "params": params}


def collect(args, out: Path, const, sft_recipe, grpo_recipe, train_recs, test_recs, counts, timings) -> dict:
    import dataclasses

    import torch

    tiny = model_description(out / "model-base")
    grpo_logs = json.loads((out / "model-grpo" / "bench_logs.json").read_text())
    sft_logs = json.loads((out / "model-sft" / "bench_logs.json").read_text())
    runs = {name: per_kind(out / "eval" / name, test_recs, args.kinds) for name in ("constant", "sft", "grpo")}
    weights = grpo_recipe.rewards
    keep = ("learning_rate", "warmup_steps", "lr_scheduler_type", "max_steps", "per_device_train_batch_size",
            "gradient_accumulation_steps", "max_grad_norm", "sampling", "tuning", "freeze_vision", "train_merger",
            "rewards", "num_generations", "temperature", "beta", "max_completion_length", "use_vllm")
    return {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/learning/run.py " + shlex.join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
                   f"Python {platform.python_version()}, torch {torch.__version__}, no GPU",
        "model": {"family": args.family, **tiny, "init": args.init,
                  "first_stage": None if args.first_stage is None else
                  {"kinds": list(args.first_stage[0]), "steps": args.first_stage[1], "videos": args.videos}},
        "world": {"videos": args.videos, "kinds": list(args.kinds), "one_kind_per_video": args.one_kind_per_video,
                  "train_queries": len(train_recs), "test_queries": len(test_recs),
                  "test_per_kind": counts, "duration_s": [8, 20], "fps": 2, "frame": f"{args.frame_size}x{args.frame_size}"},
        "constant_baseline": const,
        "metrics": runs,
        "mean_reward_on_test": {"weights": weights,
                                "sft": mean_reward(out / "eval" / "sft", test_recs, weights),
                                "grpo": mean_reward(out / "eval" / "grpo", test_recs, weights)},
        "grpo_logged_reward": grpo_logged_reward(grpo_logs),
        "grpo_vs_sft_r1_at_0.7": paired_r1(out / "eval" / "sft", out / "eval" / "grpo", test_recs),
        "video_control": {name: {which: video_control(out / "video_control" / f"{name}-{which}",
                                                      out / "video_control" / f"{which}.jsonl")
                                 for which in ("own", "swapped")} for name in ("sft", "grpo")},
        "sft_loss": [[x["step"], round(x["loss"], 4)] for x in sft_logs if "loss" in x],
        "video_check": video_check_curves(out),
        "recipes": {"sft": {k: v for k, v in dataclasses.asdict(sft_recipe).items() if k in keep},
                    "grpo": {k: v for k, v in dataclasses.asdict(grpo_recipe).items() if k in keep}},
        "wall_s": timings,
        "train_threads": args.train_threads,
    }


def video_check_curves(out: Path) -> dict[str, list]:
    """Each training stage's `video_check` logs (train/video_check.py): [step, own loss, shuffled loss, gap]."""
    curves = {}
    for stage in ("model-first-stage", "model-sft", "model-grpo"):
        path = out / stage / "bench_logs.json"
        if path.exists():
            rows = [x for x in json.loads(path.read_text()) if "video_check/gap" in x]
            curves[stage.removeprefix("model-")] = [
                [x["step"], round(x["video_check/own_loss"], 4), round(x["video_check/shuffled_loss"], 4),
                 round(x["video_check/gap"], 4)] for x in rows]
    return curves


def video_check_line(curves: dict[str, list]) -> str | None:
    from vtg.train.video_check import GAP_READS_VIDEO

    parts = []
    for stage, rows in curves.items():
        if rows:
            onset = next((step for step, _, _, gap in rows if gap >= GAP_READS_VIDEO), None)
            parts.append(f"{stage}: gap {rows[0][3]:+.3f} at step {rows[0][0]}, {rows[-1][3]:+.3f} at step "
                         f"{rows[-1][0]}, first >= {GAP_READS_VIDEO} at " + (f"step {onset}" if onset is not None
                                                                              else "no check"))
    if not parts:
        return None
    return ("Video check during training (answer loss with frame pairs shuffled in time minus in order, "
            "`video_check/gap`, nats per answer token): " + "; ".join(parts) + ".")


def targets(r: dict) -> list[tuple[str, str, bool]]:
    from vtg.eval.controls import reads_video

    m = r["metrics"]
    grpo, sft, pair = m["grpo"], m["sft"], r["grpo_vs_sft_r1_at_0.7"]

    def at_least(kind: str, key: str, goal: float, label: str) -> tuple[str, str, bool]:
        if kind not in grpo:
            return label, "n/a (kind not in this world)", False
        return label, f"{grpo[kind][key]:.1f}", grpo[kind][key] >= goal

    return [
        at_least("single", "R@1,IoU=0.7", 85, "single R1@0.7 ≥ 85"),
        at_least("single", "mIoU", 85, "single mIoU ≥ 85"),
        ("GRPO raises R1@0.7 (all present; sign test on the queries that changed, p < 0.05)",
         f"{sft['all']['R@1,IoU=0.7']:.1f} → {grpo['all']['R@1,IoU=0.7']:.1f} (+{pair['b_only']} / −{pair['a_only']} "
         f"queries, p = {pair['p_one_sided']:.3f})", pair["b_only"] > pair["a_only"] and pair["p_one_sided"] < 0.05),
        at_least("multi", "F1@0.5", 70, "multi F1@0.5 ≥ 70"),
        at_least("compositional", "R@1,IoU=0.5", 70, "compositional R1@0.5 ≥ 70"),
        ("reads the video: swapped-video mIoU below own-video mIoU by ≥ 10",
         f"{r['video_control']['grpo']['own']['mIoU']:.1f} vs {r['video_control']['grpo']['swapped']['mIoU']:.1f}",
         reads_video(r["video_control"]["grpo"]["own"]["mIoU"], r["video_control"]["grpo"]["swapped"]["mIoU"])),
        ("within 30 CPU-minutes", f"{sum(r['wall_s'].values()) / 60:.1f} min", sum(r["wall_s"].values()) <= 1800),
    ]


def write_results(folder: Path, r: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(r, indent=1) + "\n")
    (folder / "results.md").write_text(markdown(r))
    print(markdown(r))


def markdown(r: dict) -> str:
    m = r["metrics"]
    family = FAMILY_NAMES[r["model"].get("family", "qwen2.5-vl")]
    lines = [
        f"# Learning benchmark: tiny {family} on the synthetic world (constant → SFT → GRPO)", "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']}. Timings are wall-clock; other jobs may have shared the 2 cores "
        "(bench/learning/README.md says which runs had company).  ",
        f"Model: {r['model']['params']:,}-parameter tiny {family} (size `{r['model']['size']}`), "
        + (f"SFT starts from `{r['model']['init']}` (a curriculum).  " if r["model"].get("init") else
           "random init, first SFT {steps} steps on a world of {kinds} ({videos} other videos, all train), then the "
           "main SFT (a curriculum).  ".format(steps=r["model"]["first_stage"]["steps"],
                                              kinds=", ".join(r["model"]["first_stage"]["kinds"]),
                                              videos=r["model"]["first_stage"]["videos"])
           if r["model"].get("first_stage") else "random init.  "),
        f"World: {r['world']['videos']} videos (8–20 s, 2 fps, {r['world'].get('frame', '56x56').replace('x', '×')}; kinds {', '.join(r['world']['kinds'])}{', one kind per video' if r['world'].get('one_kind_per_video') else ''}), {r['world']['train_queries']} train queries, "
        f"test {r['world']['test_per_kind']} queries per kind.  ",
        f"Constant baseline: {r['constant_baseline']['kind']} window {r['constant_baseline']['window']} "
        f"(train mIoU {r['constant_baseline']['train_mIoU']}), answered for every query.  ",
        "Metrics: `vtg.eval.metrics` (IoU ≥ θ, no clamping, parse failures score 0); R1/mIoU over present queries, "
        "F1@0.5 one-to-one matching, absent = share answered exactly \"not present\". Percent.", "",
        "| kind | run | R1@0.3 | R1@0.5 | R1@0.7 | mIoU | F1@0.5 | absent acc | parse fail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("all",) + tuple(r["world"]["kinds"]):
        for run in ("constant", "sft", "grpo"):
            x = m[run][kind]
            cells = [f"{x[k]:.1f}" if k in x else "–" for k in METRIC_KEYS]
            if kind == "absent":
                cells[:4] = ["–"] * 4
            lines.append(f"| {kind} ({x['queries']}) | {run} | " + " | ".join(cells) + f" | {x['parse_failures']} |")
    mr, gl = r["mean_reward_on_test"], r["grpo_logged_reward"]
    lines += [
        "", f"Mean GRPO reward (weights {mr['weights']}) of the greedy test answers: SFT {mr['sft']['weighted']:.3f} "
        f"→ GRPO {mr['grpo']['weighted']:.3f} (per reward: SFT {mr['sft']}, GRPO {mr['grpo']}).  ",
    ]
    if gl:
        lines.append(f"GRPO's logged rollout reward (temperature {r['recipes']['grpo']['temperature']}): first quarter of "
                     f"logs {gl['first_logs_mean']:.3f}, last quarter {gl['last_logs_mean']:.3f}.")
    check_line = video_check_line(r.get("video_check", {}))
    if check_line:
        lines += ["", check_line]
    vc = r["video_control"]
    lines += ["", "Video control (single + multi test queries, each also asked with another test video of the same "
              "duration; `bench/learning/video_ablation.py`'s sets): a model that reads the video loses accuracy "
              "when the video is swapped, one that answers from the text alone does not.", "",
              "| run | queries | mIoU own video | mIoU swapped video | R1@0.5 own | R1@0.5 swapped |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {vc[name]['own']['queries']} | {vc[name]['own']['mIoU']:.1f} | {vc[name]['swapped']['mIoU']:.1f} "
              f"| {vc[name]['own']['R@1,IoU=0.5']:.1f} | {vc[name]['swapped']['R@1,IoU=0.5']:.1f} |" for name in ("sft", "grpo")]
    lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v}" for k, v in r["wall_s"].items())
              + f"; total {sum(r['wall_s'].values()) / 60:.1f} min.", "", "| target (issue 3) | value | met |",
              "|---|---|---|"]
    lines += [f"| {name} | {val} | {'yes' if ok else 'no'} |" for name, val, ok in targets(r)]
    rs, rg = r["recipes"]["sft"], r["recipes"]["grpo"]
    lines += ["", f"SFT: {rs}  ", f"GRPO: {rg}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
