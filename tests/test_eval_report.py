"""`vtg eval report` on two hand-made run folders: files exist, Markdown and JSON agree, numbers are right."""

import json
import re

import pytest

from vtg.cli import main
from vtg.data.records import write_jsonl
from vtg.eval.config import EvalConfig
from vtg.eval.predictions import Appender, make_line
from vtg.eval.report import FILES


def make_run(tmp_path, name, texts, records_path, threshold_op=">="):
    d = tmp_path / name
    d.mkdir()
    cfg = EvalConfig.from_dict(
        {"benchmark": "t", "records": str(records_path), "scoring": {"threshold_op": threshold_op}}
    )
    (d / "run.json").write_text(
        json.dumps(
            {
                "benchmark": "t",
                "records": str(records_path),
                "config": cfg.to_dict(),
                "model": name,
                "endpoint": None,
                "shard": None,
                "limit": None,
            }
        )
    )
    with Appender(d / "predictions.jsonl") as app:
        app.write([make_line(i, t) for i, t in texts.items()])
    return d


@pytest.fixture
def runs(tmp_path):
    recs = [
        {"id": f"q{i}", "video": "v.mp4", "duration": 10.0 + 10 * i, "query": "q", "moments": [[0, 2.0 + i]]}
        for i in range(6)
    ]
    recs.append({"id": "absent", "video": "v.mp4", "duration": 10.0, "query": "q", "moments": []})
    write_jsonl(recs, tmp_path / "gt.jsonl")
    good = {f"q{i}": f"starts at 0.0s, ends at {2.0 + i:.1f}s" for i in range(6)} | {"absent": "not present"}
    half = {f"q{i}": ("starts at 0.0s, ends at 1.0s" if i % 2 else "garbage") for i in range(6)} | {"absent": "1 to 2"}
    return make_run(tmp_path, "good", good, tmp_path / "gt.jsonl"), make_run(
        tmp_path, "half", half, tmp_path / "gt.jsonl"
    )


def test_report_files_and_agreement(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval", "report", *map(str, runs), "--out", str(out)]) == 0
    for f in FILES:
        assert (out / f).stat().st_size > 0, f
    rep = json.loads((out / "report.json").read_text())
    good, half = rep["runs"]
    assert good["metrics"]["R@1,IoU=0.7"] == 100.0 and good["metrics"]["absent_acc"] == 100.0
    # half: odd i answer [0, 1] vs [0, 2+i]: IoU 1/3, 1/5, 1/7; even i unparseable
    assert half["metrics"]["mIoU"] == pytest.approx(100 * (1 / 3 + 1 / 5 + 1 / 7) / 6)
    assert half["metrics"]["R@1,IoU=0.3"] == pytest.approx(100 / 6)
    assert half["metrics"]["parse_failure_rate"] == pytest.approx(100 * 3 / 7)
    assert sum(half["iou_hist"]["counts"]) == 6
    lengths = half["by_video_length"]  # q5 lasts 60 s: the 1–10 min bin; the absent query counts too
    assert lengths["< 1 min"]["n"] == 6 and lengths["1–10 min"]["n"] == 1
    assert lengths["1–10 min"]["mIoU"] == pytest.approx(100 / 7)
    # every number in the Markdown tables is the JSON number printed with 2 decimals
    md = (out / "report.md").read_text()
    rows = {m.group(1): m.group(2).split(" | ") for m in re.finditer(r"^\| ([^|]+?) \| (.+) \|$", md, re.M)}
    checked = 0
    for i, r in enumerate(rep["runs"]):
        for k, v in r["metrics"].items():
            assert rows[k][i] == f"{v:.2f}"
            checked += 1
        for t, v in r["r1_curve"].items():
            assert rows[f"R@1,IoU={t}"][i] == f"{v:.2f}"
            checked += 1
        for b, cells in r["by_moment_length"].items():
            assert rows[f"{b} R@1,IoU=0.5"][i] == f"{cells['R@1,IoU=0.5']:.2f}"
            checked += 1
    assert checked > 50 and rep["same_conventions"]


def test_report_warns_on_mixed_conventions(runs, tmp_path):
    strict = make_run(tmp_path, "strict", {"q0": "starts at 0.0s, ends at 1.0s"}, runs[0].parent / "gt.jsonl", ">")
    out = tmp_path / "r2"
    assert main(["eval", "report", str(runs[0]), str(strict), "--out", str(out)]) == 0
    assert "different conventions" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["runs"][1]["counts"]["missing"] == 6


def test_report_needs_run_folders(tmp_path, capsys):
    assert main(["eval", "report", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "run.json" in capsys.readouterr().err


def test_video_length_bins_are_fixed_and_carry_every_metric():
    from vtg.data.grammar import parse_answer
    from vtg.eval.metrics import Conventions, aggregate, score_query
    from vtg.eval.report import by_video_length, length_bin

    edges = {59.9: "< 1 min", 60.0: "1–10 min", 599.0: "1–10 min", 600.0: "10–30 min", 3599.0: "30–60 min"}
    edges |= {3600.0: "≥ 60 min", 7200.0: "≥ 60 min"}
    assert {d: length_bin(d) for d in edges} == edges
    conv = Conventions()
    hit = parse_answer("starts at 0.0s, ends at 10.0s")
    scores = [score_query(f"q{d}", [[0.0, 10.0]], d, hit, conv) for d in (30.0, 900.0, 950.0, 4000.0)]
    scores.append(score_query("absent", [], 900.0, parse_answer("starts at 5.0s, ends at 6.0s"), conv))
    bins = by_video_length(scores, conv)
    assert list(bins) == ["< 1 min", "1–10 min", "10–30 min", "30–60 min", "≥ 60 min"]
    assert [b["n"] for b in bins.values()] == [1, 0, 3, 0, 1]
    assert set(bins["10–30 min"]) == {"n", *aggregate(scores, conv)["metrics"]}  # every metric, per bin
    assert bins["10–30 min"]["R@1,IoU=0.5"] == 100.0 and bins["10–30 min"]["absent_acc"] == 0.0


def test_report_verdicts_for_controls_and_the_prior(runs, tmp_path):
    """A control run (records marked by vtg.eval.controls) is judged against the run listed before it, on their
    shared queries; --train adds the prior baselines and each non-control run's lead over the best of them."""
    gt = runs[0].parent / "gt.jsonl"
    rows = [json.loads(x) for x in gt.read_text().splitlines()]
    write_jsonl([dict(r, control="swapped_query") for r in rows[:4]], tmp_path / "swapped_q.jsonl")
    write_jsonl([dict(r, control="swapped_video") for r in rows[:4]], tmp_path / "swapped_v.jsonl")
    # the question swapped: q0-q3 answered [0, 1] (IoU 1/2, 1/3, 1/4, 1/5); the video swapped: answered as before
    lost = make_run(
        tmp_path, "lost", {f"q{i}": "starts at 0.0s, ends at 1.0s" for i in range(4)}, tmp_path / "swapped_q.jsonl"
    )
    same = make_run(
        tmp_path,
        "same",
        {f"q{i}": f"starts at 0.0s, ends at {2.0 + i:.1f}s" for i in range(4)},
        tmp_path / "swapped_v.jsonl",
    )
    write_jsonl(
        [{"id": "t", "video": "v.mp4", "duration": 10.0, "query": "q", "moments": [[0, 4]]}], tmp_path / "train.jsonl"
    )
    out = tmp_path / "rc"
    args = ["eval", "report", str(runs[0]), str(lost), str(same), str(runs[1]), "--out", str(out)]
    assert main([*args, "--train", str(tmp_path / "train.jsonl")]) == 0
    rep = json.loads((out / "report.json").read_text())
    q, v = rep["controls"]
    assert (q["control"], q["reference"], q["queries"], q["verdict"]) == ("question", "good", 4, "reads the question")
    assert q["own_mIoU"] == 100.0 and q["swapped_mIoU"] == pytest.approx(100 * (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4)
    assert (v["control"], v["reference"], v["verdict"]) == ("video", "good", "does not read the video")
    prior = rep["prior"]
    assert prior["moments"] == {"constant": [[0.0, 0.4]], "mean_location": [[0.0, 0.4]]}
    assert set(prior["runs"]) == {"good", "half"}  # control runs are not compared with the prior
    # the constant [0, 0.4 D] on q_i = [0, 2 + i], D = 10 + 10 i: IoU min(4+4i, 2+i) / max(…) = (2+i)/(4+4i)
    base = 100 * sum((2 + i) / (4 + 4 * i) for i in range(6)) / 6
    assert prior["runs"]["good"]["baselines"]["constant"]["mIoU"] == pytest.approx(base)
    assert prior["runs"]["good"]["gap"]["mIoU"]["gap"] == pytest.approx(100 - base)
    md = (out / "report.md").read_text()
    assert "## Controls and baselines" in md
    assert "- good reads the question (question control, 4 queries: mIoU 100.00 own vs 32.08 in lost)" in md
    assert "- good does not read the video (video control, 4 queries:" in md
    assert f"- good beats the prior by +{100 - base:.1f} mIoU points" in md
    assert "- half beats the prior by -" in md
    # without training records: the control verdicts only; a control first in line has nothing to be judged against
    assert main(["eval", "report", str(lost), str(runs[0]), "--out", str(tmp_path / "r3")]) == 0
    md = (tmp_path / "r3" / "report.md").read_text()
    assert "lost (question control): no verdict, no run before it shares its queries" in md and "prior" not in md
    assert main(["eval", "report", str(runs[0]), "--out", str(tmp_path / "r4"), "--train", str(tmp_path / "no")]) == 2
