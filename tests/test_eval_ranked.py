"""Ranked lists for R@K tables: `coarse_to_fine(ranked=K)` (vtg.grounding), eval's `top_k` / `nms_iou`, the
prediction line's `ranked`, and the official MAD / Ego4D-NLQ tables reading it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vtg import grounding as G
from vtg.data.grammar import iou
from vtg.data.records import Record
from vtg.errors import UserError
from vtg.eval import official
from vtg.eval.config import EvalConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "eval"
R = "Recall@{k},mIoU@0.5"


# ---- without a model ---------------------------------------------------------------------------------------------


def test_rank_drops_overlaps_before_the_cut_and_keeps_the_order():
    cands = [
        G.Candidate(10.0, 20.0, 0.9),
        G.Candidate(11.0, 21.0, 0.8),  # IoU 0.83 with the first: dropped
        G.Candidate(40.0, 50.0, 0.8),
        G.Candidate(18.0, 30.0, 0.7),  # IoU 0.1 with the first: kept at 0.3
        G.Candidate(60.0, 61.0, 0.6),
    ]
    assert [(c.start, c.score) for c in G.rank(cands, 0.3, 10)] == [(10.0, 0.9), (40.0, 0.8), (18.0, 0.7), (60.0, 0.6)]
    assert [c.start for c in G.rank(cands, 0.3, 2)] == [10.0, 40.0]  # the cut comes after NMS: 40 s, not 11 s
    assert [c.start for c in G.rank(cands, 0.05, 10)] == [10.0, 40.0, 60.0]
    # equal scores keep the order given (the coarse ranking's tie-break), not the start
    ties = [G.Candidate(50.0, 51.0, 0.5), G.Candidate(5.0, 6.0, 0.5)]
    assert [c.start for c in G.rank(ties, 0.5, 5)] == [50.0, 5.0]


def test_eval_config_asks_for_a_ranked_list():
    cfg = EvalConfig.load(RECIPES / "mad.yaml")
    assert (cfg.top_k, cfg.nms_iou, cfg.scoring.official) == (100, 0.3, "mad")
    assert EvalConfig.load(RECIPES / "ego4d_nlq.yaml").top_k == 5  # its table is Rank@1/3/5
    assert EvalConfig.from_dict({"benchmark": "x", "records": "r.jsonl"}).top_k is None  # the answer only
    for bad, match in (({"top_k": 0}, "top_k must be an integer >= 1"), ({"nms_iou": 0}, r"nms_iou must be in")):
        with pytest.raises(UserError, match=match):
            EvalConfig.from_dict({"benchmark": "x", "records": "r.jsonl", **bad})
    with pytest.raises(UserError, match="ranked must be an integer >= 1"):
        next(G.coarse_to_fine(None, "v.mp4", "q", 100.0, G.WindowSettings(), ranked=0))


def mad_line(rid: str, answer: list, ranked: list | None) -> dict:
    from vtg.data.grammar import format_moments
    from vtg.eval.predictions import make_line

    extra = {"strategy": "coarse_to_fine"} | ({"ranked": ranked} if ranked is not None else {})
    return make_line(rid, format_moments(answer), extra=extra)


def test_official_tables_read_the_ranked_list_else_the_answer():
    records = [Record(f"mad/test/q{i}", "m.mp4", 600.0, "x", [[100.0 * i, 100.0 * i + 10]]) for i in range(3)]
    preds = {
        # the truth is the ranked list's third moment; the answer alone would miss it
        "mad/test/q0": mad_line("mad/test/q0", [[300, 310]], [[300, 310], [500, 510], [0.0, 10.0]]),
        # no ranked list (an endpoint's line): the answer is the list
        "mad/test/q1": mad_line("mad/test/q1", [[0, 5], [100, 110]], None),
        # a failed line: a miss, whatever it holds
        "mad/test/q2": {**mad_line("mad/test/q2", [], [[200, 210]]), "error": "boom", "parse": "error"},
    }
    table, submission = official.score_run("mad", records, preds)
    m = table["metrics"]
    assert [len(e["moments"]) for e in submission] == [3, 2, 0]
    assert (m[R.format(k=1)], m[R.format(k=5)], m[R.format(k=100)]) == pytest.approx((0.0, 200 / 3, 200 / 3))
    # Ego4D-NLQ's challenge file carries the list too: Rank@3 finds what Rank@1 misses
    keys = {"clip_uid": "c", "annotation_uid": "a", "query_idx": 0}
    nlq = [Record("nlq/val/a", "c.mp4", 480.0, "x", [[0.0, 10.0]], extra=keys)]
    nlq_table, nlq_file = official.score_run(
        "ego4d_nlq", nlq, {"nlq/val/a": {**preds["mad/test/q0"], "id": "nlq/val/a"}}
    )
    assert nlq_file["results"][0]["predicted_times"] == [[300.0, 310.0], [500.0, 510.0], [0.0, 10.0]]
    assert (nlq_table["metrics"]["Rank@1 mIoU@0.5"], nlq_table["metrics"]["Rank@3 mIoU@0.5"]) == (0.0, 100.0)
    bad = {**preds, "mad/test/q0": {**preds["mad/test/q0"], "ranked": [[1, 2, 3]]}}
    with pytest.raises(UserError, match="q0.*ranked"):
        official.score_run("mad", records, bad)


# ---- on the tiny model, with the real vLLM engine ----------------------------------------------------------------


def moving_video(path: Path, seconds: float, fps: float = 4.0) -> str:
    """A square that crosses the frame once, changing colour: every window shows the model a different clip, so
    their answers' likelihoods (the scores) differ."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width = s.height = 56
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "20", "preset": "veryfast", "g": "20"}
        n = int(seconds * fps)
        for i in range(n):
            frame = np.full((56, 56, 3), 90, np.uint8)
            x = 36 * i // n
            frame[10:30, x : x + 20] = (230, 30 + 200 * i // n, 30)
            f = av.VideoFrame.from_ndarray(frame, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def test_a_long_video_gets_a_ranked_list_that_the_official_mad_table_scores(tiny_qwen25, tmp_path):
    """Every window answers two moments, so a 2-min video yields ~15 disjoint candidates: eval's strategy returns
    them ranked (score order, NMS-separated, at most top_k), answers the best (single mode), and writes the list on
    the prediction line, where the official MAD table reads it: R@K grows with K on truths placed down the list."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from vtg.data.windows import plan_windows
    from vtg.eval.job import _line, _score_run, _strategy, requests_for
    from vtg.eval.predictions import Appender, read_predictions
    from vtg.vllm_engine import close_llm, make_llm

    video = moving_video(tmp_path / "movie.mp4", 120.0)
    settings = G.WindowSettings(window_s=20, stride_s=15, coarse_fps=2.0, fine_windows=3, min_score=0)
    cfg = EvalConfig.from_dict(
        {"benchmark": "mad", "records": "r.jsonl", "strategy": "coarse_to_fine", "mode": "single", "top_k": 12,
         "nms_iou": 0.3, "scoring": {"threshold_op": ">=", "official": "mad"}}
    )  # fmt: skip
    asked = [Record(f"mad/test/q{i}", video, 120.0, f"the red square {i}", [[0.0, 1.0]]) for i in range(3)]
    requests = requests_for(cfg, tiny_qwen25)
    regex = r"starts at 1\.0s, ends at 4\.0s; starts at 9\.0s, ends at 12\.0s"

    def params(_):
        return SamplingParams(temperature=0.0, max_tokens=48, structured_outputs=StructuredOutputsParams(regex=regex))

    strategies = {r.id: _strategy(r, tmp_path, requests, cfg, settings) for r in asked}
    # the server's way (no ranked list) on the same video, for comparison
    server = requests.asking(mode="single")
    strategies["server"] = lambda: G.ground(server, video, "the red square", 120.0, "coarse_to_fine", settings)
    llm = make_llm(tiny_qwen25)
    try:
        with ThreadPoolExecutor(2) as pool:
            out = G.StrategyRunner(llm, params, pool).run(strategies)
    finally:
        close_llm(llm)

    windows = plan_windows(120.0, 20.0, 15.0)
    coarse = {(w.start + a, w.start + b) for w in windows for a, b in ((1.0, 4.0), (9.0, 12.0))}
    g = out["mad/test/q0"].grounding
    assert out["mad/test/q0"].error is None and g.strategy == "coarse_to_fine"
    assert len(g.ranked) == cfg.top_k == 12 and len(g.ranked_scores) == 12  # of 15 candidates
    assert g.ranked_scores == sorted(g.ranked_scores, reverse=True) and len(set(g.ranked_scores)) > 1
    assert all(iou(a, b) < 0.3 for i, a in enumerate(g.ranked) for b in g.ranked[i + 1 :])
    assert g.moments == g.ranked[:1] and g.scores == g.ranked_scores[:1]  # single mode: the list's head
    # the fine pass spent its budget (3 calls) on the best; the rest keep their coarse borders
    assert g.calls == len(windows) + 3
    assert all((s, e) in coarse or (s, e) == (99.0, 104.0) for s, e in g.ranked[3:])  # 99-102 + 101-104 joined
    plain = out["server"].grounding
    assert plain.ranked is None and len(plain.moments) == 1 and plain.calls == len(windows) + 1

    # the prediction file carries the list; the official table scores it
    with Appender(tmp_path / "predictions.jsonl") as app:
        app.write([_line(r, out[r.id]) for r in asked])
    lines = read_predictions(tmp_path / "predictions.jsonl")
    assert len(lines["mad/test/q0"]["moments"]) == 1 and lines["mad/test/q0"]["ranked"] == [list(m) for m in g.ranked]
    truth = {  # q0: the list's 3rd moment, q1: its 8th, q2: nothing predicted there
        "mad/test/q0": list(out["mad/test/q0"].grounding.ranked[2]),
        "mad/test/q1": list(out["mad/test/q1"].grounding.ranked[7]),
        "mad/test/q2": [115.0, 116.0],
    }
    records = [Record(r.id, r.video, r.duration, r.query, [truth[r.id]]) for r in asked]
    metrics = _score_run(cfg, records, tmp_path / "predictions.jsonl", tmp_path)["official"]
    m = metrics["official (MAD VLG-Net evaluation.py)"]
    assert m[R.format(k=1)] == 0.0  # the answers are NMS-separated from the truths: IoU < 0.3
    assert m[R.format(k=5)] == pytest.approx(100 / 3, abs=1e-4)
    assert m[R.format(k=10)] == m[R.format(k=100)] == pytest.approx(200 / 3, abs=1e-4)
    # the same table from the files, read unchanged (`vtg eval score --official mad`)
    gt = {r.id.rsplit("/", 1)[-1]: {"ext_timestamps": truth[r.id], "movie_duration": 120.0} for r in asked}
    (tmp_path / "MAD_test.json").write_text(json.dumps(gt))
    files = official.score_files("mad", tmp_path / "predictions.jsonl", tmp_path / "MAD_test.json")
    assert files["metrics"] == m
