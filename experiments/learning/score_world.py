"""Score eval runs on one world's test split next to that world's best constant answer (fitted on its train split).

For worlds made outside `run.py` (e.g. one-kind worlds trained with `sft_probe.py --save` and evaluated with
`vtg eval run`): prints one JSON object with the constant's window and per-kind metrics for the constant and for each
run, and the paired R1@0.7 sign test of each run against the constant.

    .venv/bin/python bench/learning/score_world.py --world outputs/multi_only_world \
        --run sft_probe_24k=outputs/eval_multi_only [--out bench/learning/per_kind_worlds/multi_probe.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--run", action="append", default=[], metavar="NAME=DIR", help="an eval run folder (repeatable)")
    p.add_argument("--constant-dir", type=Path, default=None,
                   help="where the constant's predictions go (default: WORLD/../<world name>_constant)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args()
    import run as bench  # bench/learning/run.py: the constant and the scoring the learning benchmark uses
    from vtg.data.records import load_records

    train = load_records(args.world / "train.jsonl")
    test = load_records(args.world / "test.jsonl")
    kinds = tuple(sorted({r.extra.get("kind") for r in test if r.extra.get("kind")}))
    const = bench.fit_constant(train)
    const_dir = args.constant_dir or args.world.parent / f"{args.world.name}_constant"
    bench.write_predictions(const_dir, bench.constant_texts(const, test))
    runs = {"constant": const_dir, **{k: Path(v) for k, v in (r.split("=", 1) for r in args.run)}}
    out = {"world": str(args.world), "test_queries": len(test), "constant_baseline": const,
           "runs": {name: {"dir": str(d), "metrics": bench.per_kind(d, test, kinds)} for name, d in runs.items()}}
    for name, d in runs.items():
        if name != "constant":
            out["runs"][name]["vs_constant_r1@0.7"] = bench.paired_r1(const_dir, d, test)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
