"""predictions.jsonl I/O (truncated tails, duplicates), shards and merge, eval configs, `vtg eval score` on records."""

import json
from pathlib import Path

import pytest

from vtg.cli import main
from vtg.data.records import write_jsonl
from vtg.errors import UserError
from vtg.eval.config import EvalConfig
from vtg.eval.predictions import Appender, make_line, merge, parse_shard, read_predictions, take_shard

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "eval"


def test_truncated_tail_is_ignored_then_repaired(tmp_path):
    p = tmp_path / "predictions.jsonl"
    with Appender(p) as app:
        app.write([make_line("a", "starts at 1.0s, ends at 2.0s", latency_s=0.1)])
    with open(p, "a") as f:
        f.write('{"id": "b", "te')  # killed mid-write
    assert list(read_predictions(p)) == ["a"]
    with Appender(p) as app:  # resuming cuts the half line before appending
        app.write([make_line("b", "not present")])
    lines = read_predictions(p)
    assert list(lines) == ["a", "b"] and lines["b"]["parse"] == "strict"
    assert lines["a"]["moments"] == [[1.0, 2.0]]


def test_bad_lines_and_duplicates_are_errors(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"id": "a"}\n{bad\n{"id": "c"}\n')
    with pytest.raises(UserError, match="line 2"):
        read_predictions(p)
    p.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(UserError, match="duplicate"):
        read_predictions(p)


def test_make_line_status():
    assert make_line("x", None, error="VideoError: missing")["parse"] == "error"
    assert make_line("x", "blah")["parse"] == "failed"
    assert make_line("x", "12.0 to 14.0")["parse"] == "lenient"


def test_shards_partition_and_merge(tmp_path):
    ids = [f"q{i}" for i in range(7)]
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(UserError, match="shard"):
            parse_shard(bad)
    parts = [take_shard(ids, (i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids) and take_shard(ids, (0, 3)) == take_shard(ids, (0, 3))
    for i, part in enumerate(parts):
        with Appender(tmp_path / f"s{i}" / f"predictions.shard-{i}-of-3.jsonl") as app:
            app.write([make_line(x, "not present") for x in part])
    info = merge([tmp_path / f"s{i}" for i in range(3)], ids, tmp_path / "m")
    assert info["lines"] == 7 and list(read_predictions(tmp_path / "m" / "predictions.jsonl")) == ids
    with pytest.raises(UserError, match="missing"):
        merge([tmp_path / "s0", tmp_path / "s1"], ids, tmp_path / "m2")
    with pytest.raises(UserError, match="more than one shard"):
        merge([tmp_path / "s0", tmp_path / "s0" / "predictions.shard-0-of-3.jsonl"], ids, tmp_path / "m3")


def test_configs_load_and_reject_unknown_keys(tmp_path):
    names = {p.stem for p in RECIPES.glob("*.yaml")}
    assert {"charades_sta", "activitynet", "tacos", "didemo", "qvhighlights", "synthetic"} <= names
    for p in RECIPES.glob("*.yaml"):
        assert p.read_text().startswith("# vtg eval run --config recipes/eval/"), p
        cfg = EvalConfig.load(p)
        assert cfg.benchmark
    anet = EvalConfig.load(RECIPES / "activitynet.yaml")
    assert "val_2" in str(anet.records_path)
    assert "val_1" in str(EvalConfig.load(RECIPES / "activitynet.yaml", split="val_1").records_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmark: x\nrecords: r.jsonl\nbatchsize: 3\n")
    with pytest.raises(UserError, match="batchsize"):
        EvalConfig.load(bad)
    bad.write_text("benchmark: x\nrecords: r.jsonl\nscoring: {threshold: '>'}\n")
    with pytest.raises(UserError, match="scoring.*threshold"):
        EvalConfig.load(bad)
    bad.write_text("benchmark: x\nrecords: r.jsonl\nformat: qvhighlights\n")
    with pytest.raises(UserError, match="gt"):
        EvalConfig.load(bad)
    # sampling and window overrides are checked when the config loads, not after a model and its engine started
    bad.write_text("benchmark: x\nrecords: r.jsonl\nsampling: {max_frame: 32}\n")
    with pytest.raises(UserError, match="sampling.*max_frame"):
        EvalConfig.load(bad)
    bad.write_text("benchmark: x\nrecords: r.jsonl\nsampling: {fps: 1, nframes: 8}\n")
    with pytest.raises(UserError, match="either 'fps' or 'nframes'"):
        EvalConfig.load(bad)
    bad.write_text("benchmark: x\nrecords: r.jsonl\nwindows: {window_s: 0}\n")
    with pytest.raises(UserError, match="window_s must be > 0"):
        EvalConfig.load(bad)


def _records(tmp_path):
    recs = [
        {"id": "a", "video": "a.mp4", "duration": 30.96, "query": "q", "moments": [[24.3, 30.4]]},
        {"id": "b", "video": "b.mp4", "duration": 20.0, "query": "q", "moments": [[0, 10]]},
    ]
    write_jsonl(recs, tmp_path / "gt.jsonl")
    with Appender(tmp_path / "pred.jsonl") as app:
        app.write([make_line("a", "starts at 25.0s, ends at 40.0s"), make_line("b", "starts at 0.0s, ends at 5.0s")])


def test_score_cli_conventions_change_numbers(tmp_path, capsys):
    _records(tmp_path)
    args = ["eval", "score", "--pred", str(tmp_path / "pred.jsonl"), "--gt", str(tmp_path / "gt.jsonl")]
    assert main(args + ["--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(args + ["--json", "--clamp", "--threshold-op", ">"]) == 0
    clamped = json.loads(capsys.readouterr().out)
    assert plain["metrics"]["R@1,IoU=0.5"] == 50.0  # b ties at 0.5, a is 0.34
    assert clamped["metrics"]["R@1,IoU=0.5"] == 50.0  # a clamps to 0.81, b's tie fails under >
    assert clamped["metrics"]["R@1,IoU=0.7"] == 50.0 and plain["metrics"]["R@1,IoU=0.7"] == 0.0
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "iou >= θ" in table and "clamp predictions to [0, duration]: off" in table


def test_score_cli_user_errors_exit_2(tmp_path, capsys):
    _records(tmp_path)
    (tmp_path / "short.jsonl").write_text(json.dumps(make_line("a", "x")) + "\n")
    rc = main(["eval", "score", "--pred", str(tmp_path / "short.jsonl"), "--gt", str(tmp_path / "gt.jsonl")])
    assert rc == 2 and "no prediction" in capsys.readouterr().err
