"""The prepared GPU scripts (bench/gpu/grpo_step.py, bench/gpu/cli_smoke.py) run end to end on CPU, from the repository
root as `python -m bench.gpu.<script>`, and print their tables."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <module> ARGS` from the repository root, as bench/gpu/README.md runs it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # bench/gpu's GRPO-step timer rehearsed on the CPU (~30 s); GRPO's step is tests/test_train_grpo.py's
def test_grpo_step_tiny_prints_the_table(tmp_path):
    out = tmp_path / "result.json"
    r = run_module("bench.gpu.grpo_step", "--tiny", "--steps", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    head = max(i for i, line in enumerate(lines) if line.startswith("metric "))
    tail = lines[head:]  # the table is the last thing printed
    assert "project baseline (H100, plain transformers, before the trainer)" in tail[0] and len(tail) == 11
    rows = {line.split("|")[0].strip(): line.split("|")[1].strip() for line in tail[2:]}
    assert rows["card"] == "cpu"
    for key in ("step time (s)", "rollout tokens/s", "training tokens/s"):
        assert float(rows[key]) > 0
    assert rows["MFU (6·N·tok/s / peak)"] == "n/a"  # no peak known for a CPU
    res = json.loads(out.read_text())
    assert (
        res["steps"]
        and res["train_tokens"] == res["generations"] * res["prompt_tokens"] + res["steps"][-1]["completion_tokens"]
    )
    assert all(math.isfinite(res[k]) and res[k] > 0 for k in ("step_s", "rollout_s", "train_tok_s", "rollout_tok_s"))
    assert res["step_s"] > res["rollout_s"]  # the loss pass took time too
    assert res["grad_norm"] > 0  # and produced gradients (a zero update would time a different computation)


def test_cli_smoke_runs_every_job_on_cpu(tmp_path):
    """bench/gpu/cli_smoke.py (the GPU machine's check of `vtg train` on tiny models) at 1 % of its steps: 3 full-SFT
    steps, 2 for each other job (what is checked here holds at any step count), for one family (both families'
    training is covered by tests/test_train_sft.py and tests/test_train_grpo.py; the GPU machine runs both)."""
    out = tmp_path / "smoke.json"
    r = run_module("bench.gpu.cli_smoke", "--steps-scale", "0.01", "--families", "qwen2.5-vl", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(x["method"], x["tuning"]) for x in rows] == [
        ("sft", "full"),
        ("sft", "lora"),
        ("grpo", "full"),
        ("grpo", "lora"),
    ]
    for x in rows:
        assert x["vision"] == x["language"] == "cpu/float32"  # precision auto: fp32 on CPU
        assert x["vision_calls_per_step"] >= 1  # the video reached every optimizer step
        assert x["merger_grad_min"] > 0, x["job"]  # ... and its gradient the merger (GRPO: the noise reward)
    assert r.stdout.strip().splitlines()[-1].startswith("qwen2.5-vl grpo lora")  # the table is printed last
