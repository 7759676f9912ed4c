"""bench/long's scoring and table, without a model: present and absent queries scored apart by eval's own metrics,
the line fitted to seconds per query, both result layouts rendered, and the test seed refused to experiments."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bench.common import read_json
from bench.long.run import HERE, TEST_SEED, WORLD, check_reused, linear_fit, refuse_test_world, render, split_scores
from vtg.data.grammar import NOT_PRESENT, format_answer
from vtg.eval.metrics import Conventions
from vtg.eval.predictions import make_line


def _record(rid: str, moments: list) -> dict:
    return {"id": rid, "video": f"{rid}.mp4", "duration": 600.0, "query": "the red square", "moments": moments}


def _world(tmp_path, answers: dict) -> tuple:
    """records.jsonl (4 present queries, 2 absent) and a run folder holding predictions and eval's conventions."""
    truth = {"p0": [[10.0, 20.0]], "p1": [[100.0, 130.0]], "p2": [[5.0, 9.0], [300.0, 310.0]], "p3": [[50.0, 60.0]]}
    truth |= {"a0": [], "a1": []}
    tmp_path.mkdir(exist_ok=True)
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(_record(k, v)) + "\n" for k, v in truth.items()))
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(json.dumps(make_line(k, t)) + "\n" for k, t in answers.items()))
    (run / "metrics.json").write_text(json.dumps({"conventions": asdict(Conventions())}))
    return records, run


def test_present_and_absent_queries_are_scored_apart(tmp_path):
    answers = {
        "p0": format_answer([[10.0, 20.0]]),  # a hit
        "p1": format_answer([[100.0, 120.0]]),  # IoU 0.667: a hit at 0.5 and 0.3, a miss at 0.7
        "p2": format_answer([[5.0, 9.0]]),  # one of two moments: R1 hit, F1 2/3
        "p3": NOT_PRESENT,  # said absent on a present query
        "a0": NOT_PRESENT,  # right
        "a1": format_answer([[1.0, 2.0]]),  # a moment where there is none
    }
    p, a = split_scores(*_world(tmp_path, answers)).values()
    assert p["queries"] == 4 and a["queries"] == 2
    assert p["R@1,IoU=0.5"] == 75.0 and p["R@1,IoU=0.7"] == 50.0
    assert p["F1@0.5"] == pytest.approx(100 * (1 + 1 + 2 / 3 + 0) / 4)  # over the present queries only
    assert p["said_absent_pct"] == 25.0 and a["said_absent_pct"] == 50.0
    assert p["parse_failure_rate"] == 0.0 and a["parse_failure_rate"] == 0.0
    # answering "not present" everywhere: 100 on the absent rows, 0 on the present ones; nothing mixes the two
    p, a = split_scores(*_world(tmp_path / "all-absent", dict.fromkeys(answers, NOT_PRESENT))).values()
    assert (p["R@1,IoU=0.3"], p["F1@0.5"], p["said_absent_pct"], a["said_absent_pct"]) == (0.0, 0.0, 100.0, 100.0)


def test_linear_fit_of_seconds_per_query():
    fit = linear_fit((2, 10, 30, 60), [0.5 + 0.05 * n for n in (2, 10, 30, 60)])
    assert fit == {"slope": 0.05, "intercept": 0.5, "worst_residual_pct": 0.0}
    assert linear_fit((2, 10, 30, 60), [0.1, 0.5, 2.0, 8.0])["worst_residual_pct"] > 20  # faster than a line shows


def test_both_result_layouts_render():
    old = render(read_json(HERE / "results.json"))  # the committed result, until the re-run
    if read_json(HERE / "results.json").get("version", 1) == 1:
        assert old.startswith("**To be re-run") and "| 60 min, coarse_to_fine | 25 |" in old
    run = {"queries": 64, "s_per_query": 1.0, "peak_rss_mb": 3700, "absent": {"queries": 13, "said_absent_pct": 7.7,
           "parse_failure_rate": 0.0}}  # fmt: skip
    run["present"] = {"queries": 51, "R@1,IoU=0.3": 50.0, "R@1,IoU=0.5": 40.0, "R@1,IoU=0.7": 30.0, "mIoU": 35.0,
                      "F1@0.5": 33.3, "said_absent_pct": 2.0, "parse_failure_rate": 0.0}  # fmt: skip
    result = {"version": 2, "command": "python -m bench.long.run", "runs": {"10 min, coarse_to_fine": run},
              "targets": {"t": {"met": False, "c2f": 40.0}}, "stage_s": {"SFT": 60}, "eval_s": 60,
              "total_s": 180}  # fmt: skip
    text = render(result)
    assert "| 10 min, coarse_to_fine | 51 | 50.0 | 40.0 | 30.0 | 35.0 | 33.3 | 2.0 | 0.0 | 1.0 | 3700 |" in text
    assert "| 10 min, coarse_to_fine | 13 | 7.7 | 0.0 |" in text and "- **not met**: t (c2f 40.0)" in text


def test_experiments_refuse_the_test_seed(tmp_path):
    (tmp_path / "world").mkdir()
    for seed, refused in ((TEST_SEED, True), (0, False)):
        (tmp_path / "world" / "world.json").write_text(json.dumps({"seed": seed}))
        if refused:
            with pytest.raises(SystemExit, match="held-out test families"):
                refuse_test_world(tmp_path)
        else:
            refuse_test_world(tmp_path)


def test_a_world_of_other_settings_is_not_reused(tmp_path):
    """An --out of the first layout (one object, seed 0) must not be taken for this one's world."""
    want = {"seed": TEST_SEED, "videos_per_length": 64, "train_clips": 3000, "val_clips": 300, **WORLD}
    check_reused(tmp_path, want)  # nothing there yet
    (tmp_path / "world.json").write_text(json.dumps({**want, "seed": 0, "colour_decoys": None} | {"distractors": 0}))
    with pytest.raises(SystemExit, match="seed 0 there, 1 wanted, distractors 0 there, 3 wanted"):
        check_reused(tmp_path, want)
    (tmp_path / "world.json").write_text(json.dumps(want))
    check_reused(tmp_path, want)
