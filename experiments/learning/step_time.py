"""Milliseconds per SFT step of a tiny model on one CPU thread, vision feature cache off vs on (train/vision_cache.py).

A bare loop (forward, backward, AdamW step) over pre-encoded records, so only the model's own work is timed: the
best of 3 passes over the same records, uncached first, then again with the cache filled (every step a hit).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/learning/step_time.py \
        --model outputs/bl_okpv_curr/model-sft/final --world outputs/bl_okpv_curr/world --out bench/learning/step_time.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--records", type=int, default=60)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    import torch
    from loading import model_and_collator  # bench/learning

    from vtg import engine
    from vtg.data.records import load_records
    from vtg.train import vision_cache

    model, collator = model_and_collator(args.model)
    for name, param in engine.vision_tower(model).named_parameters():
        param.requires_grad_("merger" in name)
    items = [collator([{"video": str(r.video_path(args.world)), "query": r.query, "duration": r.duration,
                        "moments": r.moments}]) for r in load_records(args.world / "train.jsonl")[:args.records]]
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)

    def step(item):
        model(**item).loss.backward()
        opt.step()
        opt.zero_grad()

    def best_ms() -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for item in items:
                step(item)
            times.append((time.perf_counter() - t0) / len(items) * 1000)
        return round(min(times), 2)

    for item in items[:5]:
        step(item)
    uncached = best_ms()
    vision_cache.install(model, 512)
    for item in items:  # fill the cache
        step(item)
    cached = best_ms()
    cache = engine.vision_tower(model)._vtg_feature_cache
    result = {"model": str(args.model), "records": len(items), "ms_per_step_uncached": uncached,
              "ms_per_step_cached": cached, "cache_hits": cache.hits, "cache_misses": cache.misses,
              "machine": f"{platform.machine()}, 1 torch thread, torch {torch.__version__}"}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
