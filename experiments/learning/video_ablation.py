"""Does a trained model use the video? Evaluate it on test queries twice: with their own videos, and with each video
swapped for another test video of the same duration (same prompt text, other frames). A model that reads the video
loses accuracy on the swapped set; identical metrics mean its answers come from the text alone.

Also prints, for one query, how much the next-token logits move when the video changes (HF forward pass).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/learning/video_ablation.py \
        --world outputs/bench_learning/world --model outputs/bench_learning/model-sft/final \
        --model outputs/bench_learning/model-base --out bench/learning/video_ablation.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vtg.eval.controls import CONTROL_KINDS, write_control_sets


def swapped_sets(world: Path, work: Path, seed: int = 0) -> tuple[Path, Path, int]:
    """own.jsonl / swapped.jsonl of the world's test split (`vtg.eval.controls`, which the quickstart uses too)."""
    return write_control_sets(world / "test.jsonl", work, seed)


def evaluate(model: Path, records: Path, out: Path) -> dict[str, float]:
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import run_job

    cfg = EvalConfig.load(Path(__file__).resolve().parents[2] / "recipes/eval/synthetic.yaml", records=str(records))
    result = run_job(cfg, out=out, model=str(model), progress=None)
    return {k: round(v, 2) for k, v in result["metrics"].items() if k in ("R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU")}


def logit_sensitivity(model_dir: Path, records: Path) -> float:
    """Max |Δ logit| of the first answer token when one query's video is replaced by another of the same length."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg import engine
    from vtg.data.video import read_video

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    sampling = engine.sampling_for_model(model_dir)
    own = json.loads(records.read_text().splitlines()[0])
    other = next(json.loads(x) for x in (records.parent / "swapped.jsonl").read_text().splitlines()
                 if json.loads(x)["id"] == own["id"])
    prompt = engine.render_prompt(processor, engine.grounding_messages(own["query"], own["duration"], think=False,
                                                                       style=engine.prompt_style_for_model(model_dir)))
    logits = []
    for video in (own["video"], other["video"]):
        with torch.no_grad():
            logits.append(model(**engine.hf_inputs(processor, prompt, read_video(video, sampling))).logits[0, -1])
    return float((logits[0] - logits[1]).abs().max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--work", type=Path, default=Path("outputs/video_ablation"))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "video_ablation.json")
    args = p.parse_args()
    own, swapped, n = swapped_sets(args.world, args.work)
    results = {"queries": n, "kinds": list(CONTROL_KINDS), "models": {}}
    for model in args.model:
        tag = model.as_posix().replace("/", "_")
        row = {"own_video": evaluate(model, own, args.work / f"{tag}_own"),
               "swapped_video": evaluate(model, swapped, args.work / f"{tag}_swapped"),
               "max_abs_logit_change_when_video_swapped": logit_sensitivity(model, own)}
        results["models"][str(model)] = row
        print(model, json.dumps(row), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
