"""Which score ranks coarse-pass moments best: 1 - p("not present"), answer likelihood, or agreement of samples.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/long_scores/run.py --bench outputs/bench-long-val --out experiments/long_scores

Takes the tiny model and the long world `bench/long/run.py --seed 0` made (its --out folder: seed 0's test
families are the validation set; the bench's own seed holds its held-out test families, which this refuses), runs
only the coarse pass of `coarse_to_fine` (no fine pass, every candidate kept: `min_score 0`, `candidates 100`) on the test videos of 10 and
30 minutes with each score, and measures, per score:
- R1@0.5: the share of present queries whose best-scored candidate has IoU >= 0.5 with a true moment;
- AUROC: how well the score separates candidates that match a true moment (IoU >= 0.5) from the rest (ties: half);
- absent queries: the share left with no candidate scored >= 0.5 (what `min_score 0.5` would answer "not present");
- the range of the scores the present queries' candidates got.
Writes results.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vtg import grounding as G
from vtg.data.grammar import iou

SCORES = ("not_present", "likelihood", "agreement")


def auroc(pos: list[float], neg: list[float]) -> float | None:
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--bench", default="outputs/bench-long-val", help="bench/long/run.py's --out folder, run with --seed 0"
    )
    p.add_argument("--out", default=str(Path(__file__).parent))
    p.add_argument("--lengths", default="10,30")
    args = p.parse_args()
    from vllm import SamplingParams

    from vtg.model_folder import read_windows
    from vtg.request import Requests
    from vtg.vllm_engine import make_llm

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: bench/
    from bench.long.run import refuse_test_world

    refuse_test_world(args.bench)  # a score is chosen here: never on the bench's test families
    bench = Path(args.bench)
    model = bench / "sft" / "final"
    world = bench / "world"
    lengths = {float(x) for x in args.lengths.split(",")}
    records = [json.loads(x) for x in (world / "test.jsonl").read_text().splitlines() if x.strip()]
    records = [r for r in records if r["length_min"] in lengths]
    requests = Requests.for_model(model, mode="multi")
    base = read_windows(model)
    llm = make_llm(str(model))
    results = {}
    with ThreadPoolExecutor(2) as pool:
        runner = G.StrategyRunner(llm, lambda _: SamplingParams(temperature=0.0, max_tokens=64, seed=0), pool)
        for score in SCORES:
            settings = base.updated({"score": score, "fine_windows": 0, "min_score": 0.0, "candidates": 100})
            t0 = time.perf_counter()
            out = runner.run(
                {
                    r["id"]: (
                        lambda r=r: G.ground(
                            requests, str(world / r["video"]), r["query"], r["duration"], "coarse_to_fine", settings,
                            top_k=100,
                        )
                    )
                    for r in records
                }
            )  # fmt: skip
            results[score] = summarize(records, out) | {"seconds": round(time.perf_counter() - t0, 1)}
            print(score, results[score], flush=True)
    Path(args.out, "results.json").write_text(
        json.dumps({"model": str(model), "lengths_min": sorted(lengths), "queries": len(records), **results}, indent=1)
        + "\n"
    )


def summarize(records: list[dict], out: dict) -> dict:
    pos, neg, hits, present, absent_ok, absent = [], [], 0, 0, 0, 0
    for r in records:
        g = out[r["id"]].grounding
        truth = r["moments"]
        if not truth:
            absent += 1
            absent_ok += all(s < 0.5 for s in g.scores)
            continue
        present += 1
        ranked = sorted(zip(g.scores, g.moments), key=lambda x: -x[0])
        if ranked and max(iou(ranked[0][1], t) for t in truth) >= 0.5:
            hits += 1
        for s, m in zip(g.scores, g.moments):
            (pos if max(iou(m, t) for t in truth) >= 0.5 else neg).append(s)
    every = pos + neg
    return {
        "score_range": [round(min(every), 4), round(max(every), 4)] if every else None,
        "R1@0.5": round(100 * hits / max(present, 1), 1),
        "AUROC": None if auroc(pos, neg) is None else round(auroc(pos, neg), 3),
        "candidates_matching": len(pos),
        "candidates_other": len(neg),
        "absent_answered_not_present": round(100 * absent_ok / max(absent, 1), 1),
        "present": present,
        "absent": absent,
    }


if __name__ == "__main__":
    main()
