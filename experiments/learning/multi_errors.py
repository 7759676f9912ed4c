"""Where a run's multi-moment answers miss: the count of moments, or the boundaries of the moments it does find.

For each eval run on a world made by `vtg data synth` (its `scenes.jsonl` and `test.jsonl`), over the multi queries:
- F1@0.5 and the share answered with the true number of moments, split by whether every gap between two true
  moments contains a whole empty temporal token (a frame pair [2k, 2k+1] with the object in neither frame). A gap
  without one is invisible at token level: Qwen-VL merges 2 frames into each temporal token, so "the gap is too short
  for the tokens" predicts that only these queries lose their count;
- the (true, predicted) count table;
- each true moment's best IoU with any predicted moment, and for the true moments matched one-to-one at IoU ≥ 0.5
  (`vtg.data.grammar.match_moments`) how far the start and end are off (exact, 0.5 s, ≥ 1 s at 2 fps).

    .venv/bin/python bench/learning/multi_errors.py --world outputs/s12/okpv_s0_recipe/world \
        --run grpo=outputs/s12/okpv_s0_recipe/eval/grpo [--run ...] [--out FILE.json]
    .venv/bin/python bench/learning/multi_errors.py --bench s0=outputs/s12/okpv_s0_recipe [--bench ...]
        (a `run.py --out` folder: its world, eval/sft and eval/grpo)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from vtg.data.grammar import iou, match_moments, moment_f1


def gaps_have_empty_token(intervals: list[list[int]], frames: int) -> bool:
    """True when every gap between consecutive [a, b) frame intervals holds a whole temporal token [2k, 2k + 2)."""
    return all(any(gap_start <= 2 * k and 2 * k + 2 <= gap_end for k in range(frames // 2))
               for (_, gap_start), (gap_end, _) in zip(intervals, intervals[1:]))


def off_by(x: float) -> str:
    x = abs(x)
    return "exact" if x < 1e-6 else "0.5s" if abs(x - 0.5) < 1e-6 else ">=1s" if x >= 1 - 1e-6 else "other"


def multi_errors(world: Path, run: Path) -> dict:
    scenes = {s["video"]: s for s in map(json.loads, (world / "scenes.jsonl").read_text().splitlines())}
    preds = {x["id"]: x for x in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    split = {True: [], False: []}
    counts, best, starts, ends = Counter(), [], Counter(), Counter()
    for r in map(json.loads, (world / "test.jsonl").read_text().splitlines()):
        if r["kind"] != "multi":
            continue
        scene = scenes[r["video"]]
        target = next(o for o in scene["objects"] if f"{o['colour']} {o['shape']}" == r["target"])
        got, gt = preds[r["id"]]["moments"] or [], r["moments"]
        split[gaps_have_empty_token(target["intervals"], scene["frames"])].append(
            (moment_f1(got, gt), len(got) == len(gt)))
        counts[f"{len(gt)}->{len(got)}"] += 1
        best += [max([iou(g, p) for p in got], default=0.0) for g in gt]
        for i, j, v in match_moments(got, gt):
            if v >= 0.5:
                starts[off_by(got[i][0] - gt[j][0])] += 1
                ends[off_by(got[i][1] - gt[j][1])] += 1

    def summary(rows):
        n = len(rows)
        return {"queries": n, "f1_at_0.5": round(100 * sum(f for f, _ in rows) / max(n, 1), 1),
                "count_right_pct": round(100 * sum(c for _, c in rows) / max(n, 1), 1)}

    matched = sum(starts.values())
    return {"all": summary(split[True] + split[False]), "every_gap_has_an_empty_token": summary(split[True]),
            "a_gap_inside_tokens": summary(split[False]), "true_to_predicted_count": dict(sorted(counts.items())),
            "true_moments": len(best), "best_iou_mean": round(sum(best) / max(len(best), 1), 3),
            "best_iou_at_least_0.5_pct": round(100 * sum(b >= 0.5 for b in best) / max(len(best), 1), 1),
            "matched_at_0.5": matched,
            "start_off_pct": {k: round(100 * v / matched, 1) for k, v in sorted(starts.items())},
            "end_off_pct": {k: round(100 * v / matched, 1) for k, v in sorted(ends.items())}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, default=None, help="the world of every --run")
    p.add_argument("--run", action="append", default=[], metavar="NAME=DIR", help="an eval run folder (repeatable)")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=DIR",
                   help="a bench/learning/run.py --out folder: its world, eval/sft and eval/grpo (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args()
    if args.run and args.world is None:
        p.error("--run needs --world")
    todo = [(name, args.world, Path(d)) for name, d in (r.split("=", 1) for r in args.run)]
    for name, d in (b.split("=", 1) for b in args.bench):
        todo += [(f"{name}_{stage}", Path(d) / "world", Path(d) / "eval" / stage) for stage in ("sft", "grpo")]
    out = {"runs": {name: {"world": str(world), "dir": str(d), **multi_errors(world, d)} for name, world, d in todo}}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
