"""Cheap proxy for the quickstart's SFT: the same world, tiny model and SFT recipe, a few steps, everything hashed.

Run from the root of a checkout (any commit since fbb1b19), with that checkout's venv:
    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python PATH/TO/probe.py --out /tmp/probe --steps 30 --json result.json
It builds the quickstart's world (3000 videos, single kind, 8-20 s, seed 0) and its tiny model (qwen2.5-vl small,
seed 0) exactly as vtg/quickstart.py does, then runs the tiny SFT recipe (recipes/tiny/sft/config_default.yaml)
for --steps steps with logging every step, and writes: sha256 of the world's records and videos, of the model's
weights, of every batch the trainer's loss pass receives (input_ids, labels, pixel values, grids, ...), the loss
at every step, and seconds per step. Two checkouts whose hashes and losses agree train the same SFT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def tree_hashes(folder: Path) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    per = {str(p.relative_to(folder)): sha(p.read_bytes()) for p in files}
    videos = [h for k, h in per.items() if k.endswith(".mp4")]
    return {
        "files": len(per),
        "jsonl": {k: h for k, h in per.items() if k.endswith(".jsonl") or k.endswith(".json")},
        "videos": sha("".join(videos).encode()),
        "n_videos": len(videos),
    }


def tensor_hash(t) -> str:
    import torch

    if isinstance(t, torch.Tensor):
        return sha(t.detach().cpu().contiguous().numpy().tobytes()) + f"{tuple(t.shape)}{str(t.dtype)[6:]}"
    return sha(repr(t).encode())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--videos", type=int, default=3000)
    p.add_argument("--json", required=True)
    p.add_argument("--reuse", action="store_true", help="keep --out's world and model when they exist")
    p.add_argument("--set", action="append", default=[], help="recipe override KEY=VALUE (YAML value), repeatable")
    p.add_argument("--timing-skip", type=int, default=5, help="steps left out of the warm per-step timings")
    p.add_argument("--export", action="store_true", help="also export the trained model to OUT/sft/final")
    a = p.parse_args()

    from vtg.data.synth import SynthConfig, generate
    from vtg.quickstart import RECIPES
    from vtg.train.config import VideoSFTConfig, load_recipe
    from vtg.train.tiny_model import build_tiny_model

    out = Path(a.out)
    if out.exists() and not a.reuse:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"cwd": os.getcwd()}
    t = time.time()
    data, base = out / "data", out / "model-base"
    if not (data / "test.jsonl").exists():
        world = SynthConfig(n_videos=a.videos, seed=0, min_duration=8.0, max_duration=20.0, kinds=("single",))
        generate(world, data, progress=lambda *_: None)
    res["world_s"] = round(time.time() - t, 1)
    res["world"] = tree_hashes(data)
    if not (base / "config.json").exists():
        build_tiny_model("qwen2.5-vl", base, size="small", seed=0)
    res["model"] = {k: v for k, v in tree_hashes(base)["jsonl"].items()}
    res["model"]["weights"] = {str(q.name): sha(q.read_bytes()) for q in sorted(base.glob("*.safetensors"))}

    overrides = {
        "model": str(base),
        "train_file": str(data / "train.jsonl"),
        "output_dir": str(out / "sft"),
        "seed": 0,
        "max_steps": a.steps,
        "logging_steps": 1,
        "save_steps": 100000,
    }
    import yaml

    overrides.update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)})
    res["overrides"] = overrides
    recipe = load_recipe(VideoSFTConfig, RECIPES / "tiny" / "sft" / "config_default.yaml", overrides)
    from transformers import TrainerCallback

    from vtg.train.sft import build_sft_trainer

    losses, stamps, cpu = [], [], []

    class Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append([state.global_step, logs["loss"], logs.get("grad_norm")])

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())

    trainer = build_sft_trainer(recipe, callbacks=[Log()])
    batches = []
    inner = trainer.compute_loss

    def compute_loss(model, inputs, *args, **kwargs):
        batches.append({k: tensor_hash(v) for k, v in sorted(inputs.items())})
        return inner(model, inputs, *args, **kwargs)

    trainer.compute_loss = compute_loss
    t0 = time.perf_counter()
    trainer.train()
    res["train_s"] = round(time.perf_counter() - t0, 2)
    if a.export:
        trainer.export_final()
    gaps = [b - a_ for a_, b in zip(stamps, stamps[1:])]
    res["s_per_step_after_first5"] = round(sum(gaps[4:]) / max(1, len(gaps[4:])), 4)
    res["step_s"] = [round(g, 4) for g in gaps]
    skip = min(a.timing_skip, len(stamps) - 2)  # steps before the decode cache is warm (first epoch) are left out
    res["timing_skip"] = skip
    res["wall_s_per_step_warm"] = round((stamps[-1] - stamps[skip]) / (len(stamps) - 1 - skip), 5)
    res["cpu_s_per_step_warm"] = round((cpu[-1] - cpu[skip]) / (len(cpu) - 1 - skip), 5)
    res["losses"] = losses
    res["batches"] = batches
    Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("world_s", "train_s", "wall_s_per_step_warm", "cpu_s_per_step_warm")}))
    print("losses", [round(x[1], 5) for x in losses[:10]])


if __name__ == "__main__":
    main()
