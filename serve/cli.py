"""`vtg serve …` command line."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve (not implemented yet)")
    p.set_defaults(func=lambda args: print("vtg serve: not implemented yet") or 1)
