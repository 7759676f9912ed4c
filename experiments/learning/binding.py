"""Does a model answer for the object the query names, or for whichever object it sees? (worlds with two objects)

For every test video with two present-object queries (the `single,multi` worlds: one object shown once, one shown
2–3 times), compare each answer with the named object's moments and with the *other* object's:
- same answer: both queries of a video got the same text (the query was ignored);
- named / other: the answer's F1 at IoU 0.5 (one-to-one matching, `vtg.data.grammar.moment_f1`) against the named
  object's moments, and against the other object's; "binds" = named > other, "swaps" = other > named.

    .venv/bin/python bench/learning/binding.py --world outputs/bl_sm84/world --run outputs/bl_sm84/eval/sft
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from vtg.data.grammar import moment_f1


def binding(world: Path, run: Path, keep_video=None) -> dict:
    """`keep_video(records of one video) -> bool` restricts the count to some videos (prior_world.py splits by class)."""
    gold = [json.loads(x) for x in (world / "test.jsonl").read_text().splitlines()]
    preds = {p["id"]: p for p in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    by_video = defaultdict(list)
    for r in gold:
        if r["moments"]:
            by_video[r["video"]].append(r)
    pairs = [qs for qs in by_video.values() if len(qs) == 2 and (keep_video is None or keep_video(qs))]
    same = binds = swaps = 0
    named_f1 = other_f1 = 0.0
    for a, b in pairs:
        same += preds[a["id"]]["text"] == preds[b["id"]]["text"]
        for q, other in ((a, b), (b, a)):
            got = preds[q["id"]]["moments"] or []
            f_named, f_other = moment_f1(got, q["moments"]), moment_f1(got, other["moments"])
            named_f1 += f_named
            other_f1 += f_other
            binds += f_named > f_other
            swaps += f_other > f_named
    n = 2 * len(pairs)
    return {"videos": len(pairs), "same_answer_share": round(same / len(pairs), 3),
            "f1_named": round(named_f1 / n, 3), "f1_other": round(other_f1 / n, 3),
            "binds_share": round(binds / n, 3), "swaps_share": round(swaps / n, 3)}


def main() -> None:
    from per_run import main_over_runs  # this folder is on sys.path when the script runs

    main_over_runs(binding, __doc__)


if __name__ == "__main__":
    main()
