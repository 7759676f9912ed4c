"""Where a single-event model's boundaries miss: exact, off by 0.5 s, or off by >= 1 s, and the share of predicted
times ending in ".0" vs ".5" (the synthetic world's moments sit on a 0.5 s grid; Qwen2.5-VL's temporal tokens span
1 s at 2 fps, so a half-second miss is a miss inside one token).

    .venv/bin/python bench/learning/boundary_errors.py --world outputs/bl_single_40k/world \
        --run outputs/bl_single_40k/eval/sft --run outputs/bl_single_40k/eval/grpo
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def boundary_errors(world: Path, run: Path) -> dict:
    gold = {r["id"]: r for r in map(json.loads, (world / "test.jsonl").read_text().splitlines())}
    starts, ends, fractions = [], [], Counter()
    for pred in map(json.loads, (run / "predictions.jsonl").read_text().splitlines()):
        if not pred["moments"] or len(gold[pred["id"]]["moments"]) != 1:
            continue  # single-event queries answered with moments only
        (s, e), (gs, ge) = pred["moments"][0], gold[pred["id"]]["moments"][0]
        starts.append(s - gs)
        ends.append(e - ge)
        fractions.update(f"{x % 1:.1f}" for x in (s, e))
    n = len(starts)

    def shares(errs: list[float]) -> dict:
        return {"exact": round(sum(abs(x) < 1e-6 for x in errs) / n, 3),
                "off_0.5s": round(sum(abs(abs(x) - 0.5) < 1e-6 for x in errs) / n, 3),
                "off_1s_or_more": round(sum(abs(x) >= 1 - 1e-6 for x in errs) / n, 3)}

    return {"answers": n, "start": shares(starts), "end": shares(ends), "fractions": dict(sorted(fractions.items()))}


def main() -> None:
    from per_run import main_over_runs  # this folder is on sys.path when the script runs

    main_over_runs(boundary_errors, __doc__)


if __name__ == "__main__":
    main()
