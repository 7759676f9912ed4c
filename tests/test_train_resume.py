"""Crash and resume: SIGKILL a `vtg train sft` run after its first checkpoint, `--resume`, and check it continues
from that checkpoint's step (not from 0) with optimizer/scheduler/RNG and data position restored."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration


def _cmd(model, world, out, *extra):
    return [
        sys.executable,
        "-m",
        "vtg",
        "train",
        "sft",
        "--model",
        str(model),
        "--train_file",
        str(world / "train.jsonl"),
        "--output_dir",
        str(out),
        "--max_steps",
        "8",
        "--save_steps",
        "3",
        "--logging_steps",
        "1",
        "--sampling",
        "{max_frames: 16}",
        "--max_length",
        "1024",
        "--learning_rate",
        "1e-3",
        "--save_total_limit",
        "5",
        *extra,
    ]


def _logged_steps(stdout: str) -> list[dict]:
    """The per-step log dicts the trainer prints ({'loss': ..., 'epoch': ...})."""
    out = []
    for line in stdout.replace("\r", "\n").splitlines():
        i = line.find("{'loss'")
        if i >= 0:
            out.append(ast.literal_eval(line[i : line.index("}", i) + 1]))
    return out


def test_sigkill_then_resume_continues_from_last_checkpoint(tiny_qwen25, synth_world, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        _cmd(tiny_qwen25, synth_world, out), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        # wait until the run has checkpointed at step 3 and logged step 4, then kill it mid-way
        while not (
            len(_logged_steps((tmp_path / "killed.log").read_text())) >= 4
            and (out / "checkpoint-3" / "trainer_state.json").exists()
        ):
            assert proc.poll() is None, "training exited early:\n" + (tmp_path / "killed.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint-3 / step 4 within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    killed = _logged_steps((tmp_path / "killed.log").read_text())
    assert not (out / "final").exists()
    last = max((p for p in out.glob("checkpoint-*")), key=lambda p: int(p.name.split("-")[1]))
    step = int(last.name.split("-")[1])
    assert 3 <= step < 8
    for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (last / name).exists(), name
    assert list(last.glob("rng_state*.pth"))

    res = subprocess.run(
        _cmd(tiny_qwen25, synth_world, out, "--resume"), env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"[vtg] resuming from {last}" in res.stdout + res.stderr  # the library logs on stderr
    logs = _logged_steps(res.stdout + res.stderr)
    assert len(logs) == 8 - step  # only the remaining steps ran
    # step counter and data position: the first resumed step trains on the batch the killed run saw at that step
    # (same weights, same sample → the same loss); restarting the data from the first batch would change it
    assert float(logs[0]["epoch"]) == pytest.approx(float(killed[step]["epoch"]), abs=1e-3)
    if len(killed) > step:
        assert float(logs[0]["loss"]) == pytest.approx(float(killed[step]["loss"]), rel=1e-3)
    assert (out / "final" / "vtg_sampling.json").exists()
