"""Which side of the anchor do a run's compositional answers land on? (`vtg data synth --kinds compositional` worlds)

A compositional query ("after the X disappears, when does the Y appear?") has Y shown on both sides of X and the
answer on one side. Against the world's `scenes.jsonl` this prints, per relation, the mean F1@0.5 (one-to-one
matching, `vtg.data.grammar.moment_f1`) of each answer against: the answer; Y's moments on the *other* side (the
relation misread); all of Y's moments; X's moment (anchor and target confused); and moments predicted vs true.

    .venv/bin/python bench/learning/compositional_sides.py --world outputs/comp_only_world --run outputs/eval_comp_only
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from vtg.data.grammar import moment_f1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True, help="an eval run folder (predictions.jsonl)")
    args = p.parse_args()
    scenes = {s["video"]: s for s in map(json.loads, (args.world / "scenes.jsonl").read_text().splitlines())}
    preds = {x["id"]: x for x in map(json.loads, (args.run / "predictions.jsonl").read_text().splitlines())}
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    for r in map(json.loads, (args.world / "test.jsonl").read_text().splitlines()):
        if r["kind"] != "compositional":
            continue
        scene = scenes[r["video"]]
        seconds = lambda frames: [[a / scene["fps"], b / scene["fps"]] for a, b in frames]  # noqa: E731
        target = next(o for o in scene["objects"] if f"{o['colour']} {o['shape']}" == r["target"])
        anchor_name = r["query"].split(" the ", 1)[1].split(" appears")[0].split(" disappears")[0]
        anchor = next(o for o in scene["objects"] if f"{o['colour']} {o['shape']}" == anchor_name)
        all_target = seconds(target["intervals"])
        other_side = [m for m in all_target if m not in r["moments"]]
        got = preds[r["id"]]["moments"] or []
        relation = r["query"].split()[0]
        for key in (relation, "all"):
            counts[key] += 1
            s = sums[key]
            s["answer"] += moment_f1(got, r["moments"])
            s["other_side"] += moment_f1(got, other_side)
            s["all_target"] += moment_f1(got, all_target)
            s["anchor"] += moment_f1(got, seconds(anchor["intervals"]))
            s["moments_predicted"] += len(got)
            s["moments_true"] += len(r["moments"])
    print(json.dumps({k: {"queries": counts[k], **{m: round(v / counts[k], 3) for m, v in sums[k].items()}}
                      for k in sorted(counts)}, indent=1))


if __name__ == "__main__":
    main()
