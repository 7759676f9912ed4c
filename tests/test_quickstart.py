"""`vtg quickstart` end to end, small: the real CLI chains synth -> tiny model -> SFT -> GRPO -> eval -> report."""

import json
import os
import subprocess
import sys

import pytest

from vtg.cli import main
from vtg.quickstart import _control_markdown, _section


@pytest.mark.integration
def test_quickstart_small_end_to_end(tmp_path):
    out = tmp_path / "qs"
    cmd = [
        sys.executable,
        "-m",
        "vtg",
        "quickstart",
        "--out",
        str(out),
        "--videos",
        "60",
        "--sft-steps",
        "3",
        "--grpo-steps",
        "2",
        "--eval-limit",
        "4",
        "--kinds",
        "single,multi,compositional,absent",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for stage in (
        "synthetic world",
        "tiny model",
        "SFT",
        "GRPO",
        "eval base",
        "eval sft",
        "eval grpo",
        "video control (own videos)",
        "video control (swapped videos)",
        "question control (own questions)",
        "question control (swapped questions)",
        "report",
    ):
        assert f"] {stage}: done" in proc.stdout, stage
    for name in ("base", "sft", "grpo"):
        metrics = json.loads((out / "eval" / name / "metrics.json").read_text())
        lines = (out / "eval" / name / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 4  # --eval-limit reached the job; every query kept, parse failures included
        assert metrics["counts"]["queries"] == 4
    assert (out / "model-grpo" / "final" / "vtg_sampling.json").exists()
    report = json.loads((out / "report" / "report.json").read_text())
    assert [r["label"] for r in report["runs"]] == ["base", "sft", "grpo"]
    # 60 videos (seed 0) give two test videos of equal duration: the control runs on their single/multi queries
    control = json.loads((out / "report" / "video_control.json").read_text())
    assert control["queries"] == 4
    assert set(control["own"]) == set(control["swapped"]) == {"R@1,IoU=0.5", "R@1,IoU=0.7", "mIoU"}
    own = [json.loads(x) for x in (out / "eval" / "control" / "own.jsonl").read_text().splitlines()]
    swapped = [json.loads(x) for x in (out / "eval" / "control" / "swapped.jsonl").read_text().splitlines()]
    assert [r["id"] for r in own] == [r["id"] for r in swapped]
    assert all(a["video"] != b["video"] for a, b in zip(own, swapped))
    # the question control: 60 videos (seed 0) give 12 single/multi test queries with a query whose answer differs
    qc = json.loads((out / "report" / "question_control.json").read_text())
    assert qc["queries"] == 4 and set(qc["own"]) == set(qc["swapped"]) == set(control["own"])
    q_own = [json.loads(x) for x in (out / "eval" / "question_control" / "own.jsonl").read_text().splitlines()]
    q_swapped = [json.loads(x) for x in (out / "eval" / "question_control" / "swapped.jsonl").read_text().splitlines()]
    assert all(a["query"] != b["query"] and a["video"] == b["video"] for a, b in zip(q_own, q_swapped))
    # the prior baselines of the training split, scored on each model's queries, with a verdict per model
    assert set(report["prior"]["runs"]) == {"base", "sft", "grpo"}
    md = (out / "report" / "report.md").read_text()
    assert "## Video control (GRPO model)" in md and "## Question control (GRPO model)" in md
    for line in ("grpo beats the prior by", "## Question control (GRPO model)", "with swapped questions: "):
        assert line in proc.stdout, line
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) >= {"SFT", "GRPO", "report"}
    # it ends by saying how to serve what it trained: the exported model, its videos as the media root
    final = out / "model-grpo" / "final"
    assert f"vtg serve --model {final} --allowed-local-media-path {out / 'data'}" in proc.stdout
    assert (final / "config.json").exists() and proc.stdout.rstrip().endswith("POST /v1/grounding")

    # a rerun reuses every finished stage instead of recomputing it
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(": reusing ") == 11


def test_quickstart_rejects_unknown_kinds_before_running(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--kinds", "single,dogs"]) == 2
    err = capsys.readouterr().err
    assert "kinds" in err and "dogs" in err and "single" in err
    assert not (out / "data").exists()


def test_quickstart_refuses_a_reused_world_made_with_other_settings(tmp_path, capsys):
    """Rerunning reuses finished stages; a world generated with other --videos/--kinds must not be reused silently."""
    data = tmp_path / "qs" / "data"
    data.mkdir(parents=True)
    (data / "world.json").write_text(json.dumps({"n_videos": 12, "seed": 0, "kinds": ["single", "multi"]}))
    (data / "test.jsonl").write_text("")
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--videos", "12", "--kinds", "single"]) == 2
    err = capsys.readouterr().err
    assert "kinds: ['single', 'multi'] on disk vs ['single'] asked" in err and "--fresh" in err
    assert not (tmp_path / "qs" / "model-base").exists()


def test_control_verdict_follows_the_gap():
    m = lambda miou: {"R@1,IoU=0.5": 50.0, "R@1,IoU=0.7": 30.0, "mIoU": miou}  # noqa: E731
    assert "the model reads the video." in _control_markdown({"queries": 9, "own": m(80.0), "swapped": m(30.0)})
    assert "the model does not read the video**" in _control_markdown(
        {"queries": 9, "own": m(40.0), "swapped": m(39.0)}
    )
    assert "Not run" in _control_markdown({"queries": 0})
    question = _control_markdown({"queries": 9, "own": m(80.0), "swapped": m(30.0)}, "question")
    assert "## Question control" in question and "with swapped questions: the model reads the question." in question
    question = _control_markdown({"queries": 9, "own": m(40.0), "swapped": m(35.0)}, "question")
    assert "drops by 5.0 points" in question and "the model does not read the question**" in question
    assert "no query whose answer differs" in _control_markdown({"queries": 0}, "question")


def test_section_picks_one_report_section():
    md = "# Evaluation report\n\n## Metrics\n\n| a |\n\n## Controls and baselines\n\n- x beats the prior\n\n## R@1\n"
    assert _section(md, "Controls and baselines") == "## Controls and baselines\n\n- x beats the prior\n"
    assert _section(md, "Nothing") == ""
