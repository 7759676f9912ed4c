"""One GRPO step of OUR trainer (`vtg.train.grpo.VideoGRPOTrainer`) on a random-init Qwen2.5-VL-3B- or 7B-sized model.

    python -m bench.gpu.grpo_step                 # on one CUDA GPU: 3B-sized, bf16, 3.5k-token video prompt
    python -m bench.gpu.grpo_step --size 7b       # 7B-sized
    python -m bench.gpu.grpo_step --tiny          # on CPU: the tiny model, a few frames (what the test runs)

(from the repository root; `python -m bench.gpu.run` runs the whole GPU set in one device call.)

The trainer is built by `build_grpo_trainer` from a `VideoGRPOConfig` (`rollout_engine: transformers`, i.e. HF-generate
rollouts: vLLM's CUDA wheel cannot be carried to the GPU machine), trained for `--steps` optimizer steps; the last
step is reported (the first one pays CUDA warm-up). One step = one prompt, `--generations` rollouts of up to
`--completion` tokens, then the loss pass over those sequences in micro-batches of `--micro-batch` (default 2, as in
the project's baseline below).

The video: 60 s at 2 fps, 224×196 px → 120 frames = 60 temporal steps × (8×7) merged patches = 3,360 video tokens,
≈ 3.5k prompt tokens with the text (the baseline's prompt). The weights are random and never saved: the model is
built on the device and handed to `build_grpo_trainer` in place of `load_model_and_processor` (7.5 GB not written
and read). The tokenizer/processor/chat template are the tiny model's (byte-level BPE, the family's special tokens);
the embedding keeps the real 151,936 rows so the LM head costs what it costs in the real model.

Numbers (printed as a table last, and written as JSON with --json):
- step time: wall time of the optimizer step (rollout + loss pass + optimizer), CUDA-synchronised;
- rollout tokens/s: completion tokens / rollout time (video decode + processor + HF generate);
- training tokens/s: (prompt + completion tokens of the G sequences) / (step time − rollout time);
- MFU = 6 · N · training tokens/s / peak, N = all model parameters (vision included), no attention term, no
  recompute counted — the formula that reproduces the baseline's figures (6 · 8.29e9 · 1177 / 989e12 = 5.9 %);
  peak = 989 TFLOP/s bf16 dense for H100 SXM (H200: the same chip, same peak); other cards: --peak-tflops.
- peak memory: torch.cuda.max_memory_allocated.

The baseline (BASELINE_3B / BASELINE_7B, the table's last column) was measured by the project before the trainer
existed: plain transformers, SDPA attention, random-init weights, the same 3.5k-token video prompt, on an H100
(and the 7B step on an H200 too). bench/gpu/README.md gives its numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # bf16 dense, SXM (NVIDIA datasheets; H200 = H100 compute)
# The project's baseline, measured before the trainer existed: plain transformers (SDPA), random-init weights, the
# same 3.5k-token video prompt, on an H100. 3B-sized:
BASELINE_3B = {
    "model": "3B-sized, random init, bf16",
    "rollout tok/s": "190 (HF generate, 8 x 200 tokens)",
    "training tok/s": "~1190 (from 2.7 % MFU, same formula)",
    "training MFU": "2.7 % (fwd+bwd, grad ckpt, 2 sequences)",
    "card": "H100",
}

# Qwen2.5-VL-3B-Instruct's config.json, from memory (not read from the hub here): text + vision dimensions.
QWEN25_VL_3B = {
    "text": dict(
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        head_dim=128,
        vocab_size=151936,
        rms_norm_eps=1e-6,
        max_position_embeddings=128000,
        mrope_section=[16, 24, 24],
        rope_theta=1000000.0,
    ),
    "vision": dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    ),
    "tie_word_embeddings": True,
}
# Qwen2.5-VL-7B-Instruct's, likewise from memory: a wider, shallower text model, untied LM head, same vision tower
QWEN25_VL_7B = {
    "text": dict(
        QWEN25_VL_3B["text"],
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
    ),
    "vision": dict(QWEN25_VL_3B["vision"], out_hidden_size=3584),
    "tie_word_embeddings": False,
}
SIZES = {"3b": QWEN25_VL_3B, "7b": QWEN25_VL_7B}
BASELINE_HEADER = "project baseline (H100, plain transformers, before the trainer)"
# ... and 7B-sized: H100 with checkpointing 1177 tok/s (5.9 %); H200 1110 tok/s, and 5707 tok/s at 71 GiB with the
# vision tower frozen and checkpointing off
BASELINE_7B = {
    "model": "7B-sized, random init, bf16",
    "rollout tok/s": "206 (HF generate, 8 x 200 tokens, 7.8 s)",
    "training tok/s": "1177",
    "training MFU": "5.9 % (fwd+bwd, grad ckpt, 2 sequences; H200: 1110 tok/s, 5707 tok/s frozen tower + "
    "no ckpt, 71 GiB)",
    "card": "H100",
}


def import_vtg() -> None:
    """Make `vtg` importable from this checkout when it is not installed (the GPU machine: PYTHONPATH wheels only),
    with the same package-dir mapping as pyproject.toml."""
    try:
        import vtg.train.grpo  # noqa: F401

        return
    except ImportError:
        pass
    for name, folder in (
        ("vtg", "vtg"),
        ("vtg.data", "data"),
        ("vtg.train", "train"),
        ("vtg.serve", "serve"),
        ("vtg.eval", "eval"),
    ):
        spec = importlib.util.spec_from_file_location(
            name, ROOT / folder / "__init__.py", submodule_search_locations=[str(ROOT / folder)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


# ---- inputs ---------------------------------------------------------------------------------------------------


def write_video(path: Path, seconds: int, height: int, width: int, fps: float = 2.0) -> Path:
    """Noise frames with a moving square (content is irrelevant to speed; H.264 via PyAV)."""
    import numpy as np

    from vtg.data.synth import encode_mp4

    n = int(seconds * fps)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 64, size=(n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        y, x = (i * 3) % (height - 16), (i * 5) % (width - 16)
        frames[i, y : y + 16, x : x + 16] = (220, 30, 30)
    encode_mp4(frames, path, fps)
    return path


def write_records(path: Path, video: Path, duration: float, n: int) -> Path:
    lines = [
        json.dumps(
            {
                "id": f"bench-{i}",
                "video": str(video),
                "duration": duration,
                "query": "the red square",
                "moments": [[duration * 0.25, duration * 0.5]],
                "source": "bench",
                "split": "train",
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def big_model(tiny_dir: Path, dtype, device: str, dims: dict = QWEN25_VL_3B):
    """A random-init Qwen2.5-VL model of `dims` (3B- or 7B-sized) with the tiny folder's special-token ids, built on
    `device`."""
    import torch
    from transformers import AutoConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    base = AutoConfig.from_pretrained(tiny_dir)
    t = dict(dims["text"])
    mrope, theta = t.pop("mrope_section"), t.pop("rope_theta")
    text = {k: v for k, v in base.text_config.to_dict().items() if k != "layer_types"}  # re-derived from depth
    text.update(
        t,
        rope_parameters={"rope_type": "default", "mrope_section": mrope, "rope_theta": theta},
        tie_word_embeddings=dims["tie_word_embeddings"],
    )
    vision = {**base.vision_config.to_dict(), **dims["vision"]}
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=text["tie_word_embeddings"],
        **{
            k: getattr(base, k)
            for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        },
    )
    cfg._attn_implementation = "sdpa"
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    return model


# ---- the run --------------------------------------------------------------------------------------------------


class StepTimer:
    """TrainerCallback: wall time of each optimizer step (synchronised), rollout seconds inside it."""

    def __init__(self, trainer, cuda: bool):
        from transformers import TrainerCallback

        outer = self
        self.steps: list[dict] = []
        self.trainer, self.cuda = trainer, cuda
        self.tokens = {"prompt": 0, "completion": 0}

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                outer._sync()
                outer._t0 = time.perf_counter()
                outer._r0 = dict(outer.trainer.rollout_stats)
                outer._k0 = dict(outer.tokens)

            def on_step_end(self, args, state, control, **kw):
                outer._sync()
                r = outer.trainer.rollout_stats
                outer.steps.append(
                    {
                        "step_s": time.perf_counter() - outer._t0,
                        "rollout_s": r["rollout_seconds"] - outer._r0["rollout_seconds"],
                        "completion_tokens": outer.tokens["completion"] - outer._k0["completion"],
                        "prompt_tokens": outer.tokens["prompt"] - outer._k0["prompt"],
                    }
                )

        self.callback = CB()
        rollout = trainer.video_rollout

        def counted(prompts):  # the token counts of the sequences the loss pass will see
            out = rollout(prompts)
            self.tokens["prompt"] += sum(len(p) for p in out["prompt_ids"])
            self.tokens["completion"] += sum(len(c) for c in out["completion_ids"])
            return out

        trainer.video_rollout = counted

    def _sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def run(args) -> dict:
    import torch

    import_vtg()
    from vtg.train import policy
    from vtg.train.config import VideoGRPOConfig
    from vtg.train.grpo import build_grpo_trainer
    from vtg.train.tiny_model import build_tiny_model

    cuda = torch.cuda.is_available() and not args.tiny
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --tiny on CPU (the 3B-sized model needs a GPU)")
    work = Path(tempfile.mkdtemp(prefix="vtg_gpu_bench_"))
    tiny_dir = build_tiny_model("qwen2.5-vl", work / "tiny")
    if args.tiny:  # 2 s, 4 frames of 56x56 (2 temporal steps x 2x2 merged patches)
        seconds, h, w, frames = 2, 56, 56, 4
    else:  # the baseline's video: 60 temporal steps x (8 x 7) merged patches
        seconds, h, w, frames = 60, 224, 196, 120
    video = write_video(work / "video.mp4", seconds, h, w)
    n_gen = args.generations
    records = write_records(work / "records.jsonl", video, float(seconds), n=max(args.steps, args.video_check))
    dtype = torch.bfloat16 if cuda else torch.float32
    if args.tiny:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=dtype)
    else:
        model = big_model(tiny_dir, dtype, "cuda", SIZES[args.size])
    n_params = sum(p.numel() for p in model.parameters())
    save_s = None
    if args.beta > 0 and not args.tiny:  # TRL builds the KL reference from the policy's folder: write one
        t = time.perf_counter()
        model.save_pretrained(work / "model")
        _processor(tiny_dir).save_pretrained(work / "model")
        model.config._name_or_path = str(work / "model")
        save_s = time.perf_counter() - t
    # build_grpo_trainer imports this at call time: it gets the random weights as built, the folder's processor
    policy.load_model_and_processor = lambda recipe: (model, _processor(tiny_dir))
    recipe = VideoGRPOConfig(
        model=str(tiny_dir),
        train_file=str(records),
        output_dir=str(work / "run"),
        max_steps=args.steps,
        num_generations=n_gen,
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=n_gen // args.micro_batch,
        max_completion_length=args.completion,
        tuning="full",
        freeze_vision=not args.train_vision,
        train_merger=True,
        gradient_checkpointing=not args.no_grad_ckpt,
        precision="bf16" if cuda else "fp32",
        rollout_engine="transformers",
        beta=args.beta,
        learning_rate=1e-6,
        video_check_every=10**6 if args.video_check else 0,
        video_check_records=max(args.video_check, 1),
        temperature=1.0,
        logging_steps=1,
        save_steps=10**6,
        max_length=4096 if not args.tiny else 1024,
        rewards={"tiou_v2": 1.0, "format": 1.0},
        sampling={"fps": 2.0, "max_frames": frames, "min_pixels": h * w, "max_pixels": h * w},
    )
    trainer = build_grpo_trainer(recipe, extra_rewards={"bench_noise": (_noise_reward, 1.0)})
    from transformers.trainer_utils import SaveStrategy

    trainer.args.save_strategy = SaveStrategy.NO  # random weights: nothing to save (7.5 GB at the end otherwise)
    check_s: list[float] = []
    check = None
    if args.video_check:  # the check runs once, before the first step: time it (it is outside the step timer)
        check = next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == "VideoCheck")
        scores = check.scores

        def timed_scores():
            t = time.perf_counter()
            out = scores()
            if cuda:
                torch.cuda.synchronize()
            check_s.append(time.perf_counter() - t)
            return out

        check.scores = timed_scores
    timer = StepTimer(trainer, cuda)
    trainer.add_callback(timer.callback)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    last = timer.steps[-1]
    train_s = last["step_s"] - last["rollout_s"]
    train_tokens = last["prompt_tokens"] + last["completion_tokens"]
    card = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in card), None)
    train_tps = train_tokens / train_s
    import transformers

    return {
        "card": card,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": "tiny Qwen2.5-VL" if args.tiny else f"Qwen2.5-VL-{args.size.upper()}-sized (random init)",
        "size": "tiny" if args.tiny else args.size,
        "params": n_params,
        "dtype": str(dtype).removeprefix("torch."),
        "prompt_tokens": last["prompt_tokens"] // n_gen,
        "generations": n_gen,
        "micro_batch": args.micro_batch,
        "grad_ckpt": not args.no_grad_ckpt,
        "vision": "trained" if args.train_vision else "frozen (merger trained)",
        "beta": args.beta,
        "steps": timer.steps,
        "wall_s": wall,
        "grad_norm": [float(h["grad_norm"]) for h in trainer.state.log_history if "grad_norm" in h][-1],
        "step_s": last["step_s"],
        "rollout_s": last["rollout_s"],
        "rollout_tok_s": last["completion_tokens"] / last["rollout_s"] if last["rollout_s"] else None,
        "train_tokens": train_tokens,
        "train_tok_s": train_tps,
        "mfu": 6 * n_params * train_tps / (peak * 1e12) if peak else None,
        "peak_tflops": peak,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "model_save_s": save_s,
        "video_check": {
            "records": args.video_check,
            "seconds": check_s[0],
            "gap": check.history[0]["video_check/gap"],
            "own_loss": check.history[0]["video_check/own_loss"],
        }
        if check
        else None,
    }


def _noise_reward(completions, **kw):
    """Bench-only: random rewards, so advantages and gradients are non-zero as in real training (a random-init
    model scores 0 on every grounding reward, and all-zero advantages make a zero update)."""
    import random

    return [random.random() for _ in completions]


def _processor(tiny_dir: Path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    processor.tokenizer.padding_side = "left"  # as load_model_and_processor does
    return processor


def table(r: dict) -> str:
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    base = BASELINE_7B if r.get("size") == "7b" else BASELINE_3B

    rows = [
        ("card", r["card"], base["card"]),
        ("model", f"{r['model']}, {r['params'] / 1e6:,.1f}M params, {r['dtype']}", base["model"]),
        (
            "setup",
            f"prompt {r['prompt_tokens']} tok, G={r['generations']}, micro-batch {r['micro_batch']}, "
            f"grad ckpt {'on' if r['grad_ckpt'] else 'off'}, vision {r['vision']}, beta {r['beta']}",
            "3.5k-token prompt, 8 x 200 rollouts",
        ),
        ("step time (s)", f(r["step_s"], ".2f"), "-"),
        ("rollout time (s)", f(r["rollout_s"], ".2f"), "-"),
        ("rollout tokens/s", f(r["rollout_tok_s"], ".1f"), base["rollout tok/s"]),
        ("training tokens/s", f(r["train_tok_s"], ".1f"), base["training tok/s"]),
        (
            "MFU (6·N·tok/s / peak)",
            "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.2f} % of {r['peak_tflops']:g} TFLOP/s",
            base["training MFU"],
        ),
        ("peak memory (GiB)", f(r["peak_mem_gib"], ".1f"), "-"),
    ]
    if r.get("video_check"):
        v = r["video_check"]
        rows.append(
            (
                "video check (step 0)",
                f"{v['seconds']:.2f} s for {v['records']} records x 2 passes, gap {v['gap']:+.4f}",
                "-",
            )
        )
    w0, w1 = max(len(a) for a, _, _ in rows), max(len(str(b)) for _, b, _ in rows)
    lines = [f"{'metric':<{w0}} | {'this run':<{w1}} | {BASELINE_HEADER}", "-" * (w0 + w1 + 54)]
    lines += [f"{a:<{w0}} | {str(b):<{w1}} | {c}" for a, b, c in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny model, a few frames, CPU (smoke test)")
    p.add_argument("--size", choices=sorted(SIZES), default="3b", help="model dimensions (default 3b)")
    p.add_argument(
        "--video-check",
        type=int,
        default=0,
        metavar="N",
        help="time the video check (train/video_check.py) on N records before the first step",
    )
    p.add_argument("--steps", type=int, default=2, help="optimizer steps; the last one is reported (default 2)")
    p.add_argument("--generations", type=int, default=None, help="rollouts per prompt (default 8; tiny 2)")
    p.add_argument("--completion", type=int, default=None, help="max completion tokens (default 200; tiny 8)")
    p.add_argument("--micro-batch", type=int, default=2, help="sequences per forward/backward (default 2)")
    p.add_argument(
        "--beta",
        type=float,
        default=0.0,
        help="KL weight; > 0 adds a reference model forward (the random model is saved for TRL to "
        "load the reference from; the time it takes is reported)",
    )
    p.add_argument("--no-grad-ckpt", action="store_true", help="turn gradient checkpointing off")
    p.add_argument("--train-vision", action="store_true", help="train the whole vision tower (default frozen)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s for MFU on other cards")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    args.generations = args.generations or (2 if args.tiny else 8)
    args.completion = args.completion or (8 if args.tiny else 200)
    if args.generations % args.micro_batch or args.steps < 1:
        p.error(
            f"--generations {args.generations} must be a multiple of --micro-batch {args.micro_batch}, and --steps >= 1"
        )
    result = run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(table(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
