"""`vtg train …` and `vtg model …` command lines."""

from __future__ import annotations

import argparse


TRAIN_USAGE = """usage: vtg train {sft,grpo} --config RECIPE.yaml [--key value ...] [--resume]
                 [--accelerate recipes/accelerate/{ddp,zero2,zero3}.yaml [--num_processes N]]

  sft    supervised fine-tuning on video grounding records (TRL SFTTrainer + the vtg video collator)
  grpo   Time-R1-style GRPO: video rollouts (vLLM colocated, or HF generate with --use_vllm false) and rewards

  --config       a recipe, e.g. recipes/tiny/sft/config_default.yaml
  --key value    override any recipe key; sections with dots: --lora.r 8, --sampling.fps 1, --rewards.format 0.5
  --resume       continue from the last checkpoint-N in output_dir (optimizer, scheduler, RNG, data position)
  --accelerate   relaunch under `accelerate launch` with this config (DDP / DeepSpeed ZeRO-2/3); --num_processes N
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="SFT and GRPO on video grounding records (recipes/*/{sft,grpo}/*.yaml)")
    tsub = p.add_subparsers(dest="train_command", metavar="{sft,grpo}")
    for name, help_text in (("sft", "supervised fine-tuning"), ("grpo", "GRPO with video rollouts")):
        # Recipe overrides are free-form `--key value` pairs: collect every token and parse them ourselves.
        t = tsub.add_parser(name, help=help_text, prefix_chars="+", add_help=False)
        t.add_argument("tokens", nargs="*")
        t.set_defaults(func=_train, method=name)
    p.set_defaults(func=lambda args: print(TRAIN_USAGE) or 2)
    _register_model(sub)


def _pop_option(tokens: list[str], name: str) -> str | None:
    """Remove `--name value` (or `--name=value`) from tokens; returns the value."""
    for i, tok in enumerate(tokens):
        if tok == name:
            if i + 1 >= len(tokens):
                from vtg.errors import UserError

                raise UserError(f"{name} needs a value")
            value = tokens[i + 1]
            del tokens[i : i + 2]
            return value
        if tok.startswith(name + "="):
            del tokens[i]
            return tok.split("=", 1)[1]
    return None


def _train(args: argparse.Namespace) -> int:
    tokens = list(args.tokens)
    if "-h" in tokens or "--help" in tokens:
        print(TRAIN_USAGE)
        return 0
    accelerate_config = _pop_option(tokens, "--accelerate")
    num_processes = _pop_option(tokens, "--num_processes")
    if accelerate_config:
        return _relaunch(args.method, accelerate_config, num_processes, tokens)
    config = _pop_option(tokens, "--config")
    from vtg.train.config import GRPORecipe, SFTRecipe, load_recipe

    recipe = load_recipe(SFTRecipe if args.method == "sft" else GRPORecipe, config, tokens)
    if args.method == "sft":
        from vtg.train.sft import run_sft

        out = run_sft(recipe)
    else:
        from vtg.train.grpo import run_grpo

        out = run_grpo(recipe)
    print(f"[vtg] {args.method} done: {out}")
    return 0


def _relaunch(method: str, accelerate_config: str, num_processes: str | None, tokens: list[str]) -> int:
    """`accelerate launch --config_file X [--num_processes N] -m vtg train <method> …` (same flags, one process each)."""
    import subprocess
    import sys
    from pathlib import Path

    from vtg.errors import UserError

    if not Path(accelerate_config).is_file():
        raise UserError(f"--accelerate: config not found: {accelerate_config} (see recipes/accelerate/)")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config]
    if num_processes:
        cmd += ["--num_processes", num_processes]
    cmd += ["-m", "vtg", "train", method, *tokens]
    print("[vtg] " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


# ---- vtg model (owner: model engineer) ----------------------------------------------------------------------------


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
        "(see vtg.train.tiny_model.SIZES and bench/learning)",
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
