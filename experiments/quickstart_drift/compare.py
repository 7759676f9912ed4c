"""Compare probe.py results (world, model, batches, losses). Usage: compare.py A.json B.json [...]: each vs A."""

import json
import sys


def main() -> None:
    ref_path, *others = sys.argv[1:]
    ref = json.load(open(ref_path))
    for path in others:
        r = json.load(open(path))
        print(f"== {path} vs {ref_path}")
        print(
            "  world records:",
            "same"
            if r["world"]["jsonl"] == ref["world"]["jsonl"]
            else {
                k: (ref["world"]["jsonl"].get(k), v)
                for k, v in r["world"]["jsonl"].items()
                if ref["world"]["jsonl"].get(k) != v
            },
        )
        print(
            "  world videos:",
            "same" if r["world"]["videos"] == ref["world"]["videos"] else "DIFFER",
            r["world"]["n_videos"],
            ref["world"]["n_videos"],
        )
        print(
            "  model:",
            "same"
            if r["model"] == ref["model"]
            else {k: (ref["model"].get(k), v) for k, v in r["model"].items() if ref["model"].get(k) != v},
        )
        first = next((i for i, (a, b) in enumerate(zip(ref["batches"], r["batches"])) if a != b), None)
        print("  batches:", "same" if first is None else f"first differing batch {first}")
        if first is not None:
            a, b = ref["batches"][first], r["batches"][first]
            print("    keys differing:", {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
        la, lb = [x[1] for x in ref["losses"]], [x[1] for x in r["losses"]]
        d = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), None)
        print(
            "  losses:",
            "identical" if d is None else f"first differ at step {d + 1}: {la[d]} vs {lb[d]}",
            f"max |diff| {max(abs(x - y) for x, y in zip(la, lb)):.3g}",
        )
        print(f"  s/step after 5: {ref['s_per_step_after_first5']} vs {r['s_per_step_after_first5']}")


if __name__ == "__main__":
    main()
