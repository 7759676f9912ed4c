"""`vtg quickstart`: the whole pipeline, small, on the embedded synthetic world, on a CPU.

synth data -> tiny model -> SFT -> GRPO -> eval (base, SFT, GRPO) -> controls -> report, everything under `--out`.
The controls (`vtg.eval.controls`) ask the GRPO model the single/multi test queries again with each video swapped
for another of the same duration (a model that reads the video loses accuracy there), and with each query swapped
for another whose answer differs (a model that reads the question loses accuracy there). The report also scores the
prior baselines of the training split (`vtg.eval.baselines`) and says by how much each model beats them.
Each stage is skipped when its output already exists (rerunning continues where a stopped run left off);
`--fresh` starts over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="synth data -> tiny model -> SFT -> GRPO -> eval report, on a CPU",
        description="Runs the whole vtg pipeline small on the embedded synthetic world and writes a report. "
        "Stages whose outputs exist are reused; --fresh starts over.",
    )
    p.add_argument("--out", default="outputs/quickstart", help="output folder (default outputs/quickstart)")
    # Defaults: the setting in which the tiny model measurably learns to read the video (bench/learning): one object
    # per video, 3000 videos, the tiny recipes' own step counts. A smoke run is `--videos 400 --sft-steps 2000
    # --grpo-steps 10` (minutes, but it answers from text priors).
    p.add_argument("--videos", type=int, default=3000, help="synthetic videos to generate (default 3000)")
    p.add_argument(
        "--kinds",
        default="single",
        help="query kinds of the synthetic world, comma-separated, from "
        "single,multi,compositional,absent (default single: the tiny model does not learn the "
        "four-kind world yet)",
    )
    p.add_argument("--family", choices=["qwen2.5-vl", "qwen3-vl"], default="qwen2.5-vl")
    p.add_argument(
        "--sft-steps",
        type=int,
        default=None,
        help="SFT steps (default: recipes/tiny/sft/config_default.yaml's max_steps)",
    )
    p.add_argument(
        "--grpo-steps",
        type=int,
        default=None,
        help="GRPO steps (default: recipes/tiny/grpo/config_default.yaml's max_steps)",
    )
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on at most N test queries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete --out first")
    p.set_defaults(func=run)


class Stages:
    """Runs named stages in order, printing progress and wall time; a stage whose output exists is reused."""

    def __init__(self, total: int):
        self.total, self.done, self.timings = total, 0, {}

    def run(self, name: str, output: Path, fn, *, reuse: bool = True):
        self.done += 1
        head = f"[{self.done}/{self.total}] {name}"
        if reuse and output.exists():
            print(f"{head}: reusing {output}", flush=True)
            self.timings[name] = 0.0
            return output
        print(f"{head} ...", flush=True)
        t0 = time.time()
        result = fn()
        self.timings[name] = round(time.time() - t0, 1)
        print(f"{head}: done in {self.timings[name]:.1f}s -> {output}", flush=True)
        return result


RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def run(args: argparse.Namespace) -> int:
    from vtg.data.synth import SynthConfig, check_reused_world, generate
    from vtg.train.tiny_model import build_tiny_model

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(total=12)
    data = out / "data"
    world = SynthConfig(
        n_videos=args.videos, seed=args.seed, min_duration=8.0, max_duration=20.0, kinds=_kinds(args.kinds)
    )  # checks --kinds before anything runs
    check_reused_world(world, data)
    stages.run("synthetic world", data / "test.jsonl", lambda: generate(world, data, progress=print))
    base = out / "model-base"
    stages.run(
        "tiny model", base / "config.json", lambda: build_tiny_model(args.family, base, size="small", seed=args.seed)
    )
    sft = _train_stage(stages, "sft", out, data, base, args.sft_steps, args.seed)
    grpo = _train_stage(stages, "grpo", out, data, sft, args.grpo_steps, args.seed)
    runs = [
        _eval_stage(stages, f"eval {name}", model, out / "eval" / name, data / "test.jsonl", args.eval_limit)
        for name, model in (("base", base), ("sft", sft), ("grpo", grpo))
    ]
    controls = {c: _control(stages, c, grpo, out, data, args.eval_limit, args.seed) for c in CONTROL_DIRS}
    from vtg.eval.report import write_report

    def report() -> None:
        write_report(runs, out / "report", labels=["base", "sft", "grpo"], train=data / "train.jsonl")
        for c, result in controls.items():
            (out / "report" / f"{c}_control.json").write_text(json.dumps(result, indent=1) + "\n")
        with open(out / "report" / "report.md", "a", encoding="utf-8") as f:
            f.write("".join("\n" + _control_markdown(result, c) for c, result in controls.items()))

    stages.run("report", out / "report", report, reuse=False)
    (out / "timings.json").write_text(json.dumps(stages.timings, indent=2) + "\n")
    markdown = (out / "report" / "report.md").read_text()
    print(_metrics_section(markdown))
    print("\n" + _section(markdown, "Controls and baselines"))
    for c, result in controls.items():
        print(_control_markdown(result, c))
    print(f"full report (tables + plots): {out / 'report'}")
    print(f"quickstart finished in {sum(stages.timings.values()):.0f}s: {out}")
    print(serve_hint(grpo, data))
    return 0


def serve_hint(model: Path, data: Path, port: int = 8000) -> str:
    """How to serve the model the quickstart trained, with its data as the media root, and where to look."""
    return (
        f"serve the trained model:\n  vtg serve --model {model} --allowed-local-media-path {data} --port {port}\n"
        f"then open http://127.0.0.1:{port}/ (pick a video from {data / 'videos'}) or POST /v1/grounding"
    )


def _kinds(text: str) -> tuple[str, ...]:
    """--kinds as a tuple; SynthConfig names the bad ones (before anything is generated)."""
    return tuple(k.strip() for k in text.split(",") if k.strip())


def _train_stage(stages: Stages, method: str, out: Path, data: Path, init: Path, steps: int | None, seed: int) -> Path:
    from vtg.train.config import VideoGRPOConfig, VideoSFTConfig, load_recipe

    target = out / f"model-{method}"
    overrides = {"model": str(init), "train_file": str(data / "train.jsonl"), "output_dir": str(target), "seed": seed}
    if steps is not None:
        overrides["max_steps"] = steps
    cls = VideoSFTConfig if method == "sft" else VideoGRPOConfig
    recipe = load_recipe(cls, RECIPES / "tiny" / method / "config_default.yaml", overrides)

    def train() -> Path:
        from vtg.train.grpo import run_grpo
        from vtg.train.sft import run_sft

        return (run_sft if method == "sft" else run_grpo)(recipe)

    stages.run(method.upper(), target / "final" / "config.json", train)
    return target / "final"


def _eval_stage(stages: Stages, name: str, model: Path, run_dir: Path, records: Path, limit: int | None) -> Path:
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import run_job

    cfg = EvalConfig.load(RECIPES / "eval" / "synthetic.yaml", records=str(records))
    stages.run(name, run_dir / "metrics.json", lambda: run_job(cfg, out=run_dir, model=str(model), limit=limit))
    return run_dir


CONTROL_DIRS = {"video": "control", "question": "question_control"}  # folders under out/eval (video's as before)
_SWAPPED = {"video": "videos", "question": "questions"}


def _control(stages: Stages, control: str, model: Path, out: Path, data: Path, limit: int | None, seed: int) -> dict:
    """Evaluate `model` on the control's own and swapped sets; their metrics (none when the test split has nothing
    to swap: no two single/multi videos of equal duration, or no query whose answer differs)."""
    from vtg.eval.controls import write_control_sets

    folder = out / "eval" / CONTROL_DIRS[control]
    own, swapped, n = write_control_sets(data / "test.jsonl", folder, seed, control=control)
    result: dict = {"model": str(model), "queries": min(n, limit) if limit else n}
    for which, records in (("own", own), ("swapped", swapped)):
        run_dir = folder / which
        name = f"{control} control ({which} {_SWAPPED[control]})"
        if n == 0:
            stages.run(name, run_dir, lambda: print(f"  no test {_SWAPPED[control]} to swap"), reuse=False)
            continue
        _eval_stage(stages, name, model, run_dir, records, limit)
        metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        result[which] = {k: round(metrics[k], 2) for k in ("R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU")}
    return result


def _control_markdown(control: dict, kind: str = "video") -> str:
    from vtg.eval.controls import verdict

    things = _SWAPPED[kind]
    lines = [f"## {kind.capitalize()} control (GRPO model)", ""]
    if "own" not in control:
        why = "no two single/multi videos of equal duration" if kind == "video" else "no query whose answer differs"
        return "\n".join(lines + [f"Not run: the test split has {why}.", ""])
    own, swapped = control["own"], control["swapped"]
    how = (
        "each video swapped for another test video of the same duration. A model that reads the video scores lower "
        "with swapped videos; equal scores mean it answers from the text alone."
        if kind == "video"
        else "each query swapped for another test query whose answer differs (same video when it has one). A model "
        "that reads the question scores lower with swapped questions; equal scores mean it answers from the video "
        "alone."
    )
    lines += [
        f"The same {control['queries']} single/multi test queries, asked as they are and with {how}",
        "",
        f"| {things} | R1@0.5 | R1@0.7 | mIoU |",
        "|---|---|---|---|",
    ]
    for name, m in (("own", own), ("swapped", swapped)):
        lines.append(f"| {name} | {m['R@1,IoU=0.5']:.1f} | {m['R@1,IoU=0.7']:.1f} | {m['mIoU']:.1f} |")
    said = verdict(kind, own["mIoU"], swapped["mIoU"])
    hint = {
        "video": "; its answers come from text priors (train longer: recipes/tiny/sft)",
        "question": "; its answers do not depend on the query's words (in a world with one object per video they need "
        "not)",
    }
    lines += [
        "",
        f"mIoU drops by {own['mIoU'] - swapped['mIoU']:.1f} points with swapped {things}: "
        + (f"the model {said}." if said.startswith("reads") else f"**the model {said}**{hint[kind]}."),
        "",
    ]
    return "\n".join(lines)


def _section(markdown: str, title: str) -> str:
    """The report's `## title` section, or "" when it has none."""
    part = next((p for p in markdown.split("\n## ") if p.startswith(title)), None)
    return "## " + part.strip() + "\n" if part else ""


def _metrics_section(markdown: str) -> str:
    """The report's first table (the headline metrics); the rest stays in the file."""
    sections = markdown.split("\n## ")
    return "## " + sections[1].strip() if len(sections) > 1 else markdown
