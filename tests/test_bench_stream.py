"""bench/stream's scoring and table, without a model: the offline predictions scored by the streaming span rule
(pooled, absent streams and failed records included), each target judged from its numbers, and the committed result
rendered."""

from __future__ import annotations

import pytest

from bench.common import read_json
from bench.stream.run import HERE, pooled_span_f1, render, targets


def test_offline_predictions_are_scored_by_the_pooled_span_rule():
    records = [
        {"id": "hit", "moments": [[10.0, 20.0]]},
        {"id": "two", "moments": [[5.0, 9.0], [300.0, 310.0]]},  # one of two found, plus a wrong one
        {"id": "low", "moments": [[50.0, 60.0]]},  # IoU 0.3: not a match at 0.5
        {"id": "absent", "moments": []},  # a moment named where none is: a false positive
        {"id": "failed", "moments": [[70.0, 80.0]]},  # an error line names nothing: a miss
        {"id": "missing", "moments": [[90.0, 95.0]]},  # no prediction line at all: a miss
    ]
    preds = {
        "hit": {"moments": [[10.0, 20.0]]},
        "two": {"moments": [[5.0, 9.0], [100.0, 120.0]]},
        "low": {"moments": [[50.0, 53.0]]},
        "absent": {"moments": [[1.0, 2.0]]},
        "failed": {"moments": [[70.0, 80.0]], "error": "video unreadable"},
    }
    got = pooled_span_f1(records, preds)
    assert (got["moments"], got["true_moments"]) == (5, 6)
    assert got["precision"] == pytest.approx(100 * 2 / 5)
    assert got["recall"] == pytest.approx(100 * 2 / 6)
    assert got["F1"] == pytest.approx(2 * 40.0 * (200 / 6) / (40.0 + 200 / 6))


def _result(event_f1, offline_f1, delay, alarms, rtf, growth, freed) -> tuple[dict, dict]:
    acc = {"10 min": {"streaming": {"event_F1@2s": event_f1, "start_delay_median_s": delay,
                                    "false_alarms_per_hour": alarms},
                      "offline_coarse_to_fine": {"F1": offline_f1}}}  # fmt: skip
    srv = {"throughput": [{"streams": 1, "rtf_min": rtf}, {"streams": 2, "rtf_min": rtf / 2}],
           "memory": {"growth_5_to_60_pct": growth},
           "disconnects": {"websocket": {"freed_after_s": freed}}}  # fmt: skip
    return acc, srv


def test_targets_are_judged_from_their_numbers():
    good = targets(*_result(30.0, 38.0, 6.0, 0.5, 3.0, 2.0, 0.4), window_s=20.0, stride_s=2.0)
    assert all(t["met"] for t in good.values()), good
    assert good["one stream at >= 1x real time"]["streams_at_1x"] == 2
    assert good["one stream at >= 1x real time"]["most_tried"] == 2
    bad = targets(*_result(10.0, 38.0, 23.0, 110.0, 0.8, 12.0, None), window_s=20.0, stride_s=2.0)
    assert not any(t["met"] for t in bad.values()), bad
    assert bad["one stream at >= 1x real time"]["streams_at_1x"] == 0


def test_committed_result_renders():
    path = HERE / "results.json"
    if not path.exists():
        pytest.skip("bench/stream has no committed result yet")
    text = render(read_json(path))
    assert "event F1 @2s" in text and "Targets:" in text and "Command:" in text
