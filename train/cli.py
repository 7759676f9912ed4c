"""`vtg train …` and `vtg model …` command lines."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="SFT and GRPO on video grounding records (recipes/*/{sft,grpo}/*.yaml)")
    tsub = p.add_subparsers(dest="train_command", metavar="{sft,grpo}")
    for name, help_text in (
        ("sft", "supervised fine-tuning (TRL SFTTrainer + the vtg video collator)"),
        (
            "grpo",
            "Time-R1-style GRPO: video rollouts (vLLM colocated, or the policy's generate "
            "with --rollout_engine transformers) and rewards",
        ),
    ):
        t = tsub.add_parser(
            name,
            help=help_text,
            description=help_text,
            allow_abbrev=False,
            epilog="Any other `--key value` overrides a recipe key: every key of vtg's recipes and of TRL's "
            f"{'SFTConfig' if name == 'sft' else 'GRPOConfig'} (e.g. --learning_rate 1e-5, --optim adamw_torch); "
            "sections with dots: --lora.r 8, --sampling.fps 1, --rewards.format 0.5. See docs/training.md.",
        )
        t.add_argument("--config", help="a recipe, e.g. recipes/tiny/sft/config_default.yaml")
        t.add_argument(
            "--resume",
            action="store_true",
            help="continue from the last checkpoint-N in output_dir (optimizer, scheduler, RNG, data)",
        )
        t.add_argument(
            "--accelerate",
            metavar="YAML",
            help="relaunch under `accelerate launch` with this config (recipes/accelerate/*.yaml)",
        )
        t.add_argument("--num_processes", help="with --accelerate: processes to launch")
        t.set_defaults(func=_train, method=name, overrides=[], takes_overrides=True)
    p.set_defaults(func=lambda args: p.print_help() or 2)
    _register_model(sub)


def _train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + (["--resume_from_checkpoint", "true"] if args.resume else [])
    if args.accelerate:
        return _relaunch(args, overrides)
    from vtg.train.config import VideoGRPOConfig, VideoSFTConfig, load_recipe

    recipe = load_recipe(VideoSFTConfig if args.method == "sft" else VideoGRPOConfig, args.config, overrides)
    if args.method == "sft":
        from vtg.train.sft import run_sft

        out = run_sft(recipe)
    else:
        from vtg.train.grpo import run_grpo

        out = run_grpo(recipe)
    print(f"[vtg] {args.method} done: {out}")
    return 0


def _relaunch(args: argparse.Namespace, overrides: list[str]) -> int:
    """`accelerate launch --config_file X [--num_processes N] -m vtg train <method> …` (same flags, a process each)."""
    import subprocess
    import sys
    from pathlib import Path

    from vtg.errors import UserError

    if not Path(args.accelerate).is_file():
        raise UserError(f"--accelerate: config not found: {args.accelerate} (see recipes/accelerate/)")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", args.accelerate]
    if args.num_processes:
        cmd += ["--num_processes", args.num_processes]
    cmd += ["-m", "vtg", "train", args.method, *(["--config", args.config] if args.config else []), *overrides]
    print("[vtg] " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


# ---- vtg model ------------------------------------------------------------------------------------------------------


def _register_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="local models: build tiny random-init Qwen-VL models (no hub)")
    msub = p.add_subparsers(dest="model_command", metavar="<model command>")
    t = msub.add_parser(
        "tiny",
        help="write a tiny random-init Qwen2.5-VL / Qwen3-VL model with tokenizer, chat "
        "template and processor (seconds, offline)",
    )
    t.add_argument("--family", required=True, choices=["qwen2.5-vl", "qwen3-vl"])
    t.add_argument("--out", required=True, help="output folder (created)")
    from vtg.train.tiny_model import SIZES  # light module: no torch/transformers at import

    t.add_argument(
        "--size",
        default="tiny",
        choices=list(SIZES),
        help="tiny: vision hidden 32; small: vision hidden 64; medium: vision hidden 128, 4 text layers "
        "(see vtg.train.tiny_model.SIZES)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_tiny)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _tiny(args: argparse.Namespace) -> int:
    import json

    from vtg.train.tiny_model import build_tiny_model

    out = build_tiny_model(args.family, args.out, size=args.size, seed=args.seed)
    info = json.loads((out / "vtg_tiny.json").read_text())
    print(f"{args.family} ({args.size}, seed {args.seed}): {info['params']:,} parameters -> {out}")
    return 0
