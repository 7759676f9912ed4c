"""`vtg data curate`: records scored by a real vLLM CPU engine (n samples each), kept by a mean-IoU window."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from vtg.cli import main as vtg_main

LIMIT, SAMPLES = 6, 3


def _lines(path):
    return [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]


def _in_window(line, lo, hi, absent="keep"):
    """The selection rule, restated from the scores file alone."""
    if line["error"]:
        return False
    if line["absent"] and absent != "window":
        return absent == "keep"
    return lo <= line["score"] <= hi


# ---- unit: config and selection -----------------------------------------------------------------------------------


def _cfg(tmp_path, **kw):
    from vtg.data.curate import CurateConfig

    records = tmp_path / "in.jsonl"
    records.write_text("")
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text("{}")
    return CurateConfig(
        **{"records": str(records), "out": str(tmp_path / "out.jsonl"), "model": str(tmp_path / "model"), **kw}
    )


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({"keep_iou_min": 0.8, "keep_iou_max": 0.2}, "bad window"),
        ({"keep_iou_max": 1.5}, "bad window"),
        ({"samples": 0}, "--samples"),
        ({"temperature": 0.0, "samples": 4}, "--temperature"),
        ({"metric": "bleu"}, "--metric"),
        ({"absent": "maybe"}, "--absent"),
        ({"model": None}, "--model is required"),
        ({"model": "/nonexistent/model"}, "not a model folder"),
        ({"prompt_style": "terse"}, "--prompt-style must be one of"),
    ],
)
def test_config_rejects_impossible_settings(tmp_path, kw, expected):
    from vtg.errors import UserError

    with pytest.raises(UserError, match=expected):
        _cfg(tmp_path, **kw)


def test_config_defaults_and_output_guard(tmp_path):
    from vtg.errors import UserError

    cfg = _cfg(tmp_path)
    assert (cfg.keep_iou_min, cfg.keep_iou_max, cfg.absent) == (0.05, 0.7, "keep")
    assert cfg.scores == str(tmp_path / "out.scores.jsonl")
    with pytest.raises(UserError, match="input records file"):
        _cfg(tmp_path, out=str(tmp_path / "in.jsonl"))


def test_decide_reasons(tmp_path):
    from vtg.data.curate import decide

    cfg = _cfg(tmp_path, keep_iou_min=0.2, keep_iou_max=0.6)
    line = lambda score, absent=False, error=None: {"score": score, "absent": absent, "error": error}  # noqa: E731
    assert [decide(line(s), cfg) for s in (0.0, 0.19, 0.2, 0.4, 0.6, 0.61, 1.0)] == [
        "too_hard",
        "too_hard",
        "kept",
        "kept",
        "kept",
        "too_easy",
        "too_easy",
    ]
    assert decide(line(None, error="VideoError: x"), cfg) == "error"
    assert decide(line(0.0, absent=True), cfg) == "absent_kept"
    assert decide(line(0.0, absent=True), _cfg(tmp_path, absent="drop")) == "absent_dropped"
    assert decide(line(1.0, absent=True), _cfg(tmp_path, absent="window")) == "too_easy"


def test_score_line_uses_the_rewards():
    from vtg.data.curate import score_line
    from vtg.data.records import Record

    rec = Record("q", "v.mp4", 20.0, "a thing", [[2.0, 6.0]])
    line = score_line(rec, ["starts at 2.0s, ends at 6.0s", "starts at 4.0s, ends at 8.0s", "gibberish"], "tiou")
    assert line["ious"] == pytest.approx([1.0, 2 / 6, 0.0])
    assert line["score"] == pytest.approx((1 + 2 / 6) / 3) and line["parse_rate"] == pytest.approx(2 / 3)
    absent = score_line(
        Record("a", "v.mp4", 20.0, "no thing", []), ["not present", "starts at 1s, ends at 2s"], "multi_moment"
    )
    assert absent["absent"] and absent["scores"] == [1.0, 0.0]


def test_cli_bad_window_exits_2_with_message(tmp_path):
    (tmp_path / "in.jsonl").write_text("")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vtg",
            "data",
            "curate",
            "--records",
            str(tmp_path / "in.jsonl"),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--from-scores",
            str(tmp_path / "in.jsonl"),
            "--keep-iou-min",
            "0.9",
            "--keep-iou-max",
            "0.1",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "bad window --keep-iou-min 0.9 --keep-iou-max 0.1" in r.stderr and "Traceback" not in r.stderr


def test_cli_missing_inputs(tmp_path, capsys):
    assert (
        vtg_main(
            ["data", "curate", "--records", str(tmp_path / "nope.jsonl"), "--out", "o.jsonl", "--model", str(tmp_path)]
        )
        == 2
    )
    assert "--records" in capsys.readouterr().err
    (tmp_path / "in.jsonl").write_text("")
    assert (
        vtg_main(
            [
                "data",
                "curate",
                "--records",
                str(tmp_path / "in.jsonl"),
                "--out",
                "o.jsonl",
                "--model",
                str(tmp_path / "no_model"),
            ]
        )
        == 2
    )
    assert "not a model folder" in capsys.readouterr().err


# ---- integration: the real engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curated(tiny_qwen25, synth_world, tmp_path_factory):
    """One real scoring run: LIMIT records of the synthetic world, SAMPLES answers each, default window."""
    out = tmp_path_factory.mktemp("curate") / "kept.jsonl"
    rc = vtg_main(
        [
            "data",
            "curate",
            "--model",
            str(tiny_qwen25),
            "--records",
            str(synth_world / "train.jsonl"),
            "--out",
            str(out),
            "--samples",
            str(SAMPLES),
            "--limit",
            str(LIMIT),
            "--max-new-tokens",
            "16",
        ]
    )
    assert rc == 0
    return out


@pytest.mark.integration
def test_scores_file_one_finite_line_per_record(curated, synth_world):
    from vtg.data.records import load_records

    lines = _lines(curated.with_suffix(".scores.jsonl"))
    ids = [r.id for r in load_records(synth_world / "train.jsonl")[:LIMIT]]
    assert [d["id"] for d in lines] == ids
    for d in lines:
        assert d["error"] is None
        assert len(d["ious"]) == len(d["scores"]) == SAMPLES
        for v in [d["score"], d["mean_iou"], d["parse_rate"], *d["ious"], *d["scores"]]:
            assert math.isfinite(v) and 0.0 <= v <= 1.0
        assert d["mean_iou"] == pytest.approx(sum(d["ious"]) / SAMPLES)


@pytest.mark.integration
def test_kept_set_is_the_window_recomputed_from_scores(curated):
    from vtg.data.records import load_records

    lines = _lines(curated.with_suffix(".scores.jsonl"))
    kept = [r.id for r in load_records(curated, check_video=True)]  # video paths still resolve from the new folder
    assert kept == [d["id"] for d in lines if _in_window(d, 0.05, 0.7)]
    assert [d["kept"] for d in lines] == [d["id"] in kept for d in lines]


@pytest.mark.integration
def test_reselect_from_edited_scores(curated, synth_world, tmp_path, capsys):
    """The window itself discriminates: spread the scores over [0, 1] and re-select without the model."""
    lines = _lines(curated.with_suffix(".scores.jsonl"))
    for i, d in enumerate(lines):
        d["score"] = i / (len(lines) - 1)
    edited = tmp_path / "edited.scores.jsonl"
    edited.write_text("".join(json.dumps(d) + "\n" for d in lines))
    out = tmp_path / "sel.jsonl"
    assert (
        vtg_main(
            [
                "data",
                "curate",
                "--records",
                str(synth_world / "train.jsonl"),
                "--limit",
                str(LIMIT),
                "--out",
                str(out),
                "--from-scores",
                str(edited),
                "--keep-iou-min",
                "0.3",
                "--keep-iou-max",
                "0.7",
                "--absent",
                "window",
            ]
        )
        == 0
    )
    want = [d["id"] for d in lines if _in_window(d, 0.3, 0.7, absent="window")]
    assert 0 < len(want) < len(lines)
    assert [json.loads(x)["id"] for x in open(out)] == want
    assert f"kept {len(want)}" in capsys.readouterr().out
