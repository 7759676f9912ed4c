"""The command line shared by the analyses that read a world and one or more eval runs (boundary_errors, binding)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable


def main_over_runs(analysis: Callable[[Path, Path], dict], doc: str) -> None:
    """`--world W --run R [--run R2 ...]`: print each run's `analysis(world, run)` as one JSON line."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--run", type=Path, action="append", required=True, help="an eval run folder (repeatable)")
    args = ap.parse_args()
    for run in args.run:
        print(run, json.dumps(analysis(args.world, run)))
