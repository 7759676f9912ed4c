"""Learning quality of the shipped tiny recipes: what `vtg quickstart` reaches, measured and recorded.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.learning.run      # ~20-30 min on 2 CPU cores; results.json + README
    .venv/bin/python -m bench.learning.run --render               # README table from the committed results.json only
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.learning.run --videos 60 --sft-steps 3 --grpo-steps 2 --eval-limit 4 \
        --out /tmp/bl --results /tmp/bl/results.json              # smoke (minutes; numbers meaningless)

It runs `vtg quickstart --out OUT --fresh` (the product's own pipeline, as a user runs it: a synthetic single-kind
world of 3000 videos, a random-init tiny Qwen2.5-VL of size `small`, SFT with recipes/tiny/sft, GRPO with
recipes/tiny/grpo, `vtg eval` of the base, SFT and GRPO models on the held-out test split, and the swapped-video
control), then collects its report (report/report.json), the control (report/video_control.json) and the stage
timings (timings.json) into one results file: R1@0.3/0.5/0.7 and mIoU per stage, own- vs swapped-video mIoU, wall
time per stage, where and when it ran. The README's table is regenerated from that file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, measured_line, provenance, read_json, table, update_readme, write_json

HERE = Path(__file__).resolve().parent
METRICS = ("R@1,IoU=0.3", "R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU")
STAGES = ("base", "sft", "grpo")
STAGE_NAMES = {"base": "base (random init)", "sft": "SFT (recipes/tiny/sft)", "grpo": "GRPO (recipes/tiny/grpo)"}


def quickstart_args(args) -> list[str]:
    cmd = [
        "quickstart",
        "--out",
        str(args.out),
        "--fresh",
        "--videos",
        str(args.videos),
        "--kinds",
        "single",
        "--family",
        args.family,
        "--seed",
        str(args.seed),
    ]
    for flag, value in (
        ("--sft-steps", args.sft_steps),
        ("--grpo-steps", args.grpo_steps),
        ("--eval-limit", args.eval_limit),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def collect(out: Path) -> dict:
    """The quickstart's report, video control and timings as one result (raises naming a missing file)."""
    report = read_json(out / "report" / "report.json")
    runs = {r["label"]: r for r in report["runs"]}
    stages = {}
    for name in STAGES:
        r = runs[name]
        stages[name] = {
            **{k: r["metrics"].get(k) for k in METRICS},
            "queries": r["counts"].get("queries"),
            "parse_failures": r["counts"].get("parse_failures"),
        }
    control = read_json(out / "report" / "video_control.json")
    question = out / "report" / "question_control.json"
    timings = read_json(out / "timings.json")
    tiny = out / "model-base" / "vtg_tiny.json"
    result = {
        "stages": stages,
        "video_control": control,
        "question_control": read_json(question) if question.exists() else None,
        "timings_s": timings,
        "total_s": round(sum(timings.values()), 1),
        "model": read_json(tiny) if tiny.exists() else None,
    }
    onset = video_check_onset(out / "model-sft")
    if onset is not None:
        result["sft_video_check"] = onset
    return result


def video_check_onset(run_dir: Path) -> dict | None:
    """From the SFT run's last checkpoint: the video check's gaps and the first step where the gap reached 0.01."""
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not states:
        return None
    history = [h for h in read_json(states[-1])["log_history"] if "video_check/gap" in h]
    if not history:
        return None
    onset = next((h["step"] for h in history if h["video_check/gap"] >= 0.01), None)
    return {
        "onset_step": onset,
        "checks": len(history),
        "last_step": history[-1]["step"],
        "last_gap": round(history[-1]["video_check/gap"], 4),
        "from": str(states[-1].parent.name),
    }


def section(r: dict | None) -> str:
    if r is None:
        return (
            "**Not measured yet on this code:** no `results.json` committed. Run the command above (about 20–30 "
            "minutes on 2 CPU cores) and commit `bench/learning/results.json` with this README."
        )
    s, t, c = r["stages"], r["timings_s"], r["video_control"]
    wall = {
        "base": t.get("eval base"),
        "sft": (t.get("SFT"), t.get("eval sft")),
        "grpo": (t.get("GRPO"), t.get("eval grpo")),
    }

    def pct(v):
        return "–" if v is None else f"{v:.1f}"

    rows = []
    for name in STAGES:
        w = wall[name]
        train_s = (
            f"{w[0]:.0f} s train + {w[1]:.0f} s eval"
            if isinstance(w, tuple) and None not in w
            else (f"{w:.0f} s eval" if isinstance(w, (int, float)) else "–")
        )
        rows.append(
            (
                STAGE_NAMES[name],
                *(pct(s[name][k]) for k in METRICS),
                s[name].get("queries"),
                s[name].get("parse_failures"),
                train_s,
            )
        )
    parts = [
        f"Command: `{r['command']}` (runs `vtg {' '.join(r['quickstart'])}`)  \n{measured_line(r)}  \n"
        f"Model: {_model_line(r.get('model'))}.",
        table(["stage", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "test queries", "parse failures", "wall time"], rows),
    ]
    if "own" in c:
        parts.append(_control_line("video", c, "with their own video and with another test video of the same duration"))
    else:
        parts.append("Video control: not run (no two test videos of equal duration to swap).")
    q = r.get("question_control") or {}
    if "own" in q:
        parts.append(_control_line("question", q, "as they are and with another query whose answer differs"))
    v = r.get("sft_video_check")
    if v:
        onset = (
            f"first ≥ 0.01 at step {v['onset_step']}"
            if v["onset_step"] is not None
            else "never ≥ 0.01 (the model did not start reading the video)"
        )
        parts.append(
            f"SFT's video check (`video_check_every`: answer loss with the frames shuffled in time minus in order): "
            f"gap {onset}; {v['last_gap']:+.4f} at step {v['last_step']} ({v['checks']} checks, from "
            f"{v['from']}/trainer_state.json)."
        )
    parts.append(
        "Wall time per stage (s): "
        + ", ".join(f"{k} {val:.0f}" for k, val in t.items())
        + f"; total {r['total_s'] / 60:.1f} min."
    )
    return "\n\n".join(parts)


def _control_line(kind: str, c: dict, asked: str) -> str:
    """A control's result and its verdict, judged as `vtg eval` judges it (vtg.eval.controls.verdict)."""
    from vtg.eval.controls import verdict

    own, swapped = c["own"], c["swapped"]
    said = verdict(kind, own["mIoU"], swapped["mIoU"])
    why = " (its world has one object per video: the answer does not depend on the query)" if kind == "question" else ""
    return (
        f"{kind.capitalize()} control (the GRPO model, {c['queries']} test queries asked {asked}): mIoU "
        f"**{own['mIoU']:.1f} own vs {swapped['mIoU']:.1f} swapped** ({own['mIoU'] - swapped['mIoU']:+.1f}; R1@0.7 "
        f"{own['R@1,IoU=0.7']:.1f} vs {swapped['R@1,IoU=0.7']:.1f}): "
        + (f"the model {said}." if said.startswith("reads") else f"**the model {said}**{why}.")
    )


def readme_section(r: dict) -> str:
    """The repository README's results table, from the committed results."""
    s, t, c = r["stages"], r["timings_s"], r["video_control"]
    q = r.get("question_control") or {}

    def row(label, m, wall=""):
        return (label, *(f"{m[k]:.1f}" for k in ("R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU")), wall)

    rows = [
        row("base (random init)", s["base"]),
        row("after SFT (`recipes/tiny/sft`)", s["sft"], f"{t['SFT'] / 60:.1f} min"),
        row("after GRPO (`recipes/tiny/grpo`)", s["grpo"], f"{t['GRPO'] / 60:.1f} min"),
    ]
    if "own" in c:
        rows.append(row("the same GRPO model, each video swapped for another", c["swapped"]))
    if "own" in q:
        rows.append(row("the same GRPO model, each query swapped for one whose answer differs", q["swapped"]))
    return "\n\n".join(
        [
            table(["model (tiny Qwen2.5-VL)", "R1@0.5", "R1@0.7", "mIoU", "train time"], rows),
            f"By `{r['command'].strip()}` (quickstart total {r['total_s'] / 60:.1f} min). {measured_line(r)} "
            "Generated from [bench/learning/results.json](bench/learning/results.json). A swapped row far below its "
            "model's row means the model reads what was swapped.",
        ]
    )


def _model_line(m: dict | None) -> str:
    if not m:
        return "tiny, random init"
    return f"tiny {m['family']} `{m['size']}`, {m['params']:,} parameters, random init (seed {m['seed']})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench_learning", help="the quickstart's work folder (deleted first)")
    p.add_argument(
        "--results",
        default=str(HERE / "results.json"),
        help="result JSON (the README is updated when it is this folder's results.json)",
    )
    p.add_argument("--videos", type=int, default=3000, help="synthetic videos (the quickstart's default: 3000)")
    p.add_argument("--family", choices=("qwen2.5-vl", "qwen3-vl"), default="qwen2.5-vl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sft-steps", type=int, default=None, help="override the SFT recipe's max_steps (smoke only)")
    p.add_argument("--grpo-steps", type=int, default=None, help="override the GRPO recipe's max_steps (smoke only)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate at most N test queries (smoke only)")
    p.add_argument(
        "--collect-only", action="store_true", help="do not run: collect the results of a finished quickstart in --out"
    )
    p.add_argument("--render", action="store_true", help="only re-render README.md from the committed results.json")
    args = p.parse_args(argv)
    committed = HERE / "results.json"
    if not args.render:
        qs = quickstart_args(args)
        if not args.collect_only:
            env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
            print(f"[bench learning] vtg {' '.join(qs)}", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.run([sys.executable, "-m", "vtg", *qs], cwd=ROOT, env=env).returncode
            if rc:
                print(f"[bench learning] vtg quickstart failed (exit {rc}); nothing written", file=sys.stderr)
                return rc
            print(f"[bench learning] quickstart finished in {time.perf_counter() - t0:.0f} s", flush=True)
        result = {
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.learning.run "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "quickstart": qs,
            **provenance(),
            **collect(Path(args.out)),
        }
        write_json(args.results, result)
        print(section(result))
        if Path(args.results).resolve() != committed:
            return 0
    update_readme(HERE / "README.md", section(read_json(committed) if committed.exists() else None))
    if committed.exists():
        update_readme(ROOT / "README.md", readme_section(read_json(committed)), tag="learning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
