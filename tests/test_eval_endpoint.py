"""Integration: `vtg eval run --endpoint` against the real `vtg serve` (vLLM CPU engine, tiny Qwen2.5-VL) with the
`openai` client: file:// video URLs, bounded concurrency, a missing video recorded as an error line, resume, an
unserved model name and a profile other than the served one refused."""

import json
from pathlib import Path

import pytest

from vtg.cli import main
from vtg.data.records import load_records, write_jsonl
from vtg.eval.predictions import read_predictions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_endpoint_run_and_resume(synth_world, shared_server, tmp_path, capsys):
    from support.server import metric

    recs = load_records(synth_world / "test.jsonl")[:3]
    rows = [dict(r.to_dict(), video=str(Path(r.video_path(synth_world)).resolve())) for r in recs]
    rows.append(dict(rows[0], id="missing", video=str(synth_world / "videos" / "nope.mp4")))
    write_jsonl(rows, tmp_path / "records.jsonl")
    (tmp_path / "eval.yaml").write_text(
        f"benchmark: synthetic\nrecords: {tmp_path / 'records.jsonl'}\nmode: multi\nmax_new_tokens: 16\n"
        "temperature: 1.0\nseed: 3\nbatch_size: 2\nendpoint:\n  concurrency: 2\n"
    )
    url = shared_server.url  # the session's server (tests/conftest.py): the tiny model served as 'tiny'
    args = [
        "eval",
        "run",
        "--config",
        str(tmp_path / "eval.yaml"),
        "--endpoint",
        url + "/v1",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args + ["--limit", "2"]) == 0  # a partial run, then the rest resumes
    capsys.readouterr()
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    # a model name the server does not serve: refused up front, naming what it serves (not one 404 per query)
    (tmp_path / "other.yaml").write_text((tmp_path / "eval.yaml").read_text() + "  model: tiny-7b\n")
    other = [
        "eval",
        "run",
        "--config",
        str(tmp_path / "other.yaml"),
        "--endpoint",
        url + "/v1",
        "--out",
        str(tmp_path / "other"),
    ]
    assert main(other) == 2
    assert "endpoint.model: 'tiny-7b' is not served" in capsys.readouterr().err
    assert not (tmp_path / "other" / "predictions.jsonl").exists()
    # asked in another profile's words than the server samples and reads by: refused up front
    (tmp_path / "r1.yaml").write_text((tmp_path / "eval.yaml").read_text() + "profile: time-r1\nthink: true\n")
    r1 = ["eval", "run", "--config", str(tmp_path / "r1.yaml"), "--endpoint", url + "/v1"]
    assert main([*r1, "--out", str(tmp_path / "r1")]) == 2
    assert "served with profile 'vtg' but this eval asks with profile 'time-r1'" in capsys.readouterr().err
    # a strategy other than direct: the server runs it (the chat `grounding` extension), one coarse call a window
    # (the shared server counts other modules' calls too: the difference is this run's)
    coarse_before = metric(url, "vtg_grounding_calls_total", stage="coarse")
    windowed = [*args[:-1], str(tmp_path / "windowed"), "--strategy", "coarse_to_fine", "--limit", "3"]
    assert main(windowed) == 0
    coarse_calls = metric(url, "vtg_grounding_calls_total", stage="coarse") - coarse_before
    assert summary["resumed"] == 2 and summary["ran"] == 2
    lines = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert list(lines) == [r["id"] for r in rows]
    assert lines["missing"]["parse"] == "error" and "HTTP 404" in lines["missing"]["error"]
    assert all(lines[r["id"]]["text"] is not None for r in rows[:3])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["counts"]["errors"] == 1
    # asked in the served model's prompt style, which `vtg serve` announces on its model card (tiny: "short")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["prompt_style"] == "short"
    windowed = read_predictions(tmp_path / "windowed" / "predictions.jsonl")
    assert len(windowed) == 3, windowed
    assert all(line["parse"] == "strict" for line in windowed.values()), windowed  # the server's canonical text
    assert coarse_calls == 3.0
