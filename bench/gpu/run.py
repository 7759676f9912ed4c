"""Every GPU check of bench/gpu in one device call (the device lease is short), then the README table from the files.

On the GPU machine, from the repository root (carry `.whl`; see README.md for fetching the wheels):

    python3 -m bench.gpu.run --wheels .whl --deadline 530      # cli_smoke, then the GRPO steps; files in $OUT

Back here, with the files the call returned:

    .venv/bin/python -m bench.gpu.run --collect DIR      # DIR/*.json -> bench/gpu/results_<card>_*.json, README table
    .venv/bin/python -m bench.gpu.run --render           # README table from the committed files only
    .venv/bin/python -m bench.gpu.run --tiny --out /tmp/g # the same sequence on CPU (tiny model): a pre-flight check

Each step runs as its own process (`python -m bench.gpu.cli_smoke` / `bench.gpu.grpo_step`, the wheels' folder on
PYTHONPATH), with its own time limit, all ending by --deadline seconds from the start; its table is printed as soon
as it ends, so a run cut off by the lease keeps what finished. $OUT (or --out) gets each step's JSON, run.json
(when, where, each step's exit code and time) and logs.tgz (every step's full log).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench.common import ROOT, commit, measured_line, read_json, table, update_readme, write_json
from bench.gpu import cli_smoke, grpo_step  # light at import (stdlib only): they import vtg and torch when run

HERE = Path(__file__).resolve().parent
# (name, time limit s, module, arguments): cli_smoke first, it is the check of the fork fix that has not run on a GPU
# Each step is its module run in a process of its own (`python -m`): a step that hangs (as cli_smoke did on the GPU
# before the fork fix) can be cut off at its limit, and the GPU's memory is free again for the next one.
STEPS = [
    ("cli_smoke", 220, cli_smoke.__name__, []),
    ("grpo_step_3b_videocheck", 150, grpo_step.__name__, ["--video-check", "8"]),
    ("grpo_step_7b", 200, grpo_step.__name__, ["--size", "7b", "--video-check", "8"]),
    ("grpo_step_3b_kl", 150, grpo_step.__name__, ["--beta", "0.04"]),
    ("grpo_step_3b_mb8", 120, grpo_step.__name__, ["--micro-batch", "8"]),
]
TRAINED_SFT = "outputs/bench_learning/model-sft/final"  # bench/learning's SFT model, when carried: real GRPO rewards


def install_wheels(wheels: Path, site: Path) -> float:
    t0 = time.perf_counter()
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"--wheels {wheels}: no .whl files")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--target",
            str(site),
            *files,
        ],
        check=True,
    )
    return round(time.perf_counter() - t0, 1)


def table_tail(log: Path, n: int = 14) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if "it/s]" not in x and "s/it]" not in x]
    return "\n".join(lines[-n:])


def run_steps(args) -> int:
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    deadline = t0 + args.deadline
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    meta = {
        "command": "python3 -m bench.gpu.run " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "gpu": _nvidia_smi(),
        "steps": [],
    }
    if args.wheels:
        site = Path(args.site)
        meta["wheels_install_s"] = install_wheels(Path(args.wheels), site)
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(site), env.get("PYTHONPATH")) if x)
        print(f"wheels installed into {site} in {meta['wheels_install_s']} s", flush=True)
    print(f"gpu: {meta['gpu']}", flush=True)
    only = set(args.only.split(",")) if args.only else None
    trained = (
        args.trained_sft if args.trained_sft is not None else (TRAINED_SFT if (ROOT / TRAINED_SFT).is_dir() else "")
    )
    for name, limit, module, step_args in STEPS:
        if only and name not in only:
            continue
        step_args = list(step_args)
        if module == cli_smoke.__name__:
            step_args += (["--trained-sft", trained] if trained else []) + (
                ["--steps-scale", "0.05"] if args.tiny else []
            )
        elif args.tiny:  # the tiny model on CPU: 8 rollouts only where the micro-batch needs them
            step_args = [a for a in step_args if a not in ("--size", "7b")] + ["--tiny", "--steps", "1"]
            step_args += ["--generations", "8"] if "--micro-batch" in step_args else []
        left = int(deadline - time.time())
        limit = min(limit if not args.tiny else 900, left)  # the limits are sized for the GPU; a CPU is slower
        cmd = [sys.executable, "-m", module, *step_args, "--json", str(out / f"{name}.json")]
        row = {"name": name, "args": " ".join(step_args), "limit_s": limit}
        if limit < 30:
            row.update(rc=None, seconds=0, skipped=f"{left} s left")
            print(f"{name}: skipped, {left} s left", flush=True)
        else:
            s = time.time()
            with open(logs / f"{name}.log", "wb") as f:
                try:
                    row["rc"] = subprocess.run(
                        cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=limit
                    ).returncode
                except subprocess.TimeoutExpired:
                    row["rc"] = "timeout"
            row["seconds"] = round(time.time() - s)
            print(
                f"===== {name}\n{table_tail(logs / f'{name}.log')}\n{name}: rc {row['rc']} in {row['seconds']} s "
                f"(limit {limit})",
                flush=True,
            )
        meta["steps"].append(row)
        meta["total_s"] = round(time.time() - t0)
        write_json(out / "run.json", meta)
        with tarfile.open(out / "logs.tgz", "w:gz") as tar:
            tar.add(logs, arcname="logs")
    shutil.rmtree(logs)  # in logs.tgz: fewer files to bring back
    print(f"total: {meta['total_s']} s", flush=True)
    return 0 if all(r.get("rc") == 0 for r in meta["steps"]) else 1


def _nvidia_smi() -> str:
    try:
        return (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            or "none"
        )
    except (OSError, subprocess.TimeoutExpired):
        return "none (no nvidia-smi)"


# ---- bringing results home, and the README table ------------------------------------------------------------------


def card_slug(card: str) -> str:
    return card.lower().removeprefix("nvidia").strip().split()[0].replace("-", "") if card else "unknown"


def collect(folder: Path) -> list[Path]:
    """A device call's files → bench/gpu/results_<card>_<variant>.json and cli_smoke_<card>.json, with where and when
    they were measured (from its run.json)."""
    meta = read_json(folder / "run.json") if (folder / "run.json").exists() else {}
    written = []
    for name, _, _, _ in STEPS:
        path = folder / f"{name}.json"
        if not path.exists():
            continue
        result = read_json(path)
        if result.get("card") == "cpu":  # a --tiny pre-flight: not a GPU result
            print(f"skipped {path.name}: measured on a CPU (--tiny pre-flight)")
            continue
        step = next((s for s in meta.get("steps", []) if s["name"] == name), {})
        module = "cli_smoke" if name == "cli_smoke" else "grpo_step"
        prov = {
            "command": f"python3 -m bench.gpu.{module} {step.get('args', '')}".strip()
            + f"   (in: {meta.get('command', 'python3 -m bench.gpu.run')})",
            "date": meta.get("date", "not recorded"),
            "commit": meta.get("commit")
            if meta.get("commit", "unknown") != "unknown"
            else f"{commit()} (checkout at collection; the device copy had no git)",
            "machine": meta.get("gpu", "not recorded"),
        }
        slug = card_slug(result.get("card", ""))
        target = HERE / (
            f"cli_smoke_{slug}.json"
            if name == "cli_smoke"
            else f"results_{slug}_{name.removeprefix('grpo_step_')}.json"
        )
        write_json(target, {**prov, **result})
        written.append(target)
    return written


# The project's baseline, measured before the trainer existed (README.md). "~1,190" is the 3B's tokens/s implied by its
# 2.7 % MFU; MFU in brackets is computed here with the same formula from the stated tokens/s.
BASELINE_ROWS = [
    (
        "baseline: plain transformers, 3B-sized",
        "H100",
        "3b",
        2,
        "on",
        0,
        "~3.5k",
        "–",
        "– / 190",
        "~1,190",
        "2.7 %",
        "–",
    ),
    (
        "baseline: plain transformers, 7B-sized",
        "H100",
        "7b",
        2,
        "on",
        0,
        "~3.5k",
        "–",
        "7.8 / 206",
        "1,177",
        "5.9 %",
        "–",
    ),
    ("baseline: plain transformers, 7B-sized", "H200", "7b", 2, "on", 0, "~3.5k", "–", "–", "1,110", "(5.6 %)", "–"),
    (
        "baseline: plain transformers, 7B-sized, tower frozen",
        "H200",
        "7b",
        2,
        "off",
        0,
        "~3.5k",
        "–",
        "–",
        "5,707",
        "(28.7 %)",
        "71",
    ),
]


def section() -> str:
    files = sorted(HERE.glob("results_*.json"), key=lambda p: (read_json(p).get("date", ""), p.name), reverse=True)
    rows = []
    for p in files:
        r = read_json(p)
        vc = r.get("video_check")
        rows.append(
            (
                f"`{p.name}` ({r.get('date', '?')}, {r.get('commit', '?')})",
                r["card"].removeprefix("NVIDIA "),
                r.get("size", "3b"),
                r["micro_batch"],
                "on" if r["grad_ckpt"] else "off",
                r["beta"],
                r["prompt_tokens"],
                f"{r['step_s']:.2f}",
                f"{r['rollout_s']:.2f} / {r['rollout_tok_s']:.0f}" if r.get("rollout_tok_s") else "–",
                f"{r['train_tok_s']:,.0f}",
                f"{100 * r['mfu']:.1f} %" if r.get("mfu") else "–",
                f"{r['peak_mem_gib']:.1f}" if r.get("peak_mem_gib") else "–",
            )
            + ((f"{vc['seconds']:.1f} s, gap {vc['gap']:+.4f}",) if vc else ("–",))
        )
    rows += [b + ("–",) for b in BASELINE_ROWS]
    parts = [
        "One GRPO step of `VideoGRPOTrainer` (last of 2 steps; 8 rollouts × up to 200 tokens by HF generate; vision "
        "tower frozen, merger trained; random weights), one row per committed result file, newest first; the "
        "baseline rows last:",
        table(
            [
                "file (date, commit)",
                "card",
                "size",
                "micro-batch",
                "grad ckpt",
                "β",
                "prompt tokens",
                "step s",
                "rollout s / tok/s",
                "training tok/s",
                "MFU",
                "peak GiB",
                "video check, step 0",
            ],
            rows,
        ),
    ]
    groups: dict[tuple, list[str]] = {}
    for p in files:
        r = read_json(p)
        groups.setdefault((r.get("machine", "not recorded"), r.get("note", "")), []).append(
            f"- `{p.name}` ({r.get('date', '?')}, {r.get('commit', '?')}): `{r.get('command', 'not recorded')}`"
        )
    for (where, note), lines in groups.items():
        parts.append(f"Measured on {where}." + (f" **{note}**" if note else "") + "\n\n" + "\n".join(lines))
    for p in sorted(HERE.glob("cli_smoke_*.json")):
        r = read_json(p)
        parts += [
            f"`{p.name}` (`cli_smoke.py`; card {r['card']}, torch {r['torch']}): {measured_line(r)} "
            f"Command: `{r.get('command', 'not recorded')}`",
            table(
                [
                    "job",
                    "steps",
                    "s",
                    "steps/s",
                    "weights",
                    "vision fwd/step",
                    "merger grad min",
                    "loss first → last",
                    "reward first → last",
                    "video check gap",
                    "merger lr / lr",
                ],
                [
                    (
                        x["job"],
                        x["steps"],
                        f"{x['wall_s']:.1f}",
                        f"{x['steps_per_s']:.1f}",
                        x.get("vision"),
                        f"{x['vision_calls_per_step']:.0f}",
                        _g(x.get("merger_grad_min")),
                        f"{_g(x.get('loss_first'))} → {_g(x.get('loss_last'))}" if x["method"] == "sft" else "",
                        f"{_g(x.get('reward_first'))} → {_g(x.get('reward_last'))}" if x["method"] == "grpo" else "",
                        ", ".join(f"{g:+.4f}" for g in x.get("video_check_gap", [])) or "–",
                        _g(x.get("merger_lr_ratio")),
                    )
                    for x in r["rows"]
                ],
            ),
        ]
    return "\n\n".join(parts)


def _g(v) -> str:
    return "–" if v is None else format(v, ".3g")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheels", default=None, help="install these wheels (a folder of .whl) for the steps first")
    p.add_argument("--site", default="/tmp/site", help="where --wheels are installed (put on the steps' PYTHONPATH)")
    p.add_argument(
        "--deadline",
        type=int,
        default=None,
        help="every step ends by this many seconds from the start (default 540; --tiny 1800)",
    )
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/vtg_gpu_out"), help="result folder (default $OUT)")
    p.add_argument("--only", default=None, help="comma-separated step names: " + ",".join(s[0] for s in STEPS))
    p.add_argument(
        "--trained-sft",
        default=None,
        help=f"cli_smoke's --trained-sft (default {TRAINED_SFT} when it exists; '' for none)",
    )
    p.add_argument("--tiny", action="store_true", help="the same steps on CPU with the tiny model (pre-flight)")
    p.add_argument("--collect", default=None, metavar="DIR", help="bring a device call's files home, then render")
    p.add_argument("--render", action="store_true", help="only re-render README.md from the committed files")
    args = p.parse_args(argv)
    if args.collect:
        for path in collect(Path(args.collect)):
            print(f"wrote {path.relative_to(ROOT)}")
    if args.collect or args.render:
        update_readme(HERE / "README.md", section())
        return 0
    args.deadline = args.deadline or (1800 if args.tiny else 540)
    return run_steps(args)


if __name__ == "__main__":
    sys.exit(main())
