"""Rollout throughput: vLLM (the colocated engine GRPO uses) vs HF generate, same model, prompts and frames.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.rollouts.run                       # 4 prompts, size tiny
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.rollouts.run --prompts 16 --size small
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.rollouts.run --prompts 32 --size small \
        --sweep-max-num-seqs 16,64,128,256 --repeats 2                            # vLLM alone per max_num_seqs
    .venv/bin/python -m bench.rollouts.run --render                               # README table from the files

Builds a random-init tiny Qwen2.5-VL and a small synthetic world in a temp folder (no hub). Each prompt is a training
row's chat messages (`GroundingPrompt.messages`), repeated G times as TRL's sampler repeats it; `build_groups` turns
them into prompt groups exactly as `VideoGRPOTrainer.video_rollout` does (video decoded once per group). Each group
samples G completions of exactly --tokens tokens (EOS ignored) through both engines: vLLM gets all groups in one
call, HF generate one group at a time, as the trainer's `rollout_engine: transformers` does. Reports tokens/s and
their ratio. Results go to bench/rollouts/results_<device>_<size>_<N>prompts.json (sweeps: a .jsonl) unless --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.common import measured_line, provenance, read_json, read_jsonl, table, update_readme, write_json

HERE = Path(__file__).resolve().parent


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--size", default="tiny", help="tiny model size (vtg.train.tiny_model.SIZES)")
    ap.add_argument("--out", default=None, help="result file (default: this folder, named by device, size, prompts)")
    ap.add_argument(
        "--sweep-max-num-seqs",
        default=None,
        metavar="N,N,...",
        help="instead: vLLM alone at each engine max_num_seqs, --repeats times each (JSON lines)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--render", action="store_true", help="only re-render README.md from the committed files")
    return ap.parse_args(argv)


def measure(args) -> list[dict]:
    import torch
    from transformers import AutoModelForImageTextToText
    from vllm import SamplingParams

    from vtg.data.records import load_records
    from vtg.data.synth import SynthConfig, generate
    from vtg.request import Requests
    from vtg.train.rollout import build_groups, make_colocated_llm
    from vtg.train.tiny_model import SIZES, build_tiny_model
    from vtg.vllm_engine import close_llm

    if args.size not in SIZES:
        raise SystemExit(f"--size must be one of {sorted(SIZES)}")
    tmp = Path(tempfile.mkdtemp(prefix="vtg_bench_rollouts_"))
    model_dir = build_tiny_model("qwen2.5-vl", tmp / "model", size=args.size)
    root = tmp / "world"
    generate(
        SynthConfig(
            n_videos=max(4, args.prompts), seed=0, min_duration=8, max_duration=16, split_fractions=(1.0, 0.0, 0.0)
        ),
        root,
        workers=1,
    )
    requests = Requests.for_model(model_dir, mode="multi", think=False)  # the model folder's sampling and style
    prompts = []
    for r in load_records(root / "train.jsonl")[: args.prompts]:
        prompts += [requests.prompt.messages(r.query, r.duration, r.video_path(root))] * args.generations
    groups = build_groups(prompts, requests)
    n_tokens = len(groups) * args.generations * args.tokens
    params = SamplingParams(n=args.generations, temperature=1.0, max_tokens=args.tokens, ignore_eos=True)

    def time_vllm(**overrides) -> tuple[float, int]:
        """(seconds for all prompts after a one-prompt warm-up, the engine's max_num_seqs)"""
        llm = make_colocated_llm(str(model_dir), gpu_memory_utilization=0.1, max_model_len=2048, seed=0, **overrides)
        max_num_seqs = llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        llm.generate([groups[0].request.vllm_input()], params, use_tqdm=False)  # warm-up
        t = time.perf_counter()
        outs = llm.generate([g.request.vllm_input() for g in groups], params, use_tqdm=False)
        seconds = time.perf_counter() - t
        assert sum(len(c.token_ids) for o in outs for c in o.outputs) == n_tokens
        close_llm(llm)
        return seconds, max_num_seqs

    device = "cuda" if torch.cuda.is_available() else "cpu"
    common = {
        "model": f"tiny qwen2.5-vl ({args.size}), random init",
        "device": device,
        "prompts": len(groups),
        "generations": args.generations,
        "tokens_per_completion": args.tokens,
        "prompt_tokens": len(groups[0].prompt_ids),
        "torch_threads": torch.get_num_threads(),
    }
    if args.sweep_max_num_seqs:
        rows = []
        for n in [int(x) for x in args.sweep_max_num_seqs.split(",")]:
            for _ in range(args.repeats):
                seconds, _ = time_vllm(max_num_seqs=n)
                rows.append({**common, "max_num_seqs": n, "vllm_tokens_per_s": round(n_tokens / seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
        return rows
    vllm_s, max_num_seqs = time_vllm()

    model = AutoModelForImageTextToText.from_pretrained(model_dir).to(device).eval()
    t = time.perf_counter()
    with torch.no_grad():
        for g in groups:
            inputs = {k: v.to(device) for k, v in g.hf_inputs.items() if isinstance(v, torch.Tensor)}
            model.generate(
                **inputs,
                do_sample=True,
                temperature=1.0,
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                num_return_sequences=args.generations,
            )
    hf_s = time.perf_counter() - t
    return [
        {
            **common,
            "vllm_max_num_seqs": max_num_seqs,
            "vllm_tokens_per_s": round(n_tokens / vllm_s, 1),
            "hf_tokens_per_s": round(n_tokens / hf_s, 1),
            "ratio_vllm_over_hf": round(hf_s / vllm_s, 2),
        }
    ]


def _size(r: dict) -> str:
    return r["model"].split("(")[1].split(")")[0] if "(" in r["model"] else r["model"]


def section() -> str:
    results = [(p.name, read_json(p)) for p in sorted(HERE.glob("results_*.json"))]
    results.sort(key=lambda x: (x[1].get("device", "cpu"), x[1]["prompts"], _size(x[1])))
    parts = [
        table(
            [
                "file",
                "device",
                "size",
                "prompts × G × tokens",
                "vLLM max_num_seqs",
                "vLLM tok/s",
                "HF tok/s",
                "vLLM / HF",
                "measured",
            ],
            [
                (
                    f"`{name}`",
                    r.get("device", "cpu"),
                    _size(r),
                    f"{r['prompts']} × {r['generations']} × {r['tokens_per_completion']}",
                    r.get("vllm_max_num_seqs"),
                    r["vllm_tokens_per_s"],
                    r["hf_tokens_per_s"],
                    f"{r['ratio_vllm_over_hf']}×",
                    f"{r.get('date', '?')}, {r.get('commit', '?')}",
                )
                for name, r in results
            ],
        )
    ]
    parts += [f"`{name}`: {measured_line(r)} Command: `{r.get('command', 'not recorded')}`" for name, r in results]
    for path in sorted(HERE.glob("results_*sweep*.jsonl")):
        rows = read_jsonl(path)
        by_n: dict[int, list[float]] = {}
        for row in rows:
            by_n.setdefault(row["max_num_seqs"], []).append(row["vllm_tokens_per_s"])
        head = rows[0]
        parts += [
            f"vLLM alone by engine `max_num_seqs` (`{path.name}`, {head['prompts']} prompts, size "
            f"{_size(head)}; "
            f"{measured_line(head)} Command: `{head.get('command', 'not recorded')}`):",
            table(
                ["max_num_seqs", "runs", "vLLM tok/s (min – max)"],
                [(n, len(v), f"{min(v):,.0f} – {max(v):,.0f}") for n, v in sorted(by_n.items())],
            ),
        ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.render:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        rows = measure(args)
        meta = {
            "command": "python -m bench.rollouts.run " + " ".join(sys.argv[1:] if argv is None else argv),
            **provenance(),
        }
        rows = [{**meta, **r} for r in rows]
        device = rows[0]["device"]
        if args.sweep_max_num_seqs:
            out = Path(args.out or HERE / f"results_{device}_sweep_max_num_seqs.jsonl")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            out = Path(args.out or HERE / f"results_{device}_{args.size}_{args.prompts}prompts.json")
            write_json(out, rows[0])
            print(json.dumps(rows[0], indent=1))
        if out.resolve().parent != HERE:
            return 0
    update_readme(HERE / "README.md", section())
    return 0


if __name__ == "__main__":
    sys.exit(main())
