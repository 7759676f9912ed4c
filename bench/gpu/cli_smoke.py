"""Our training CLI's code paths on one CUDA GPU, on tiny models: does `vtg train sft|grpo` run there as on CPU?

    python -m bench.gpu.cli_smoke --json out.json     # on the GPU machine (bench/gpu/README.md: the wheels, run.py)
    python -m bench.gpu.cli_smoke --steps-scale 0.05  # on CPU, as a pre-flight check of imports and arithmetic

Each job builds its recipe exactly as `vtg train <method> --config <recipe> --key value ...` does (`load_recipe`
with the committed tiny recipe and overrides, then `run_sft` / the GRPO trainer's `run()`), on a tiny model and a
60-video synthetic world built on the spot, and reports what a user would otherwise find out the hard way on their
first GPU run: where the weights live and in which dtype (recipe `precision: auto` → bf16 on GPU), that the vision
tower runs in every loss pass (forward-hook count), that the merger gets a non-zero gradient, the loss at the start
and the end, and the speed. GRPO runs with HF-generate rollouts (`rollout_engine: transformers`): vLLM's CUDA wheel
cannot be carried to the GPU machine. Weights are tiny and random: the losses say the step runs and descends, not
quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.gpu.grpo_step import ROOT, _noise_reward, import_vtg


class Probe:
    """TrainerCallback + hooks: device/dtype of the weights, vision-tower forwards per optimizer step, merger grad."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self
        self.vision_calls = 0
        self.merger_grad: list[float] = []
        self.logs: list[dict] = []
        self.where: dict = {}

        class CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                outer.attach(model)

            def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
                outer.merger_grad.append(outer.grad_norm())

            def on_log(self, args, state, control, logs=None, **kw):
                outer.logs.append(dict(logs or {}))

        self.callback = CB()

    def attach(self, model):
        core = model.get_base_model() if hasattr(model, "get_base_model") else model
        visual = core.model.visual
        self.merger = visual.merger
        visual.register_forward_hook(lambda *a: setattr(self, "vision_calls", self.vision_calls + 1))
        p = next(iter(visual.parameters()))
        lm = next(p for n, p in core.named_parameters() if "language_model" in n)
        self.where = {
            "vision": f"{p.device.type}/{str(p.dtype).removeprefix('torch.')}",
            "language": f"{lm.device.type}/{str(lm.dtype).removeprefix('torch.')}",
            "trainable": sum(q.numel() for q in model.parameters() if q.requires_grad),
        }

    def grad_norm(self) -> float:
        grads = [p.grad.float().norm() ** 2 for p in self.merger.parameters() if p.grad is not None]
        return float(sum(grads) ** 0.5) if grads else 0.0


def _losses(logs: list[dict], key: str) -> tuple[float | None, float | None]:
    vals = [float(entry[key]) for entry in logs if key in entry]
    return (vals[0], vals[-1]) if vals else (None, None)


def run_job(name: str, method: str, config: str, overrides: dict, noise: bool = False) -> dict:
    from vtg.train.config import VideoGRPOConfig, VideoSFTConfig, load_recipe

    tokens = [t for k, v in overrides.items() for t in (f"--{k}", str(v))]
    recipe = load_recipe(VideoSFTConfig if method == "sft" else VideoGRPOConfig, ROOT / config, tokens)
    probe = Probe()
    t0 = time.perf_counter()
    if method == "sft":
        from vtg.train.sft import run_sft

        out = run_sft(recipe, callbacks=[probe.callback])  # what `vtg train sft` calls
    else:
        from vtg.train.grpo import build_grpo_trainer

        # = run_grpo(recipe, callbacks), plus the noise reward where asked
        trainer = build_grpo_trainer(recipe, [probe.callback], {"noise": (_noise_reward, 1.0)} if noise else None)
        out = trainer.run(f"rewards {recipe.rewards}")
    wall = time.perf_counter() - t0
    steps = recipe.max_steps
    first, last = _losses(probe.logs, "loss")
    row = {
        "job": name,
        "method": method,
        "tuning": recipe.tuning,
        "steps": steps,
        "wall_s": wall,
        "steps_per_s": steps / wall,
        **probe.where,
        "vision_calls": probe.vision_calls,
        "vision_calls_per_step": probe.vision_calls / steps,
        "merger_grad_min": min(probe.merger_grad) if probe.merger_grad else None,
        "loss_first": first,
        "loss_last": last,
        "output": str(out),
        # the recipe's video check (step 0 and every video_check_every steps) and the merger's own rate
        "video_check_gap": [e["video_check/gap"] for e in probe.logs if "video_check/gap" in e],
        "merger_lr_ratio": next(
            (
                e["merger_learning_rate"] / e["learning_rate"]
                for e in reversed(probe.logs)
                if e.get("merger_learning_rate") and e.get("learning_rate")
            ),
            None,
        ),
    }
    if method == "grpo":
        row["reward_first"], row["reward_last"] = _losses(probe.logs, "reward")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every job's steps (CPU pre-flight)")
    p.add_argument(
        "--trained-sft",
        default=None,
        help="a Qwen2.5-VL tiny model already trained on this kind of world (bench/learning's "
        "outputs/bench_learning/model-sft/final): "
        "its GRPO rows get real rewards; without it they start from the smoke's own 300-step SFT "
        "model and add a noise reward",
    )
    p.add_argument(
        "--families", default="qwen2.5-vl,qwen3-vl", help="model families to run, comma-separated (default: both)"
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    import_vtg()
    from vtg.data.synth import SynthConfig, generate
    from vtg.train.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="vtg_gpu_smoke_"))
    world = work / "world"
    generate(SynthConfig(n_videos=60, seed=0, min_duration=8.0, max_duration=20.0, kinds=("single",)), world, workers=1)
    train = str(world / "train.jsonl")
    n = lambda s: max(2, int(s * args.steps_scale))  # noqa: E731
    rows = []
    sft, grpo = "recipes/tiny/sft/config_default.yaml", "recipes/tiny/grpo/config_default.yaml"
    common_grpo = {
        "train_file": train,
        "rollout_engine": "transformers",
        "per_device_train_batch_size": 16,
        "logging_steps": 1,
        "save_steps": 10**6,
    }
    for family in args.families.split(","):
        model = build_tiny_model(family, work / family / "base", size="small")
        common = {"model": model, "train_file": train, "logging_steps": 10, "save_steps": 10**6}
        full = run_job(
            f"{family} sft full", "sft", sft, {**common, "output_dir": work / family / "sft", "max_steps": n(300)}
        )
        rows.append(full)
        rows.append(
            run_job(
                f"{family} sft lora",
                "sft",
                sft,
                {
                    **common,
                    "output_dir": work / family / "lora",
                    "max_steps": n(100),
                    "tuning": "lora",
                    "learning_rate": 1e-3,
                },
            )
        )
        trained = args.trained_sft if family == "qwen2.5-vl" else None
        start = trained or full["output"]
        for tuning in ("full", "lora"):
            rows.append(
                run_job(
                    f"{family} grpo {tuning} from {'trained' if trained else 'smoke'} SFT"
                    f"{'' if trained else ' +noise reward'}",
                    "grpo",
                    grpo,
                    {
                        **common_grpo,
                        "model": start,
                        "output_dir": work / family / f"grpo-{tuning}",
                        "max_steps": n(10),
                        "tuning": tuning,
                    },
                    noise=not trained,
                )
            )
    result = {
        "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    print(table(result), flush=True)
    return 0


def table(result: dict) -> str:
    def f(v, fmt=".3g"):
        return "-" if v is None else format(v, fmt)

    head = [
        "job",
        "steps",
        "s",
        "steps/s",
        "vision",
        "language",
        "trainable",
        "vision fwd/step",
        "merger |g| min",
        "loss first->last",
        "reward first->last",
        "video check gap",
        "merger lr / lr",
    ]
    lines = [f"card: {result['card']}, torch {result['torch']}", " | ".join(head)]
    for r in result["rows"]:
        lines.append(
            " | ".join(
                [
                    r["job"],
                    str(r["steps"]),
                    f(r["wall_s"], ".1f"),
                    f(r["steps_per_s"], ".1f"),
                    r.get("vision", "-"),
                    r.get("language", "-"),
                    f"{r.get('trainable', 0):,}",
                    f(r["vision_calls_per_step"], ".2f"),
                    f(r["merger_grad_min"]),
                    f"{f(r['loss_first'])} -> {f(r['loss_last'])}",
                    f"{f(r.get('reward_first'))} -> {f(r.get('reward_last'))}" if r["method"] == "grpo" else "-",
                    ", ".join(f"{g:+.4f}" for g in r.get("video_check_gap", [])) or "-",
                    f(r.get("merger_lr_ratio")),
                ]
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
