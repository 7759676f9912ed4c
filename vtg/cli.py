"""The `vtg` command line: one entry point, one sub-command per area, each registered by its own package.

Heavy imports (torch, transformers, vllm) happen inside the handlers so that `vtg --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vtg.errors import UserError

# (module, help) for each top-level sub-command; each module has `register(subparsers)`.
AREAS = [
    ("vtg.data.cli", "data: convert public data sets, synthesize the video world, validate records"),
    ("vtg.train.cli", "train / model: SFT and GRPO recipes, tiny local models"),
    ("vtg.serve.cli", "serve: OpenAI-compatible grounding endpoint on vLLM"),
    ("vtg.eval.cli", "eval: offline evaluation jobs, scores, reports"),
    ("vtg.quickstart", "quickstart: the whole pipeline on the embedded synthetic world"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtg",
        description="Video temporal grounding: data, training (SFT + GRPO), serving and evaluation "
        "for Qwen-VL-family video LLMs.",
        epilog="Run `vtg <command> --help` for each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for module, _ in AREAS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserError as e:  # bad input: a clear message, no traceback
        print(f"vtg: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
