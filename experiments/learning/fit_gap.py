"""Over-fitting or under-fitting? A trained model's mean answer loss per query kind on train vs test records.

The loss is the SFT loss (answer tokens only, `VideoGroundingCollator`), one record at a time, no gradient: the
first N records of each kind from the world's train and test splits. Train ≈ test means more data would not help
and more steps (or capacity) would; train far below test means the opposite.

    .venv/bin/python bench/learning/fit_gap.py --model outputs/s12/okpv_s0_recipe/model-sft/final \
        --world outputs/s12/okpv_s0_recipe/world [--per-kind 150] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def mean_losses(model, collator, world: Path, split: str, per_kind: int) -> dict[str, dict]:
    import torch

    from vtg.data.records import load_records

    losses: dict[str, list[float]] = defaultdict(list)
    for r in load_records(world / f"{split}.jsonl"):
        kind = r.extra.get("kind", "all")
        if len(losses[kind]) >= per_kind:
            continue
        batch = collator([{"video": str(r.video_path(world)), "query": r.query, "duration": r.duration,
                           "moments": r.moments}])
        with torch.no_grad():
            losses[kind].append(model(**batch).loss.item())
    return {k: {"records": len(v), "loss": round(sum(v) / len(v), 4)} for k, v in sorted(losses.items())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--per-kind", type=int, default=150)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    from loading import model_and_collator  # bench/learning

    model, collator = model_and_collator(args.model)
    model.eval()
    out = {"model": args.model, "world": str(args.world),
           **{split: mean_losses(model, collator, args.world, split, args.per_kind) for split in ("train", "test")}}
    text = json.dumps(out)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
