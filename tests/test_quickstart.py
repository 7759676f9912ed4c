"""`vtg quickstart` end to end, small: the real CLI chains synth -> tiny model -> SFT -> GRPO -> eval -> report."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_quickstart_small_end_to_end(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "vtg", "quickstart", "--out", str(out), "--videos", "12", "--sft-steps", "3",
           "--grpo-steps", "2", "--eval-limit", "4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for stage in ("synthetic world", "tiny model", "SFT", "GRPO", "eval base", "eval sft", "eval grpo", "report"):
        assert f"] {stage}: done" in proc.stdout, stage
    for name in ("base", "sft", "grpo"):
        metrics = json.loads((out / "eval" / name / "metrics.json").read_text())
        lines = (out / "eval" / name / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 4  # --eval-limit reached the job; every query kept, parse failures included
        assert metrics["counts"]["queries"] == 4
    assert (out / "model-grpo" / "final" / "vtg_sampling.json").exists()
    report = json.loads((out / "report" / "report.json").read_text())
    assert [r["label"] for r in report["runs"]] == ["base", "sft", "grpo"]
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) >= {"SFT", "GRPO", "report"}

    # a rerun reuses every finished stage instead of recomputing it
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(": reusing ") == 7
