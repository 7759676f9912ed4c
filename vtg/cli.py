"""The `vtg` command line: one entry point, one sub-command per area, each registered by its own package.

Heavy imports (torch, transformers, vllm) happen inside the handlers so that `vtg --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vtg.errors import UserError

# (module, help) for each top-level sub-command; each module has `register(subparsers)`.
AREAS = [
    ("vtg.data.cli", "data: convert public data sets, synthesize the video world, validate records"),
    ("vtg.train.cli", "train / model: SFT and GRPO recipes, tiny local models"),
    ("vtg.serve.cli", "serve: OpenAI-compatible grounding endpoint on vLLM"),
    ("vtg.eval.cli", "eval: offline evaluation jobs, scores, reports"),
    ("vtg.stream_cli", "stream: ground a video as a live stream, events as JSON lines"),
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


class _Stderr(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a line is written (tests swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """vtg's own log lines on stderr, `[vtg] message` (the library logs; only the CLI prints)."""
    logger = logging.getLogger("vtg")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("[vtg] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `vtg train` takes free-form recipe overrides (`--key value`) after its own options
    args, rest = parser.parse_known_args(argv)
    if rest:
        if not getattr(args, "takes_overrides", False):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.overrides = rest
    setup_logging()
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
