"""`vtg quickstart`: the whole pipeline, small, on the embedded synthetic world, on a CPU.

synth data -> tiny model -> SFT -> GRPO -> eval (base, SFT, GRPO) -> report, everything under `--out`.
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
        "quickstart", help="synth data -> tiny model -> SFT -> GRPO -> eval report, on a CPU",
        description="Runs the whole vtg pipeline small on the embedded synthetic world and writes a report. "
        "Stages whose outputs exist are reused; --fresh starts over.",
    )
    p.add_argument("--out", default="outputs/quickstart", help="output folder (default outputs/quickstart)")
    p.add_argument("--videos", type=int, default=400, help="synthetic videos to generate (default 400)")
    p.add_argument("--family", choices=["qwen2.5-vl", "qwen3-vl"], default="qwen2.5-vl")
    # Short defaults so the whole run takes minutes on 2 cores; bench/learning holds the long runs and what they reach.
    p.add_argument("--sft-steps", type=int, default=2000, help="SFT steps (default 2000)")
    p.add_argument("--grpo-steps", type=int, default=10, help="GRPO steps (default 10)")
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
    from vtg.data.synth import SynthConfig, generate
    from vtg.train.tiny_model import build_tiny_model

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(total=8)
    data = out / "data"
    stages.run("synthetic world", data / "test.jsonl", lambda: generate(
        SynthConfig(n_videos=args.videos, seed=args.seed, min_duration=8.0, max_duration=20.0), data, progress=True))
    base = out / "model-base"
    stages.run("tiny model", base / "config.json",
               lambda: build_tiny_model(args.family, base, size="small", seed=args.seed))
    sft = _train_stage(stages, "sft", out, data, base, args.sft_steps, args.seed)
    grpo = _train_stage(stages, "grpo", out, data, sft, args.grpo_steps, args.seed)
    runs = [_eval_stage(stages, name, model, out, data, args.eval_limit)
            for name, model in (("base", base), ("sft", sft), ("grpo", grpo))]
    from vtg.eval.report import write_report

    stages.run("report", out / "report", lambda: write_report(runs, out / "report", labels=["base", "sft", "grpo"]),
               reuse=False)
    (out / "timings.json").write_text(json.dumps(stages.timings, indent=2) + "\n")
    print(_metrics_section((out / "report" / "report.md").read_text()))
    print(f"full report (tables + plots): {out / 'report'}")
    print(f"quickstart finished in {sum(stages.timings.values()):.0f}s: {out}")
    return 0


def _train_stage(stages: Stages, method: str, out: Path, data: Path, init: Path, steps: int | None,
                 seed: int) -> Path:
    from vtg.train.config import GRPORecipe, SFTRecipe, load_recipe

    target = out / f"model-{method}"
    overrides = {"model": str(init), "train_file": str(data / "train.jsonl"), "output_dir": str(target),
                 "seed": seed}
    if steps is not None:
        overrides["max_steps"] = steps
    cls = SFTRecipe if method == "sft" else GRPORecipe
    recipe = load_recipe(cls, RECIPES / "tiny" / method / "config_default.yaml", overrides)

    def train() -> Path:
        from vtg.train.grpo import run_grpo
        from vtg.train.sft import run_sft

        return (run_sft if method == "sft" else run_grpo)(recipe)

    stages.run(method.upper(), target / "final" / "config.json", train)
    return target / "final"


def _eval_stage(stages: Stages, name: str, model: Path, out: Path, data: Path, limit: int | None) -> Path:
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import run_job

    run_dir = out / "eval" / name
    cfg = EvalConfig.load(RECIPES / "eval" / "synthetic.yaml", records=str(data / "test.jsonl"))
    stages.run(f"eval {name}", run_dir / "metrics.json",
               lambda: run_job(cfg, out=run_dir, model=str(model), limit=limit))
    return run_dir


def _metrics_section(markdown: str) -> str:
    """The report's first table (the headline metrics); the rest stays in the file."""
    sections = markdown.split("\n## ")
    return "## " + sections[1].strip() if len(sections) > 1 else markdown
