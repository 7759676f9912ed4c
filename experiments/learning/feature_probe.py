"""Can the object's colour and shape be read from what the frozen vision tower hands the merger?

For 84×84 worlds (`run.py --frame-size 84`: each 28-px layout cell is exactly one merged token), every merged token
whose cell shows an object in both frames of its temporal patch is labelled with that object's colour (4) and shape
(3). Features: the merger's input (4 patches × vision hidden), put back from Qwen2.5-VL's window order into (t, row,
col) order. A linear and a one-hidden-layer probe are fitted on 4 of 5 videos and scored on the 5th.

    .venv/bin/python bench/learning/feature_probe.py --world outputs/bl_sm84/world --model outputs/bl_sm84/model-base
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

COLOURS, SHAPES, CELL = ["red", "green", "blue", "yellow"], ["square", "circle", "triangle"], 28


def merged_token_features(model, processor, frames: np.ndarray, where: str = "input") -> torch.Tensor:
    """[t, rows, cols, features]: the merger's input (4 × vision hidden; the default) or output (`where="output"`,
    what the language model sees) for one video, in natural (t, row, col) order."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import get_vision_window_index

    visual, seen = model.model.visual, {}
    if where == "input":
        hook = visual.merger.register_forward_pre_hook(lambda module, args: seen.__setitem__("x", args[0].detach()))
    else:
        hook = visual.merger.register_forward_hook(lambda module, args, out: seen.__setitem__("x", out.detach()))
    inputs = processor.video_processor(videos=[frames], return_tensors="pt", do_sample_frames=False, do_resize=False)
    grid = inputs["video_grid_thw"]
    with torch.no_grad():
        visual(inputs["pixel_values_videos"], grid_thw=grid)
    hook.remove()
    window_index, _ = get_vision_window_index(grid, spatial_merge_size=2, window_size=visual.window_size,
                                              patch_size=visual.patch_size)
    t, h, w = grid[0].tolist()
    x = seen["x"]
    if where == "input":  # 4 patches per merged token
        x = x.reshape(-1, 4 * x.shape[-1])
    return x[torch.argsort(window_index)].view(t, h // 2, w // 2, -1)


def labelled_tokens(world: Path, model_dir: str, n_videos: int):
    import av
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    scenes = [json.loads(x) for x in (world / "scenes.jsonl").read_text().splitlines()][:n_videos]
    feats, colour, shape, held_out = [], [], [], []
    for i, scene in enumerate(scenes):
        if scene["size"] % CELL or scene["size"] // CELL != 3:
            raise SystemExit(f"{world}: frames are {scene['size']} px; this probe needs 84 (one merged token a cell)")
        with av.open(str(world / scene["video"])) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        f = merged_token_features(model, processor, frames[: len(frames) - len(frames) % 2])
        for o in scene["objects"]:
            row, col = o["box"][1] // CELL, o["box"][0] // CELL
            for t in range(f.shape[0]):
                if all(any(a <= k < b for a, b in o["intervals"]) for k in (2 * t, 2 * t + 1)):
                    feats.append(f[t, row, col])
                    colour.append(COLOURS.index(o["colour"]))
                    shape.append(SHAPES.index(o["shape"]))
                    held_out.append(i % 5 == 0)
    return torch.stack(feats), torch.tensor(colour), torch.tensor(shape), torch.tensor(held_out)


def probe_predictions(x, y, test, classes: int, hidden: int | None) -> torch.Tensor:
    """Fit a linear (hidden=None) or one-hidden-layer probe on the rows not in `test`; its classes for `test`."""
    torch.manual_seed(0)
    x = (x - x[~test].mean(0)) / (x[~test].std(0) + 1e-6)
    head = (torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, classes))
            if hidden else torch.nn.Linear(x.shape[1], classes))
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x[~test]), y[~test]).backward()
        opt.step()
    with torch.no_grad():
        return head(x[test]).argmax(1)


def probe_accuracy(x, y, test, classes: int, hidden: int | None) -> float:
    return round((probe_predictions(x, y, test, classes, hidden) == y[test]).float().mean().item(), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--model", required=True, help="a tiny Qwen2.5-VL folder (its vision tower is the one probed)")
    ap.add_argument("--videos", type=int, default=300)
    args = ap.parse_args()
    x, colour, shape, test = labelled_tokens(args.world, args.model, args.videos)
    out = {"tokens": len(x), "held_out": int(test.sum()), "chance_colour": round(1 / 4, 3),
           "chance_shape": round(1 / 3, 3)}
    for name, hidden in (("linear", None), ("mlp256", 256)):
        out[name] = {"colour": probe_accuracy(x, colour, test, 4, hidden),
                     "shape": probe_accuracy(x, shape, test, 3, hidden)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
