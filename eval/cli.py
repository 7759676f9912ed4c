"""`vtg eval …` command line."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="eval (not implemented yet)")
    p.set_defaults(func=lambda args: print("vtg eval: not implemented yet") or 1)
