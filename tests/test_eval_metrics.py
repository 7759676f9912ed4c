"""Hand-computed metric tables for vtg.eval.metrics (R@K, mIoU, F1, absent accuracy, conventions)."""

import pytest

from vtg.data.grammar import parse_answer
from vtg.data.records import Record
from vtg.errors import UserError
from vtg.eval.metrics import Conventions, aggregate, score_predictions, score_query

GE, GT = Conventions(), Conventions(threshold_op=">")


def one(text, truth, duration=100.0, conv=GE):
    return score_query("q", truth, duration, parse_answer(text), conv)


@pytest.mark.parametrize(
    "text,truth,conv,expected",
    [
        ("starts at 0.0s, ends at 10.0s", [[0, 20]], GE, 0.5),  # tie exactly at 0.5
        ("starts at 5.0s, ends at 5.0s", [[5, 5.0001]], GE, 0.0),  # zero-length prediction, no overlap length
        ("starts at 10.0s, ends at 0.0s", [[0, 10]], GE, 1.0),  # reversed, swapped
        ("starts at 10.0s, ends at 0.0s", [[0, 10]], Conventions(reversed="fail"), 0.0),
        (
            "starts at 25.0s, ends at 40.0s",
            [[24.3, 30.4]],
            GE,
            (30.4 - 25) / (40 - 24.3),
        ),  # docs/rewards-and-metrics.md: 0.34
        ("not present", [[0, 10]], GE, 0.0),
        ("gibberish", [[0, 10]], GE, 0.0),
    ],
)
def test_top1_iou(text, truth, conv, expected):
    assert one(text, truth, conv=conv).top1_iou == pytest.approx(expected)


def test_design_clamp_example():
    s_off = one("starts at 25.0s, ends at 40.0s", [[24.3, 30.4]], duration=30.96)
    s_on = one("starts at 25.0s, ends at 40.0s", [[24.3, 30.4]], duration=30.96, conv=Conventions(clamp=True))
    assert round(s_off.top1_iou, 2) == 0.34
    assert round(s_on.top1_iou, 2) == 0.81  # (30.4 - 25) / (30.96 - 24.3)
    assert s_on.clamped == 1 and s_off.clamped == 0


def test_prediction_beyond_duration_clamped_to_nothing():
    s = one("starts at 50.0s, ends at 60.0s", [[10, 20]], duration=30, conv=Conventions(clamp=True))
    assert s.top1_iou == 0.0 and s.clamped == 1
    # an emptied moment is an invalid prediction, not dropped: it keeps its rank and counts against F1's precision
    two = "starts at 50.0s, ends at 60.0s; starts at 10.0s, ends at 20.0s"
    s = one(two, [[10, 20]], duration=30, conv=Conventions(clamp=True))
    assert s.ious == [0.0, 1.0] and s.top1_iou == 0.0 and s.f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize("theta", [0.3, 0.5, 0.7])
def test_ties_at_theta(theta):
    # [0, 10θ] inside [0, 10]: IoU is exactly θ in floating point for these thresholds.
    s = one(f"starts at 0.0s, ends at {10 * theta:.1f}s", [[0, 10]])
    assert s.top1_iou == theta
    assert s.hit(1, theta, GE) and not s.hit(1, theta, GT)


def test_table_r_at_k_miou_and_denominators():
    rows = [
        ("a", "starts at 0.0s, ends at 10.0s", [[0, 10]]),  # IoU 1
        ("b", "starts at 0.0s, ends at 5.0s", [[0, 10]]),  # 0.5
        ("c", "starts at 0.0s, ends at 3.0s", [[0, 10]]),  # 0.3
        ("d", "starts at 50.0s, ends at 60.0s; starts at 0.0s, ends at 8.0s", [[0, 10]]),  # top1 0, top5 0.8
        ("e", "no idea", [[0, 10]]),  # parse failure: 0, in denominator
        ("f", "not present", [[0, 10]]),  # empty answer: 0
        ("g", "not present", []),  # absent, correct
        ("h", "starts at 1.0s, ends at 2.0s", []),  # absent, wrong
    ]
    scores = [score_query(i, t, 100.0, parse_answer(x), GE) for i, x, t in rows]
    res = aggregate(scores, GE)
    m, c = res["metrics"], res["counts"]
    assert m["R@1,IoU=0.3"] == pytest.approx(100 * 3 / 6)
    assert m["R@1,IoU=0.5"] == pytest.approx(100 * 2 / 6)
    assert m["R@1,IoU=0.7"] == pytest.approx(100 * 1 / 6)
    assert m["R@5,IoU=0.7"] == pytest.approx(100 * 2 / 6)  # d's second moment
    assert m["mIoU"] == pytest.approx(100 * (1 + 0.5 + 0.3) / 6)
    assert m["absent_acc"] == 50.0
    assert c["parse_failures"] == 1 and c["said_absent_on_present"] == 1 and c["present"] == 6 and c["absent"] == 2
    # F1@0.5: a 1, b 1, c 0, d 2PR/(P+R) with P=1/2 R=1 -> 2/3, e f 0, g 1, h 0
    assert m["F1@0.5"] == pytest.approx(100 * (1 + 1 + 2 / 3 + 1) / 8)
    gt_res = aggregate(scores, GT)["metrics"]
    assert gt_res["R@1,IoU=0.5"] == pytest.approx(100 * 1 / 6) and gt_res["R@1,IoU=0.3"] == pytest.approx(100 * 2 / 6)


def test_multi_moment_top1_vs_best_truth():
    s = one("starts at 40.0s, ends at 50.0s", [[0, 10], [40, 50]])
    assert s.top1_iou == 1.0 and s.f1 == pytest.approx(2 / 3)


def _rec(i, moments, duration=30.0):
    return Record(id=i, video="v.mp4", duration=duration, query="q", moments=moments)


def test_score_predictions_missing_unknown_and_error_lines():
    recs = [_rec("a", [[0, 10]]), _rec("b", [[0, 10]])]
    preds = {"a": {"id": "a", "text": "starts at 0.0s, ends at 10.0s"}}
    with pytest.raises(UserError, match="no prediction"):
        score_predictions(recs, preds, GE)
    _, res = score_predictions(recs, preds, GE, allow_missing=True)
    assert res["metrics"]["R@1,IoU=0.5"] == 50.0 and res["counts"]["missing"] == 1
    with pytest.raises(UserError, match="not in the ground truth"):
        score_predictions(recs, {**preds, "zz": {"text": ""}}, GE, allow_missing=True)
    preds["b"] = {"id": "b", "text": None, "error": "video not found"}
    _, res = score_predictions(recs, preds, GE)
    assert res["counts"]["errors"] == 1 and res["metrics"]["parse_failure_rate"] == 50.0
    # a line with moments only (another system's output) is scored as those moments
    _, res = score_predictions(recs, {"a": {"moments": [[0, 5]]}, "b": {"moments": []}}, GE)
    assert res["metrics"]["mIoU"] == 25.0


def test_conventions_reject_nonsense():
    with pytest.raises(UserError, match="threshold_op"):
        Conventions(threshold_op="=>")
    with pytest.raises(UserError, match="reversed"):
        Conventions(reversed="ignore")
