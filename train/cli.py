"""`vtg train …` and `vtg model …` command lines."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (not implemented yet)")
    p.set_defaults(func=lambda args: print("vtg train: not implemented yet") or 1)
    _register_model(sub)


# ---- vtg model (owner: model engineer) ----------------------------------------------------------------------------

def _register_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="local models: build tiny random-init Qwen-VL models (no hub)")
    msub = p.add_subparsers(dest="model_command", metavar="<model command>")
    t = msub.add_parser("tiny", help="write a tiny random-init Qwen2.5-VL / Qwen3-VL model with tokenizer, chat "
                        "template and processor (seconds, offline)")
    t.add_argument("--family", required=True, choices=["qwen2.5-vl", "qwen3-vl"])
    t.add_argument("--out", required=True, help="output folder (created)")
    t.add_argument("--size", default="tiny", choices=["tiny", "small"],
                   help="tiny: vision hidden 32; small: vision hidden 64 (learns the synthetic world)")
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
