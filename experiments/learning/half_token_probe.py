"""Is the half-second in the features? A probe for which frames of a temporal token show the object.

Qwen2.5-VL merges 2 frames into each temporal token (1 s at 2 fps); the synthetic world's moments sit on a 0.5 s
grid, so a boundary inside a token is only exact if the features tell "object in the first frame only" from "in the
second only". On the one-object videos of a world (`--one-kind-per-video` worlds: single and multi videos), each
frame pair is labelled 00 / 01 / 10 / 11 (object in frame 2t, frame 2t+1), the whole frame pair's features (all
merged tokens of that time step) taken at the merger's input (the frozen tower's output) or its output (what the
language model sees), and a linear and a one-hidden-layer probe fitted on 4 of 5 videos; printed: held-out accuracy
per state.

    .venv/bin/python bench/learning/half_token_probe.py --world outputs/s12/okpv_s0_recipe/world \
        --model outputs/s12/okpv_s0_recipe/model-sft/final --where output
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from feature_probe import merged_token_features, probe_predictions  # bench/learning

STATES = ("00", "01", "10", "11")


def labelled_pairs(world: Path, model_dir: str, n_videos: int, where: str):
    import av
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    scenes = [json.loads(x) for x in (world / "scenes.jsonl").read_text().splitlines()][:n_videos]
    feats, states, held_out = [], [], []
    for i, scene in enumerate(scenes):
        if len(scene["objects"]) != 1:
            continue
        with av.open(str(world / scene["video"])) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        f = merged_token_features(model, processor, frames[: len(frames) - len(frames) % 2], where).flatten(1)
        shown = lambda k: any(a <= k < b for a, b in scene["objects"][0]["intervals"])  # noqa: E731
        for t in range(f.shape[0]):
            feats.append(f[t])
            states.append(2 * shown(2 * t) + shown(2 * t + 1))
            held_out.append(i % 5 == 0)
    return torch.stack(feats), torch.tensor(states), torch.tensor(held_out)


def per_state_accuracy(x, y, test, hidden: int | None) -> dict[str, float]:
    got, truth = probe_predictions(x, y, test, len(STATES), hidden), y[test]
    out = {s: round((got[truth == c] == c).float().mean().item(), 3) for c, s in enumerate(STATES)}
    return {"all": round((got == truth).float().mean().item(), 3), **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--model", required=True, help="a tiny Qwen2.5-VL folder")
    ap.add_argument("--where", choices=("input", "output"), default="output", help="the merger's input or output")
    ap.add_argument("--videos", type=int, default=400)
    args = ap.parse_args()
    x, y, test = labelled_pairs(args.world, args.model, args.videos, args.where)
    out = {"model": args.model, "where": args.where, "pairs": len(x), "held_out": int(test.sum()),
           "held_out_per_state": {s: int((y[test] == c).sum()) for c, s in enumerate(STATES)}}
    for name, hidden in (("linear", None), ("mlp256", 256)):
        out[name] = per_state_accuracy(x, y, test, hidden)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
