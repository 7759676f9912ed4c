"""`vtg quickstart`: the whole pipeline, small, on the embedded synthetic world (filled in as areas land)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="synth data -> tiny model -> SFT -> GRPO -> eval report, on CPU")
    p.add_argument("--out", default="outputs/quickstart")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
