"""vtg.eval.streaming: the streaming metrics on hand-made events, and `vtg eval run --strategy streaming` end to end
(the real CLI, the tiny random-init model, real videos) with an unreadable record kept in every denominator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vtg.eval.streaming import aggregate, by_video_length, final_spans, match_starts, score_stream


def ev(kind: str, mid: str, start: float, end: float | None, at: float) -> dict:
    return {"type": kind, "query_id": "q", "moment_id": mid, "moment": {"start": start, "end": end, "score": 0.9},
            "ongoing": end is None, "media_time": at}  # fmt: skip


def test_a_start_announced_exactly_tau_after_the_true_start_counts_and_a_later_one_does_not():
    truth = [[10.0, 20.0], [40.0, 50.0]]
    events = [
        ev("moment.started", "a", 10.0, None, 12.0),  # exactly τ = 2 s late: detected
        ev("moment.ended", "a", 10.0, 20.0, 22.0),
        ev("moment.started", "b", 40.0, None, 42.5),  # 2.5 s late: not detected by the start rule
        ev("moment.ended", "b", 40.0, 50.0, 54.0),
    ]
    s = score_stream("r", truth, 60.0, events, media_end=60.0)
    assert (s.started, s.start_hits, s.spans, s.span_hits) == (2, 1, 2, 2)  # both spans are right, though
    assert s.start_delays == [2.0, 2.5] and s.end_delays == [2.0, 4.0] and s.unended == 0
    m = aggregate([s])["metrics"]
    assert m["event_precision@2s"] == m["event_recall@2s"] == m["event_F1@2s"] == 50.0
    assert m["span_F1@IoU0.5"] == 100.0
    assert m["start_delay_median_s"] == pytest.approx(2.25) and m["end_delay_p90_s"] == pytest.approx(3.8)
    assert m["false_alarms_per_hour"] is None  # no record without the event: nothing to count over


def test_a_start_emitted_before_the_true_start_counts_within_tau_and_each_start_matches_once():
    assert match_starts([[10.0, 12.0], [11.0, 13.0]], [8.0, 9.0]) == [(0, 8.0), (1, 9.0)]  # 2 s early: both in
    assert match_starts([[10.0, 12.0], [11.0, 13.0]], [9.0]) == [(0, 9.0)]  # one start detects one moment
    assert match_starts([[10.0, 12.0], [11.0, 13.0]], [8.0, 8.5]) == [(0, 8.0)]  # 8.5 is 2.5 s before 11
    assert match_starts([[10.0, 12.0]], [7.99]) == []


def test_false_alarms_per_hour_on_absent_records_and_missing_events_are_misses():
    alarm = [ev("moment.started", "x", 100.0, None, 104.0), ev("moment.ended", "x", 100.0, 110.0, 114.0)]
    absent_noisy = score_stream("a1", [], 1800.0, alarm, media_end=1800.0)  # half an hour, one alarm
    absent_quiet = score_stream("a2", [], 1800.0, [], media_end=1800.0)
    missed = score_stream("p1", [[5.0, 9.0]], 60.0, [], media_end=60.0)  # no events: a miss
    failed = score_stream("p2", [[5.0, 9.0]], 60.0, None)  # unreadable video: a miss, not skipped
    assert failed.failed and failed.n_truth == 1 and failed.started == 0
    agg = aggregate([absent_noisy, absent_quiet, missed, failed])
    m, c = agg["metrics"], agg["counts"]
    assert m["false_alarms_per_hour"] == pytest.approx(1.0)  # 1 alarm over 1 hour of absent streams
    assert c["streams"] == 4 and c["failed"] == 1 and c["true_moments"] == 2 and c["false_alarms"] == 1
    assert m["event_recall@2s"] == 0.0 and m["event_precision@2s"] == 0.0  # the one start was a false alarm
    bins = by_video_length([absent_noisy, absent_quiet, missed, failed])
    assert bins["< 1 min"]["n"] == 0 and bins["1–10 min"]["n"] == 2 and bins["30–60 min"]["n"] == 2
    assert bins["30–60 min"]["false_alarms_per_hour"] == pytest.approx(1.0)
    assert bins["1–10 min"]["event_recall@2s"] == 0.0


def test_a_moment_ongoing_at_the_end_ends_at_the_stream_end_and_has_no_end_delay():
    events = [ev("moment.started", "a", 50.0, None, 52.0), ev("moment.updated", "a", 49.0, None, 54.0)]
    assert final_spans(events, 60.0) == {"a": (49.0, 60.0)}
    s = score_stream("r", [[49.5, 60.0]], 60.0, events, media_end=60.0)
    assert s.span_hits == 1 and s.start_delays == [2.5] and s.end_delays == [] and s.unended == 1
    m = aggregate([s])["metrics"]
    assert m["end_delay_median_s"] is None and m["start_delay_median_s"] == 2.5
    assert aggregate([s])["counts"]["unended"] == 1


def test_a_span_under_iou_half_is_no_match_and_gives_no_delay():
    events = [ev("moment.started", "a", 0.0, None, 11.0), ev("moment.ended", "a", 0.0, 30.0, 32.0)]
    s = score_stream("r", [[10.0, 14.0]], 60.0, events, media_end=60.0)
    assert s.start_hits == 1 and s.span_hits == 0 and s.start_delays == [] and s.spans == 1


# ---- end to end ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_world(tmp_path_factory):
    """Two 30-s long-world videos (one with the object, one without) and a third record whose video is garbage."""
    from vtg.data.synth_long import LongSynthConfig, generate_long

    out = tmp_path_factory.mktemp("stream_world")
    cfg = LongSynthConfig(durations_min=(0.5,), videos_per_length=2, absent_fraction=0.5, train_clips=0,
                          val_clips=0, event_s=(2.0, 8.0), clip_s=(4.0, 8.0))  # fmt: skip
    generate_long(cfg, out, workers=1)
    recs = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    (out / "videos/test/broken.mp4").write_bytes(b"not a video at all" * 100)
    recs.append({**recs[0], "id": "broken", "video": "videos/test/broken.mp4"})
    (out / "streams.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out, recs


def test_eval_run_streaming_writes_events_predictions_and_the_report(long_world, tiny_qwen25, tmp_path):
    world, recs = long_world
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"benchmark: synth-long\nrecords: {world / 'streams.jsonl'}\nmode: multi\nstrategy: streaming\n"
        "stream: {window_s: 8, stride_s: 4, min_window_s: 4}\nmax_new_tokens: 16\nbatch_size: 4\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    vtg = shutil.which("vtg", path=os.path.dirname(sys.executable))
    out = tmp_path / "run"
    proc = subprocess.run([vtg, "eval", "run", "--config", str(cfg), "--model", str(tiny_qwen25), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    events = {d["id"]: d for d in map(json.loads, (out / "events.jsonl").read_text().splitlines())}
    assert [p["id"] for p in preds] == [r["id"] for r in recs] and set(events) == {r["id"] for r in recs}
    broken = next(p for p in preds if p["id"] == "broken")
    assert broken["error"] and "broken.mp4" in broken["error"] and events["broken"]["error"]
    for r in recs[:2]:  # 30 s at a 4-s stride from 4 s on: windows at 4, 8, …, 28
        assert events[r["id"]]["windows"] == 7 and events[r["id"]]["media_end"] == pytest.approx(29.5)
        p = next(p for p in preds if p["id"] == r["id"])
        assert p["strategy"] == "streaming" and p["windows"] == 7 and not p["error"]
        for e in events[r["id"]]["events"]:
            assert e["type"].startswith("moment.") and 0 <= e["media_time"] <= 29.5
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["streaming"]
    assert s["counts"]["streams"] == 3 and s["counts"]["failed"] == 1  # the broken record is kept, as a miss
    assert s["counts"]["true_moments"] == 2 * len(recs[0]["moments"])
    assert metrics["counts"]["errors"] == 1 and metrics["counts"]["queries"] == 3
    from vtg.cli import main

    assert main(["eval", "report", str(out), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report/report.md").read_text()
    assert "## Streaming" in md and "| event_F1@2s |" in md and "| failed | 1 |" in md
    report = json.loads((tmp_path / "report/report.json").read_text())
    assert report["runs"][0]["streaming"]["counts"]["failed"] == 1


def test_merge_joins_the_shards_events(tmp_path):
    from vtg.eval.streaming import merge_events, read_events

    for i, rid in enumerate(("a", "b")):
        d = tmp_path / f"s{i}"
        d.mkdir()
        line = {"id": rid, "events": [ev("moment.started", "m", 1.0, None, 2.0)], "media_end": 9.0, "windows": 3,
                "skipped": 0, "error": None}  # fmt: skip
        (d / f"events.shard-{i}-of-2.jsonl").write_text(json.dumps(line) + "\n")
    assert merge_events([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m") == 2
    assert set(read_events(tmp_path / "m/events.jsonl")) == {"a", "b"}
    assert merge_events([tmp_path / "m2"], tmp_path / "m2") == 0  # not a streaming run: nothing written


def test_config_names_an_unknown_stream_key_and_streaming_refuses_an_endpoint(tmp_path):
    from vtg.errors import UserError
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import run_job

    with pytest.raises(UserError, match=r"stream: unknown key\(s\) \['windw_s'\]"):
        EvalConfig.from_dict(
            {"benchmark": "b", "records": "r.jsonl", "strategy": "streaming", "stream": {"windw_s": 3}}
        )
    cfg = EvalConfig.from_dict({"benchmark": "b", "records": "r.jsonl", "strategy": "streaming"})
    with pytest.raises(UserError, match="run it with --model"):
        run_job(cfg, out=tmp_path, endpoint="http://127.0.0.1:9/v1", progress=None)
