"""Hand-worked values for vtg.eval.multispan (VUE-TR's set-level definitions) and their place in the metrics table."""

from __future__ import annotations

import numpy as np
import pytest

from vtg.data.grammar import parse_answer
from vtg.eval.metrics import Conventions, aggregate, score_query
from vtg.eval.multispan import (
    THRESHOLDS,
    SpanScore,
    auc,
    merge_spans,
    precision_recall,
    round_outward,
    score_spans,
    set_iou,
    summarize,
)


def test_thresholds_are_the_references_linspace():
    assert np.array_equal(np.array(THRESHOLDS), np.linspace(0, 1, 101))


def test_round_outward_and_merge():
    assert round_outward([[3.2, 7.01], [-0.5, 2.0], [4.0, 4.0]]) == [[3.0, 8.0], [-1.0, 2.0], [4.0, 4.0]]
    assert merge_spans([[8, 12], [0, 5], [5, 6], [11, 20]]) == [[0.0, 6.0], [8.0, 20.0]]  # touching spans join


@pytest.mark.parametrize(
    "pred, truth, expected",
    [
        ([[0, 10]], [[0, 10]], 1.0),
        ([[0, 5], [3, 12]], [[0, 10]], 10 / 12),  # overlapping predictions merged: |pred| = 12, not 14
        ([[0, 5], [5, 10]], [[0, 10]], 1.0),  # touching predictions merged
        ([[5, 25]], [[0, 10], [20, 30]], 10 / 30),  # two truths: overlap 5 + 5, union 20 + 20 - 10
        ([[30, 20], [0, 10]], [[0, 10]], 1.0),  # a reversed span is dropped
        ([[30, 20]], [[0, 10]], 0.0),  # nothing left after dropping
        ([], [[0, 10]], 0.0),
        ([], [], 1.0),  # no truth, no answer: right
        ([[1, 2]], [], 0.0),
    ],
)
def test_set_iou(pred, truth, expected):
    assert set_iou(pred, truth) == pytest.approx(expected)


@pytest.mark.parametrize(
    "pred, truth, expected",
    [
        ([[0, 5], [8, 12]], [[0, 10]], (7 / 9, 7 / 10)),
        ([[0, 10]], [[0, 10], [20, 30]], (1.0, 0.5)),
        # the reference's walk in the order written: an unsorted answer finds no overlap (sorted, it would be 10)
        ([[30, 20], [0, 10]], [[0, 10]], (0.0, 0.0)),
        # overlapping predictions are counted twice, so recall can pass 1: reproduced as is
        ([[0, 6], [4, 10]], [[0, 10]], (1.0, 1.2)),
        ([], [[0, 10]], (None, 0.0)),  # no predicted length: not in the precision mean
        ([], [], (1.0, None)),  # the V2 script's "both empty" rule
        ([[1, 3]], [], (0.0, None)),
    ],
)
def test_precision_recall(pred, truth, expected):
    p, r = precision_recall(pred, truth)
    assert (p, r) == pytest.approx(expected) if None not in expected else (p, r) == expected


def test_score_spans_rounds_predictions_and_fails_to_nothing():
    assert score_spans([[0.4, 9.6]], [[0, 10]]) == SpanScore(1.0, 1.0, 1.0)  # [0, 10] after rounding, not 0.92
    assert score_spans([], []) == SpanScore(1.0, 1.0, None)
    assert score_spans([[3, 4]], [], failed=True) == SpanScore(0.0, 0.0, None)  # no credit for a failure
    assert score_spans([[3, 4]], [[3, 4]], failed=True) == SpanScore(0.0, None, 0.0)


@pytest.mark.parametrize(
    "values, strict, expected",
    [
        ([1.0], True, 0.995),  # > t for t < 1 only: 99 full steps and half the last
        ([1.0], False, 1.0),
        ([0.5], True, 0.495),  # > t for t = 0 .. 0.49
        ([0.5], False, 0.505),  # >= t for t = 0 .. 0.5
        ([0.0], True, 0.0),
        ([0.0], False, 0.005),
        ([], True, 0.0),  # vtg: 0 where the reference gives NaN
    ],
)
def test_auc(values, strict, expected):
    assert auc(values, strict=strict) == pytest.approx(expected)


def test_summarize():
    m = summarize([SpanScore(1.0, 1.0, 1.0), SpanScore(0.0, None, 0.0)])
    assert m["set_mIoU"] == 50.0
    assert m["set_IoU_AUC"] == pytest.approx(100 * (0.5 * 0.99 + 0.25 * 0.01))  # 0 > t never, 1 > t but at t = 1
    assert m["set_P_AUC"] == pytest.approx(100.0)  # the second query has no predicted length
    assert m["set_R_AUC"] == pytest.approx(100 * (0.0075 + 0.5 * 0.99))  # both >= 0, then half


# ---------------------------------------------------------------- in the metrics table


GE = Conventions()


def _scores(rows, conv=GE):
    return [score_query(str(i), truth, 100.0, parse_answer(text), conv) for i, (text, truth) in enumerate(rows)]


MULTI = [
    ("starts at 0.0s, ends at 10.0s; starts at 20.0s, ends at 30.0s", [[0, 10], [20, 30]]),  # IoU 1
    ("starts at 5.4s, ends at 25.0s", [[0, 10], [20, 30]]),  # [5, 25]: IoU 1/3, P 1/2, R 1/2
    ("not present", []),  # right: IoU 1, P 1
    ("gibberish", []),  # a parse failure earns nothing on an absent query
]


def test_aggregate_adds_set_keys_only_with_several_true_spans():
    plain = aggregate(_scores([("starts at 0.0s, ends at 10.0s", [[0, 10]]), ("not present", [])]), GE)
    plain = plain["metrics"]
    assert not any(k.startswith("set_") for k in plain)
    m = aggregate(_scores(MULTI), GE)["metrics"]
    keys = list(m)
    assert keys[: keys.index("parse_failure_rate") + 1] == list(plain)  # every existing key, in its place
    assert keys[keys.index("parse_failure_rate") + 1 :] == ["set_mIoU", "set_IoU_AUC", "set_P_AUC", "set_R_AUC"]
    assert m["set_mIoU"] == pytest.approx(100 * (1 + 1 / 3 + 1 + 0) / 4)
    assert m["set_P_AUC"] == pytest.approx(100 * auc([1.0, 0.5, 1.0, 0.0], strict=False))
    assert m["set_R_AUC"] == pytest.approx(100 * auc([1.0, 0.5], strict=False))
    assert m["R@1,IoU=0.5"] == 50.0  # the existing metrics are untouched: first moment [0, 10] hits, [5, 25] not


def test_set_keys_ignore_the_reversed_and_clamp_conventions():
    rows = MULTI + [("starts at 30.0s, ends at 20.0s; starts at 0.0s, ends at 10.0s", [[0, 10], [20, 30]])]
    swap = aggregate(_scores(rows), GE)["metrics"]
    fail = aggregate(_scores(rows, Conventions(reversed="fail", clamp=True)), GE)["metrics"]
    assert {k: v for k, v in swap.items() if k.startswith("set_")} == {
        k: v for k, v in fail.items() if k.startswith("set_")
    }
    # VUE-TR drops the reversed [30, 20] for the IoU: [0, 10] of [[0, 10], [20, 30]] is 1/2
    assert swap["set_mIoU"] == pytest.approx(100 * (1 + 1 / 3 + 1 + 0 + 0.5) / 5)
