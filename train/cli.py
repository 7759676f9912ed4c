"""`vtg train …` command line."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (not implemented yet)")
    p.set_defaults(func=lambda args: print("vtg train: not implemented yet") or 1)
