"""QVHighlights metrics (Moment-DETR standalone_eval definitions): hand-computed cases and a file round trip."""

import json

import numpy as np
import pytest

from vtg.errors import UserError
from vtg.eval import qvhighlights as qv


def test_query_ap_each_truth_matched_once():
    gt = [[0, 10], [20, 30]]
    pred = [[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.7]]  # the duplicate is a false positive
    # tp 1,0,1 -> recall .5,.5,1, precision 1,.5,2/3 -> envelope 1, 2/3 -> AP .5*1 + .5*2/3
    assert qv.query_ap(gt, pred) == pytest.approx(np.full(10, 0.5 + 0.5 * 2 / 3))


def test_query_ap_thresholds_inclusive_and_score_order():
    # IoU exactly 0.5 counts at 0.5 (>=) and not at 0.55
    ap = qv.query_ap([[0, 20]], [[0, 10, 1.0]])
    assert ap[0] == 1.0 and ap[1:].sum() == 0
    # sorted by score: the correct window (score .9) is ranked first although listed second
    assert qv.query_ap([[20, 30]], [[0, 10, 0.1], [20, 30, 0.9]])[0] == 1.0


def _gt(qid, windows, duration=150):
    return {
        "qid": qid,
        "duration": duration,
        "relevant_windows": windows,
        "relevant_clip_ids": [],
        "saliency_scores": [],
    }


def test_r1_uses_first_listed_window_and_empty_predictions_counted():
    gt = [_gt(1, [[20, 30]]), _gt(2, [[0, 10]])]
    sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.1], [20, 30, 0.9]]}, {"qid": 2, "pred_relevant_windows": []}]
    res = qv.eval_submission(sub, gt)
    assert res["brief"]["MR-full-R1@0.5"] == 0.0  # first listed window of qid 1 misses
    assert res["brief"]["MR-full-mAP"] == 50.0  # qid 1 AP 1, qid 2 (empty) AP 0
    assert res["brief"]["MR-empty-predictions"] == 1
    ref = qv.eval_submission(sub, gt, reference_compat=True)
    assert ref["brief"]["MR-full-mAP"] == 100.0  # the reference silently drops qid 2


def test_top10_only_and_length_splits():
    windows = [[100, 110, 1.0]] * 10 + [[0, 10, 0.5]]  # the 11th window would be right
    gt = [_gt(1, [[0, 10]]), _gt(2, [[40, 52]])]
    sub = [{"qid": 1, "pred_relevant_windows": windows}, {"qid": 2, "pred_relevant_windows": [[40, 52, 1]]}]
    res = qv.eval_submission(sub, gt)
    assert res["full"]["MR-mAP"]["average"] == 50.0
    assert res["short"]["queries"] == 1 and res["short"]["MR-mAP"]["average"] == 0.0  # length 10: short
    assert res["middle"]["queries"] == 1 and res["middle"]["MR-mAP"]["average"] == 100.0  # 12 in (10, 30]
    assert res["long"]["MR-mAP"] is None and "MR-long-mAP" not in res["brief"]


def test_pr_curve_and_video2gif_ap():
    p, r = qv.pr_curve(np.array([1.0, 0.0]), np.array([0.5, 0.5]))  # a tie: one threshold
    assert p.tolist() == [0.5, 1.0] and r.tolist() == [1.0, 0.0]
    assert qv.video2gif_ap(np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.1, 0.9, 0.5, 0.2])) == 0.5
    assert qv.video2gif_ap(np.zeros(3), np.ones(3)) == 0.0 and qv.video2gif_ap(np.ones(3), np.zeros(3)) == 1.0


def _hl_gt():
    # 8 s -> 4 clips; clip 1 scores (4, 2, 0), clip 2 (3, 4, 1)
    return {
        "qid": 5,
        "duration": 8,
        "relevant_windows": [[2, 6]],
        "relevant_clip_ids": [1, 2],
        "saliency_scores": [[4, 2, 0], [3, 4, 1]],
    }


def test_highlight_hand_computed():
    res = qv.eval_highlight({5: [0.1, 0.9, 0.5, 0.2]}, {5: _hl_gt()})
    # VeryGood: annotator APs 1 (clip 1 ranked first), .5 (clip 2 ranked second), 0 (no positive) -> 50
    assert res["HL-min-VeryGood"] == {"HL-mAP": 50.0, "HL-Hit1": 100.0}
    assert res["HL-min-Good"] == {"HL-mAP": 50.0, "HL-Hit1": 100.0}
    assert qv.eval_highlight({5: [0.9, 0.1, 0.1, 0.1]}, {5: _hl_gt()})["HL-min-VeryGood"]["HL-Hit1"] == 0.0
    # too few scores are zero-padded; an empty list is a counted miss, not a crash
    assert qv.eval_highlight({5: []}, {5: _hl_gt()})["empty_saliency"] == 1


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="must match"):
        qv.eval_submission([{"qid": 1, "pred_relevant_windows": []}], [_gt(2, [[0, 1]])])
    bad = dict(_hl_gt(), relevant_clip_ids=[1, 9])
    with pytest.raises(UserError, match="relevant_clip_ids"):
        qv.gt_clip_scores(bad)
    p = tmp_path / "x.jsonl"
    p.write_text('{"qid": 1}\n{oops\n')
    with pytest.raises(UserError, match="line 2"):
        qv.load_jsonl(p)


def test_file_round_trip_through_cli(tmp_path, capsys):
    from vtg.cli import main

    gt = [_hl_gt(), _gt(6, [[0, 10], [20, 30]])]
    sub = [
        {"qid": 5, "pred_relevant_windows": [[2, 6, 0.9]], "pred_saliency_scores": [0.1, 0.9, 0.5, 0.2]},
        {
            "qid": 6,
            "pred_relevant_windows": [[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.7]],
            "pred_saliency_scores": [0.0] * 75,
        },
    ]
    (tmp_path / "gt.jsonl").write_text("".join(json.dumps(d) + "\n" for d in gt))
    (tmp_path / "sub.jsonl").write_text("".join(json.dumps(d) + "\n" for d in sub))
    rc = main(
        [
            "eval",
            "score",
            "--format",
            "qvhighlights",
            "--pred",
            str(tmp_path / "sub.jsonl"),
            "--gt",
            str(tmp_path / "gt.jsonl"),
            "--json",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["brief"]["MR-full-mAP"] == pytest.approx(100 * (1 + 0.5 + 0.5 * 2 / 3) / 2, abs=0.01)
    assert res["brief"]["MR-full-R1@0.7"] == 100.0
    # qid 6 has no saliency truth: every annotator AP 0; qid 5 as in the hand-computed case
    assert res["brief"]["HL-min-VeryGood-mAP"] == pytest.approx(25.0)
