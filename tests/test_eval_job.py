"""Integration: `vtg eval run` on the synthetic test split with the tiny Qwen2.5-VL through the vLLM CPU engine.

One uninterrupted run, and one run SIGKILLed (with its engine process group) after its first batch is durable,
then resumed: the final predictions and metrics must be identical. A corrupt video is a recorded error line.
Then the report over both runs. Each `vtg eval run` starts a vLLM engine (the slow part): three starts in all.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vtg.data.records import load_records, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
N_QUERIES = 6


@pytest.fixture(scope="module")
def eval_setup(synth_world, tiny_qwen25, tmp_path_factory):
    d = tmp_path_factory.mktemp("eval_job")
    recs = load_records(synth_world / "test.jsonl")
    recs += load_records(synth_world / "val.jsonl")  # the 12-video world's test split alone may be small
    rows = [dict(r.to_dict(), video=str(Path(r.video_path(synth_world)).resolve())) for r in recs[: N_QUERIES - 1]]
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows.insert(2, dict(rows[0], id="corrupt", video=str(d / "corrupt.mp4")))
    write_jsonl(rows, d / "records.jsonl")
    (d / "eval.yaml").write_text(
        f"benchmark: synthetic\nrecords: {d / 'records.jsonl'}\nmode: multi\nthink: false\n"
        # sampled with a per-request seed: distinct texts per query (a random-init model's greedy text is the same
        # for every prompt), still exactly repeatable, so a resumed run must reproduce every line
        "max_new_tokens: 16\ntemperature: 1.0\nseed: 7\nbatch_size: 2\ndecode_workers: 2\n"
    )
    return d, tiny_qwen25


def _cmd(d, model, out):
    return [
        sys.executable,
        "-m",
        "vtg",
        "eval",
        "run",
        "--config",
        str(d / "eval.yaml"),
        "--model",
        str(model),
        "--out",
        str(out),
    ]


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_run_kill_resume_identical_and_report(eval_setup):
    d, model = eval_setup
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
    full = subprocess.run(_cmd(d, model, d / "full"), env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    full_lines = _lines(d / "full" / "predictions.jsonl")
    assert len(full_lines) == N_QUERIES
    corrupt = next(x for x in full_lines if x["id"] == "corrupt")
    assert corrupt["parse"] == "error" and corrupt["text"] is None and "corrupt.mp4" in corrupt["error"]
    # the question was worded in the model's own prompt style (tiny: "short"), recorded in run.json
    assert json.loads((d / "full" / "run.json").read_text())["config"]["prompt_style"] == "short"
    texts = [x["text"] for x in full_lines if x["id"] != "corrupt"]
    assert all(t for t in texts) and len(set(texts)) > 1

    # killed run: SIGKILL the whole process group (the engine core is a child process) once a batch is durable
    pred = d / "killed" / "predictions.jsonl"
    proc = subprocess.Popen(
        _cmd(d, model, d / "killed"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and len(_lines(pred)) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(_lines(pred))
    assert 2 <= n_before < N_QUERIES, f"kill landed after {n_before} lines; expected mid-way"

    resumed = subprocess.run(_cmd(d, model, d / "killed"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout
    summary = json.loads(out[out.rfind("\n{\n") + 1 :])  # the summary is the last thing printed
    assert summary["resumed"] == n_before and summary["ran"] == N_QUERIES - n_before
    by_id = {x["id"]: x for x in _lines(pred)}
    assert len(by_id) == N_QUERIES == len(_lines(pred))  # nothing recomputed twice
    for x in full_lines:
        assert by_id[x["id"]]["text"] == x["text"], x["id"]
    m_full = json.loads((d / "full" / "metrics.json").read_text())
    m_killed = json.loads((d / "killed" / "metrics.json").read_text())
    assert m_full["metrics"] == m_killed["metrics"] and m_full["counts"]["errors"] == 1

    from vtg.cli import main

    assert main(["eval", "report", str(d / "full"), str(d / "killed"), "--out", str(d / "report")]) == 0
    rep = json.loads((d / "report" / "report.json").read_text())
    assert rep["runs"][0]["metrics"] == m_full["metrics"] == rep["runs"][1]["metrics"]
    md = (d / "report" / "report.md").read_text()
    assert f"| mIoU | {m_full['metrics']['mIoU']:.2f} | {m_full['metrics']['mIoU']:.2f} |" in md
    for f in ("iou_hist.png", "r1_vs_iou.png", "by_video_length.png", "by_moment_length.png", "parse_failures.png"):
        assert (d / "report" / f).stat().st_size > 1000


def test_offline_question_is_worded_in_the_configured_prompt_style(synth_world, tiny_qwen25):
    """run.json records the resolved style (above); this checks the engine input is built with it, and that the
    endpoint path sends the same words, the video first."""
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import endpoint_messages, first_request, requests_for

    rec = load_records(synth_world / "test.jsonl")[0]
    short = f"{rec.duration:.1f}s. {rec.query.strip()}<|im_end|>"
    for style, present, absent in (("short", short, "Query:"), ("full", "Query:", short)):
        cfg = EvalConfig(benchmark="synthetic", records="unused.jsonl", prompt_style=style)
        prompt = first_request(cfg, rec, synth_world, requests_for(cfg, str(tiny_qwen25))).prompt
        assert present in prompt and absent not in prompt
        parts = endpoint_messages(rec, synth_world, cfg)[0]["content"]
        assert [p["type"] for p in parts] == ["video_url", "text"]
        assert parts[1]["text"] in prompt
