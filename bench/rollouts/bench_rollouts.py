"""Rollout throughput: vLLM (colocated engine, as GRPO uses it) vs HF generate, same model, prompts, frames.

    .venv/bin/python bench/rollouts/bench_rollouts.py --out bench/rollouts/results_cpu.json

Builds a tiny Qwen2.5-VL and a small synthetic world in a temp folder (no hub), decodes each video once, and samples
G completions of exactly --tokens tokens per prompt (EOS ignored) through both engines; reports tokens/s and ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    from vtg.train.tiny_model import SIZES

    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--size", default="tiny", choices=list(SIZES))
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--sweep-max-num-seqs",
        default=None,
        metavar="N,N,...",
        help="instead: vLLM alone at each engine max_num_seqs, --repeats times each (JSON lines)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from vllm import SamplingParams

    from vtg.data.records import load_records
    from vtg.data.synth import SynthConfig, generate
    from vtg.engine import close_llm, prompt_style_for_model, sampling_for_model
    from vtg.train.rollout import build_groups, make_colocated_llm
    from vtg.train.tiny_model import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="vtg_bench_rollouts_"))
    model_dir = build_tiny_model("qwen2.5-vl", tmp / "model", size=args.size)
    generate(
        SynthConfig(
            n_videos=max(4, args.prompts), seed=0, min_duration=8, max_duration=16, split_fractions=(1.0, 0.0, 0.0)
        ),
        tmp / "world",
        workers=1,
    )
    root = tmp / "world"
    rows = []
    for r in load_records(root / "train.jsonl")[: args.prompts]:
        d = r.to_dict()
        d["video"] = r.video_path(root)
        rows += [d] * args.generations
    processor = AutoProcessor.from_pretrained(model_dir)
    sampling = sampling_for_model(model_dir)
    groups = build_groups(
        rows,
        processor,
        sampling,
        mode="multi",
        think=False,
        for_vllm=True,
        prompt_style=prompt_style_for_model(model_dir),
    )
    n_tokens = len(groups) * args.generations * args.tokens

    params = SamplingParams(n=args.generations, temperature=1.0, max_tokens=args.tokens, ignore_eos=True)

    def time_vllm(**overrides) -> tuple[float, int]:
        """(seconds for all prompts after a one-prompt warm-up, the engine's max_num_seqs)"""
        llm = make_colocated_llm(str(model_dir), gpu_memory_utilization=0.1, max_model_len=2048, seed=0, **overrides)
        max_num_seqs = llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        llm.generate([g.vllm_request for g in groups[:1]], params, use_tqdm=False)  # warm-up
        t = time.perf_counter()
        outs = llm.generate([g.vllm_request for g in groups], params, use_tqdm=False)
        seconds = time.perf_counter() - t
        assert sum(len(c.token_ids) for o in outs for c in o.outputs) == n_tokens
        close_llm(llm)
        return seconds, max_num_seqs

    if args.sweep_max_num_seqs:
        for n in [int(x) for x in args.sweep_max_num_seqs.split(",")]:
            for _ in range(args.repeats):
                seconds, _ = time_vllm(max_num_seqs=n)
                print(
                    json.dumps(
                        {
                            "model": args.size,
                            "prompts": len(groups),
                            "max_num_seqs": n,
                            "vllm_tokens_per_s": round(n_tokens / seconds, 1),
                        }
                    ),
                    flush=True,
                )
        return
    vllm_s, max_num_seqs = time_vllm()

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    t = time.perf_counter()
    with torch.no_grad():
        for g in groups:
            model.generate(
                **g.hf_inputs,
                do_sample=True,
                temperature=1.0,
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                num_return_sequences=args.generations,
            )
    hf_s = time.perf_counter() - t

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "model": f"tiny qwen2.5-vl ({args.size})",
        "prompts": len(groups),
        "generations": args.generations,
        "tokens_per_completion": args.tokens,
        "vllm_max_num_seqs": max_num_seqs,
        "prompt_tokens": len(groups[0].prompt_ids),
        "vllm_tokens_per_s": round(n_tokens / vllm_s, 1),
        "hf_tokens_per_s": round(n_tokens / hf_s, 1),
        "ratio_vllm_over_hf": round(hf_s / vllm_s, 2),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
