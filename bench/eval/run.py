"""Benchmark: queries/s of the batched vLLM eval job (`vtg eval run`) vs a sequential HF-generate loop, same tiny
model and queries.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.eval.run       # writes bench/eval/results.json and the README table
    .venv/bin/python -m bench.eval.run --render                # README table from the committed results.json only

Both sides build each query's request the same way (`vtg.request.Requests`: the model folder's frame sampling and
prompt style; the videos decoded without the decode cache on the HF side, as each query of a naive loop would) and
decode greedily up to `--max-new-tokens`. The vLLM side is the real `vtg eval run` code path (`run_job`), timed
twice: with the engine start (what a user waits for) and without it (throughput of the batched loop). The HF side
loads the model once (not timed) and runs `model.generate` one query at a time, as a naive eval script does.
Generated token counts are reported for both, since a random-init model may stop at different lengths.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import add_result_args, measured_line, provenance, read_json, table, update_readme, write_json

HERE = Path(__file__).resolve().parent


def make_inputs(tmp: Path, n_videos: int) -> tuple[Path, Path]:
    from vtg.data.records import load_records, write_jsonl
    from vtg.data.synth import SynthConfig, generate
    from vtg.train.tiny_model import build_tiny_model

    model = build_tiny_model("qwen2.5-vl", tmp / "model", size="tiny", seed=0)
    world = tmp / "world"
    splits = generate(
        SynthConfig(n_videos=n_videos, seed=0, fps=2.0, size=56, min_duration=8.0, max_duration=16.0), world, workers=1
    )
    rows = [dict(r.to_dict(), video=r.video_path(Path(p).parent)) for p in splits.values() for r in load_records(p)]
    write_jsonl(rows, tmp / "records.jsonl")
    return model, tmp / "records.jsonl"


def bench_vllm(model: Path, records: Path, n: int, max_new_tokens: int, batch_size: int, tmp: Path) -> dict:
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import run_job
    from vtg.eval.predictions import read_predictions

    cfg = EvalConfig(
        benchmark="bench",
        records=str(records),
        mode="multi",
        think=False,
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        batch_size=batch_size,
        decode_workers=2,
        vllm={"max_num_seqs": batch_size},
    )
    summary = run_job(cfg, out=tmp / "vllm_run", model=str(model), limit=n, progress=None)
    lines = read_predictions(tmp / "vllm_run" / "predictions.jsonl")
    loop_s = summary["loop_s"]  # decode + prompts + generate + writing lines; setup (imports, engine) apart
    return {
        "queries": summary["ran"],
        "wall_s_with_engine_start": summary["wall_s"],
        "engine_start_s": summary["engine_start_s"],
        "loop_s": round(loop_s, 3),
        "queries_per_s": round(summary["ran"] / loop_s, 3),
        "queries_per_s_with_engine_start": summary["queries_per_s"],
        "completion_tokens": sum(x.get("completion_tokens", 0) for x in lines.values()),
        "errors": sum(1 for x in lines.values() if x["error"]),
        "decode_s_sum": round(sum(x["decode_s"] for x in lines.values()), 3),
        "engine_s_sum": round(sum(x["latency_s"] for x in lines.values()), 3),
    }


def bench_hf(model: Path, records: Path, n: int, max_new_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText

    from vtg.data.records import load_records
    from vtg.data.video import read_video
    from vtg.request import Requests

    recs = load_records(records)[:n]
    requests = Requests.for_model(model, mode="multi", think=False)  # as the eval job: the folder's sampling, style
    hf = AutoModelForImageTextToText.from_pretrained(model, dtype=torch.float32).eval()
    tokens = 0
    t0 = time.perf_counter()
    for r in recs:
        video = read_video(r.video_path(records.parent), requests.sampling)  # uncached: each query decodes
        inputs = requests.hf_inputs(requests.record(r, records.parent, video=video))
        with torch.inference_mode():
            out = hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        tokens += out.shape[1] - inputs["input_ids"].shape[1]
    loop_s = time.perf_counter() - t0
    return {
        "queries": len(recs),
        "loop_s": round(loop_s, 3),
        "queries_per_s": round(len(recs) / loop_s, 3),
        "completion_tokens": int(tokens),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-videos", type=int, default=24, help="synthetic videos (all their queries are used)")
    ap.add_argument("--queries", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per engine call (the eval job's batch_size)")
    add_result_args(ap, HERE)
    args = ap.parse_args(argv)
    committed = HERE / "results.json"
    if not args.render:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            model, records = make_inputs(tmp, args.n_videos)
            vllm_res = bench_vllm(model, records, args.queries, args.max_new_tokens, args.batch_size, tmp)
            hf_res = bench_hf(model, records, vllm_res["queries"], args.max_new_tokens)
        result = {
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.eval.run "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "render")),
            **provenance(),
            "model": "tiny random-init Qwen2.5-VL (vtg.train.tiny_model, size tiny)",
            "vllm_batched": vllm_res,
            "hf_sequential": hf_res,
            "ratio_queries_per_s": round(vllm_res["queries_per_s"] / hf_res["queries_per_s"], 2),
            "ratio_with_engine_start": round(vllm_res["queries_per_s_with_engine_start"] / hf_res["queries_per_s"], 2),
        }
        write_json(args.out, result)
        print(json.dumps(result, indent=1))
        if Path(args.out).resolve() != committed:
            return 0
    update_readme(HERE / "README.md", section(read_json(committed)))
    return 0


def section(r: dict) -> str:
    v, h = r["vllm_batched"], r["hf_sequential"]
    return "\n\n".join(
        [
            f"Command: `{r['command']}`  \n{measured_line(r)}  \nModel: {r['model']}.",
            table(
                ["", "queries", "loop s", "queries/s", "completion tokens"],
                [
                    (
                        "vLLM batched (`vtg eval run`)",
                        v["queries"],
                        v["loop_s"],
                        v["queries_per_s"],
                        v["completion_tokens"],
                    ),
                    (
                        "HF generate, one at a time",
                        h["queries"],
                        h["loop_s"],
                        h["queries_per_s"],
                        h["completion_tokens"],
                    ),
                ],
            ),
            f"Ratio (queries/s, engine start excluded): **{r['ratio_queries_per_s']}x**. Including the vLLM set-up "
            f"(imports, processor, engine start: {v['engine_start_s']} s): {r['ratio_with_engine_start']}x."
            + (f"\n\n{r['note_on_noise']}" if r.get("note_on_noise") else ""),
        ]
    )


if __name__ == "__main__":  # vLLM may spawn workers: the guard is required
    sys.exit(main())
