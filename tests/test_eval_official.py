"""Official tables (vtg.eval.official) against the official evaluators' own output on the same files
(tests/fixtures/official/README.md: the inputs, how the scripts were run, their repo, path and commit)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from vtg.data.adapters import convert_files
from vtg.errors import UserError
from vtg.eval import official
from vtg.eval.config import EvalConfig
from vtg.eval.predictions import read_predictions

FIX = Path(__file__).resolve().parent / "fixtures" / "official"
GT = {
    "ego4d_nlq": "nlq_val.json",
    "mad": "MAD_val.json",
    "vue_tr": "VUE-TR_ground_truth.json",
    "vue_tr_v2": "VUE-TRv2_ground_truth.json",
}
FORMAT = {"ego4d_nlq": "ego4d-nlq", "mad": "mad", "vue_tr": "vue-tr", "vue_tr_v2": "vue-tr"}
SCORED = [  # (benchmark, input file the official script scored without failing)
    ("ego4d_nlq", "submission.json"),
    ("ego4d_nlq", "submission_nan.json"),
    ("ego4d_nlq", "from_run.json"),
    ("mad", "predictions.jsonl"),
    ("vue_tr", "results_vtg.json"),
    ("vue_tr", "from_run.json"),
    ("vue_tr_v2", "results_vtg.json"),
    ("vue_tr_v2", "from_run.json"),
]


def golden(bench: str, name: str) -> dict:
    doc = json.loads((FIX / bench / "official_output.json").read_text())
    assert doc["source"].startswith(official.get(bench).source.split(" @ ")[0])
    return doc["files"][name]


def official_values(bench: str, out: dict) -> dict[str, float]:
    """The official numbers under vtg's keys (MAD's script returns a K x θ matrix)."""
    if bench != "mad":
        return out["values"]
    return {
        f"Recall@{k},mIoU@{t:.1f}": out["values"]["percent"][i][j]
        for i, k in enumerate(official.MAD_KS)
        for j, t in enumerate(official.MAD_THRESHOLDS)
    }


def same(a: float, b: float, tol: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


@pytest.mark.parametrize(("bench", "name"), SCORED)
def test_official_table_equals_the_official_script(bench, name):
    out = golden(bench, name)
    assert out["rc"] == 0
    result = official.score_files(bench, FIX / bench / name, FIX / bench / GT[bench])
    want = official_values(bench, out)
    assert list(result["metrics"]) == list(want)
    # MAD's script computes in float32: vtg's float32 numbers are the same floats; the others to 1e-9
    tol = 0.0 if bench == "mad" else 1e-9
    assert all(same(result["metrics"][k], v, tol) for k, v in want.items()), (result["metrics"], want)


def printed_cells(bench: str, stdout: str) -> list[str]:
    if bench == "ego4d_nlq":  # the terminaltables value row
        rows = [r for r in stdout.splitlines() if r.startswith("|") and re.search(r"\d|nan", r)]
        return [c.strip() for c in rows[-1].strip("|").split("|")]
    m = re.search(r"Precision: ([\d.]+)%, Recall: ([\d.]+)%, IoU: ([\d.]+)%", stdout)
    return list(m.groups())


@pytest.mark.parametrize(("bench", "name"), [s for s in SCORED if s[0] != "mad"])
def test_rounded_like_the_printed_table(bench, name):
    out = golden(bench, name)
    result = official.score_files(bench, FIX / bench / name, FIX / bench / GT[bench])
    digits = 1 if bench == "vue_tr" else 2  # VUE_TR prints one decimal, the V2 script two
    assert [f"{v:.{digits}f}" for v in result["metrics"].values()] == printed_cells(bench, out["stdout"])


def test_nlq_strict_threshold_denominator_and_nan_are_the_scripts():
    out = golden("ego4d_nlq", "submission.json")
    assert "Evaluated: 12 / 13 instances" in out["stdout"]  # one query left out, one submitted twice
    result = official.score_files("ego4d_nlq", FIX / "ego4d_nlq/submission.json", FIX / "ego4d_nlq/nlq_val.json")
    assert result["counts"] == {"evaluated": 12, "gt_queries": 13, "nan_iou": 0}
    assert official.nlq_iou([10.0, 13.0], [10.0, 20.0]) == 0.3  # exactly at θ: not > 0.3
    assert official.nlq_iou([20.0, 10.0], [10.0, 20.0]) == 0.0  # reversed: overlaps nothing
    assert math.isnan(official.nlq_iou([5.0, 5.0], [5.0, 5.0]))
    assert (
        golden("ego4d_nlq", "submission_nan.json")["values"]["mIoU"]
        != golden("ego4d_nlq", "submission_nan.json")["values"]["mIoU"]
    )  # NaN in the script too


def test_nlq_empty_window_list_fails_as_the_script_does():
    out = golden("ego4d_nlq", "submission_empty.json")
    assert out["rc"] != 0 and "IndexError" in out["stderr_tail"]
    with pytest.raises(UserError, match="non-empty list"):
        official.score_files("ego4d_nlq", FIX / "ego4d_nlq/submission_empty.json", FIX / "ego4d_nlq/nlq_val.json")


@pytest.mark.parametrize("bench", list(GT))
def test_run_path_builds_the_file_the_script_scored(bench):
    """From vtg records (converted from the same release file) and prediction lines: the submission vtg writes is
    the one the official script scored, and its table is the script's."""
    records, _ = convert_files(FORMAT[bench], [FIX / bench / GT[bench]])
    preds = read_predictions(FIX / bench / "predictions.jsonl")
    result, submission = official.score_run(bench, records, preds)
    if bench == "mad":
        want = official_values(bench, golden(bench, "predictions.jsonl"))
    else:
        assert submission == json.loads((FIX / bench / "from_run.json").read_text())
        want = official_values(bench, golden(bench, "from_run.json"))
    assert all(same(result["metrics"][k], v, 1e-9) for k, v in want.items())
    assert result["label"].startswith("official (") and result["source"] == official.get(bench).source


def test_nlq_conversion_keeps_zero_length_windows_flagged():
    records, report = convert_files("ego4d-nlq", [FIX / "ego4d_nlq/nlq_val.json"])
    zero = [r for r in records if r.extra.get("zero_length_window")]
    assert [r.moments for r in zero] == [[[55.5, 55.5]], [[0.0, 0.0]]]
    assert "2 zero-length response window(s) kept" in report.summary()
    past = next(r for r in records if r.extra["official_moments"] == [[470.0, 486.0]])
    assert past.moments == [[470.0, 480.0]]  # clamped for vtg; the official table scores 486 as written


def test_vtg_metrics_leave_zero_length_windows_out_and_say_so():
    from vtg.eval.metrics import Conventions, score_predictions

    records, _ = convert_files("ego4d-nlq", [FIX / "ego4d_nlq/nlq_val.json"])
    preds = read_predictions(FIX / "ego4d_nlq/predictions.jsonl")
    scores, result = score_predictions(records, preds, Conventions(threshold_op=">"), allow_missing=True)
    assert result["counts"]["zero_length_excluded"] == 2
    assert result["counts"]["queries"] == len(records) - 2 == len(scores)


def test_mad_float32_and_nms_rules():
    cands = np.array([[0, 10], [0.5, 10.5], [20, 30]], dtype=np.float32)
    assert official.mad_nms(cands).tolist() == [[0, 10], [20, 30]]  # IoU 0.905 > 0.3: suppressed
    # float32 decides: in float64 this IoU is just under 0.1, in the script's float32 just over
    truth = np.array([2500.25, 2503.75], dtype=np.float32)
    tenth = official.mad_iou(np.array([[2500.25, 2500.6]], dtype=np.float32), truth)
    assert tenth.dtype == np.float32 and bool(tenth[0] >= np.float32(0.1)) and (2500.6 - 2500.25) / 3.5 < 0.1
    assert np.isnan(official.mad_iou(np.array([[5.0, 5.0]], dtype=np.float32), np.array([5.0, 5.0], np.float32)))[0]


def test_score_cli_prints_the_labelled_official_table(capsys, tmp_path):
    from vtg.cli import main

    gt, pred = FIX / "vue_tr_v2/VUE-TRv2_ground_truth.json", FIX / "vue_tr_v2/results_vtg.json"
    assert main(["eval", "score", "--official", "vue_tr_v2", "--pred", str(pred), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("official (VUE_TR_V2/qa_eval.py) [bytedance/vidi VUE_TR_V2/qa_eval.py @ fc30c87]")
    assert out[1].split() == ["Precision:", "58.40"]
    short = tmp_path / "gt.json"  # a ground truth without some submitted query: the script's KeyError
    short.write_text(json.dumps(json.loads(gt.read_text())[:3]))
    assert main(["eval", "score", "--official", "vue_tr_v2", "--pred", str(pred), "--gt", str(short)]) != 0
    assert "query_id 3 is not in the ground truth" in capsys.readouterr().err


def test_config_turns_the_official_table_on_and_refuses_unknown_names():
    cfg = EvalConfig.load(Path(__file__).resolve().parents[1] / "recipes/eval/ego4d_nlq.yaml")
    assert cfg.scoring.official == "ego4d_nlq"
    for name in ("mad", "vue_tr", "vue_tr_v2"):
        assert (
            EvalConfig.load(Path(__file__).resolve().parents[1] / f"recipes/eval/{name}.yaml").scoring.official == name
        )
    with pytest.raises(UserError, match="scoring.official must be one of"):
        EvalConfig.from_dict({"benchmark": "x", "records": "r.jsonl", "scoring": {"official": "charades"}})


def test_run_metrics_put_the_official_table_first(tmp_path):
    from vtg.data.records import write_jsonl
    from vtg.eval.job import _score_run

    records, _ = convert_files("vue-tr", [FIX / "vue_tr_v2/VUE-TRv2_ground_truth.json"])
    write_jsonl(records, tmp_path / "records.jsonl")
    cfg = EvalConfig.from_dict(
        {"benchmark": "vue_tr_v2", "records": str(tmp_path / "records.jsonl"), "scoring": {"official": "vue_tr_v2"}}
    )
    summary = _score_run(cfg, records, FIX / "vue_tr_v2/predictions.jsonl", tmp_path)
    assert list(summary) == ["official", "vtg"]
    table = summary["official"]["official (VUE_TR_V2/qa_eval.py)"]
    assert table["IoU"] == pytest.approx(golden("vue_tr_v2", "from_run.json")["values"]["IoU"], abs=1e-9)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert list(saved)[0] == "official" and saved["official"]["source"].startswith("bytedance/vidi")
    assert json.loads((tmp_path / "official_vue_tr_v2_input.json").read_text()) == json.loads(
        (FIX / "vue_tr_v2/from_run.json").read_text()
    )


def test_report_shows_the_official_table_first(tmp_path):
    from vtg.data.records import write_jsonl
    from vtg.eval.report import build_report, markdown

    records, _ = convert_files("ego4d-nlq", [FIX / "ego4d_nlq/nlq_val.json"])
    write_jsonl(records, tmp_path / "records.jsonl")
    cfg = EvalConfig.load(Path(__file__).resolve().parents[1] / "recipes/eval/ego4d_nlq.yaml")
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text((FIX / "ego4d_nlq/predictions.jsonl").read_text())
    meta = {"benchmark": "ego4d_nlq", "records": str(tmp_path / "records.jsonl"), "config": cfg.to_dict()}
    (run / "run.json").write_text(json.dumps({**meta, "shard": None, "limit": None}))
    report = build_report([run])
    text = markdown(report)
    assert text.index("## official (evaluate_ego4d_nlq.py)") < text.index("## vtg metrics")
    want = golden("ego4d_nlq", "from_run.json")["values"]["Rank@1 mIoU@0.3"]
    assert f"| Rank@1 mIoU@0.3 | {want:.2f} |" in text
    assert report["runs"][0]["counts"]["zero_length_excluded"] == 2


def test_mad_release_file_keeps_the_loaders_stale_moment(tmp_path):
    """lib/data/datasets/mad.py:147-148: an entry with start >= end gets the previous entry's moment."""
    entry = {"movie": "m", "sentence": "s", "movie_duration": 100.0}
    data = {"1": {**entry, "ext_timestamps": [-3.0, 120.0]}, "2": {**entry, "ext_timestamps": [50.0, 40.0]}}
    (tmp_path / "MAD_test.json").write_text(json.dumps(data))
    gt = official.mad_gt_from_file(tmp_path / "MAD_test.json")["moments"]
    assert gt["1"].tolist() == gt["2"].tolist() == [0.0, 100.0] and gt["2"].dtype == np.float32
    (tmp_path / "bad.json").write_text(json.dumps({"2": data["2"]}))
    with pytest.raises(UserError, match="first query"):
        official.mad_gt_from_file(tmp_path / "bad.json")
