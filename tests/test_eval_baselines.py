"""Prior baselines (vtg.eval.baselines): fitted on hand-made training records, scored on hand-made test queries."""

import random

import pytest

from vtg.data.grammar import iou, iou_table
from vtg.data.records import Record
from vtg.eval import baselines as bl
from vtg.eval.metrics import Conventions


def _r(i: int, duration: float, moments, **extra) -> Record:
    return Record(f"r{i}", "v.mp4", duration, "q", [list(m) for m in moments], "t", "train", extra)


TRAIN = [
    _r(0, 10.0, [(0, 5)]),  # normalized [0, 0.5]
    _r(1, 20.0, [(0, 10)]),  # [0, 0.5]: durations differ, normalized time is the same
    _r(2, 10.0, [(5, 10)]),  # [0.5, 1]
    _r(3, 10.0, []),  # absent: says nothing about where moments are
    _r(4, 10.0, [(9, 10)], zero_length_window=True),  # flagged for the official table only: left out
]


def test_iou_table_is_grammar_iou():
    rng = random.Random(0)
    pts = [(rng.uniform(-1, 3), rng.uniform(-1, 3)) for _ in range(40)] + [(1.0, 1.0), (2.0, 2.0), (2.0, 1.0)]
    table = iou_table(pts, pts[::-1])
    assert table.shape == (len(pts), len(pts))
    assert all(
        table[i, j] == pytest.approx(iou(a, b), abs=1e-12) for i, a in enumerate(pts) for j, b in enumerate(pts[::-1])
    )


def test_fit_constant_and_mean_location():
    fitted = bl.fit(TRAIN)
    assert fitted.train_queries == 3 and set(fitted.moments) == {"constant", "mean_location"}  # no multi-moment record
    # [0, 0.5] has IoU 1, 1, 0 with the three: mean 2/3, the grid's best ([0, 0.55]: 0.62; [0, 1]: 0.5)
    assert fitted.moments["constant"] == ((0.0, 0.5),)
    ((s, e),) = fitted.moments["mean_location"]
    assert (s, e) == (pytest.approx(1 / 6), pytest.approx(2 / 3))
    assert fitted.answer("constant", 40.0) == [(0.0, 20.0)]


def test_count_prior_places_each_moment_by_its_rank():
    train = [
        _r(0, 10.0, [(6, 8), (1, 2)]),  # in time order: [0.1, 0.2], [0.6, 0.8]
        _r(1, 20.0, [(4, 6), (10, 14)]),  # [0.2, 0.3], [0.5, 0.7]
        _r(2, 10.0, [(0, 5)]),
    ]
    (a, b) = bl.fit(train).moments["count"]
    assert a == (pytest.approx(0.15), pytest.approx(0.25)) and b == (pytest.approx(0.55), pytest.approx(0.75))
    tie = [_r(0, 10.0, [(0, 1), (5, 6)]), _r(1, 10.0, [(2, 3)])]  # one record of each count: the smaller k
    assert bl.fit(tie).moments["count"] == ((pytest.approx(0.2), pytest.approx(0.3)),)


def test_scored_with_the_metric_code_and_the_gap_to_the_best():
    fitted = bl.fit(TRAIN)
    queries = [("t0", [[0.0, 4.0]], 10.0), ("t1", [[20.0, 40.0]], 40.0), ("t2", [], 10.0)]  # t2 absent
    scored = bl.score(fitted, queries, Conventions())
    # constant [0, 0.5]: t0 [0, 5] vs [0, 4] = 0.8, t1 [0, 20] vs [20, 40] = 0; mean [1/6, 2/3]: 0.35 and 0.2
    assert scored["constant"]["mIoU"] == pytest.approx(40.0) and scored["constant"]["R@1,IoU=0.5"] == 50.0
    assert scored["mean_location"]["mIoU"] == pytest.approx(27.5) and scored["mean_location"]["R@1,IoU=0.5"] == 0.0
    assert scored["constant"]["absent_acc"] == 0.0  # a prior always answers a moment
    gap = bl.prior_gap({"mIoU": 30.0, "R@1,IoU=0.5": 75.0}, scored)
    assert gap["mIoU"] == {"baseline": "constant", "prior": pytest.approx(40.0), "gap": pytest.approx(-10.0)}
    assert gap["R@1,IoU=0.5"]["gap"] == 25.0
    assert bl.prior_verdict(gap) == (
        "beats the prior by -10.0 mIoU points (best constant moment 40.0) "
        "and +25.0 R@1,IoU=0.5 points (best constant moment 50.0)"
    )


def test_no_training_moments_is_a_clear_error():
    from vtg.errors import UserError

    with pytest.raises(UserError, match="training records have no moments"):
        bl.fit([_r(0, 10.0, [])])
