"""Grounding strategies (vtg.grounding): settings, joining and refining moments, scores, and coarse-to-fine on the
tiny models with the real vLLM CPU engine."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
import numpy as np
import pytest

from vtg import grounding as G
from vtg.errors import UserError


def candidates(*triples):
    return [G.Candidate(s, e, sc) for s, e, sc in triples]


# ---- settings ----------------------------------------------------------------------------------------------------


def test_window_settings_reject_what_cannot_cover_a_video():
    assert G.WindowSettings(window_s=20).stride == 15.0 and G.WindowSettings(window_s=20).direct_max == 30.0
    for bad, match in (
        ({"window_s": 0}, "window_s must be > 0"),
        ({"window_s": 20, "stride_s": 30}, "stride_s must be in"),
        ({"score": "vibes"}, "score must be one of"),
        ({"fine_windows": -1}, "fine_windows"),
        ({"windw_s": 20}, "windw_s"),
    ):
        with pytest.raises(UserError, match=match):
            G.WindowSettings.from_dict(bad)


def test_auto_grounds_long_videos_by_windows():
    s = G.WindowSettings(window_s=20)
    assert G.choose("auto", 30.0, s) == "direct" and G.choose("auto", 30.1, s) == "coarse_to_fine"
    assert G.choose("direct", 3600.0, s) == "direct"
    with pytest.raises(UserError, match="strategy must be one of"):
        G.choose("fastest", 10.0, s)


def test_window_settings_come_from_the_model_folder(tiny_qwen25, tmp_path):
    import shutil

    from vtg.model_folder import ModelFolder, read_sampling, save_sampling

    model = tmp_path / "m"
    shutil.copytree(tiny_qwen25, model)
    assert ModelFolder.read(model).windows == G.WindowSettings()  # none saved: the defaults
    save_sampling(model, read_sampling(model), {"window_s": 20, "coarse_fps": 2.0})
    folder = ModelFolder.read(model)
    assert (folder.windows.window_s, folder.windows.coarse_fps, folder.windows.stride) == (20, 2.0, 15.0)
    assert folder.sampling == read_sampling(tiny_qwen25)  # the sampling itself is unchanged
    data = json.loads((model / "vtg_sampling.json").read_text())
    (model / "vtg_sampling.json").write_text(json.dumps({**data, "windows": {"window": 3}}))
    with pytest.raises(UserError, match="vtg_sampling.json.*window"):
        ModelFolder.read(model)


# ---- joining and refining ----------------------------------------------------------------------------------------


def test_moments_seen_by_neighbouring_windows_are_joined():
    # one event across the border of windows [0, 20] and [15, 35] (seen as 14-20 and 15-27), one touching it
    # within a frame, one far away
    joined = G.join(candidates((14.0, 20.0, 0.9), (15.0, 27.0, 0.6), (27.4, 30.0, 0.7), (60.0, 62.0, 0.8)), 0.5)
    assert [(c.start, c.end, c.score) for c in joined] == [(14.0, 30.0, 0.9), (60.0, 62.0, 0.8)]
    assert len(G.join(candidates((10.0, 12.0, 0.9), (12.6, 14.0, 0.9)), 0.5)) == 2  # a gap longer than one frame


def test_the_fine_pass_takes_borders_from_the_overlapping_fine_moment():
    c = G.Candidate(30.0, 36.0, 0.8)
    G._refine(c, "whole", [(10.0, 12.0), (31.5, 35.0)])
    assert (c.start, c.end, c.score) == (31.5, 35.0, 0.8)
    c = G.Candidate(30.0, 90.0, 0.8)  # longer than a window: each border from its own window
    G._refine(c, "start", [(28.5, 40.0)])
    G._refine(c, "end", [(80.0, 91.0)])
    assert (c.start, c.end) == (28.5, 91.0)
    c = G.Candidate(30.0, 36.0, 0.8)
    G._refine(c, "whole", [(50.0, 55.0)])  # the fine pass sees nothing there: the coarse borders stay
    assert (c.start, c.end) == (30.0, 36.0)


# ---- scores ------------------------------------------------------------------------------------------------------


def test_p_not_present_reads_the_answer_s_first_token(tiny_qwen25):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen25)
    no_ids = G.not_present_token_ids(tok)
    assert {tok.decode([i]).strip() for i in no_ids} == {"not"}
    starts = tok.encode("starts", add_special_tokens=False)[0]
    (no,) = [i for i in no_ids if tok.decode([i]) == "not"]
    plain = G.Completion("starts at 1.0s, ends at 2.0s", [starts], [{starts: math.log(0.7), no: math.log(0.25)}])
    assert G.p_not_present(plain, no_ids, G.answer_start(plain, tok.decode)) == pytest.approx(0.25)
    # with reasoning first, the decision is the first token after </think>
    ids = tok.encode("<think>seen</think> starts at 1.0s", add_special_tokens=False)
    k = next(i for i in range(len(ids)) if "starts" in tok.decode(ids[i : i + 1]) or "start" in tok.decode([ids[i]]))
    top = [{t: 0.0} for t in ids]
    top[k] = {ids[k]: math.log(0.4), no: math.log(0.6)}
    think = G.Completion(tok.decode(ids), ids, top)
    assert G.answer_start(think, tok.decode) == k
    assert G.p_not_present(think, no_ids, k) == pytest.approx(0.6)
    assert G.p_not_present(G.Completion("x", [starts], [{starts: 0.0}]), no_ids) == 0.0  # not among the top


def test_likelihood_and_agreement_scores():
    c = G.Completion("a b", [1, 2], [{1: math.log(0.5), 3: -1.0}, {2: math.log(0.8)}])
    assert G.answer_likelihood(c) == pytest.approx(math.sqrt(0.5 * 0.8))
    sampled = [[(10.0, 20.0)], [(11.0, 20.0)], [], [(40.0, 50.0)]]
    assert G.agreement((10.0, 20.0), sampled) == 0.5


# ---- on the tiny models, with the real vLLM engine ----------------------------------------------------------------


def still_video(path, seconds: float, fps: float = 4.0) -> str:
    """A video whose every frame is the same: every window of it shows the model the same clip."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width = s.height = 56
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "20", "preset": "veryfast", "g": "20"}
        frame = np.full((56, 56, 3), 90, np.uint8)
        frame[10:30, 10:30] = (230, 30, 30)
        for i in range(int(seconds * fps)):
            f = av.VideoFrame.from_ndarray(frame, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def forced_answers(regex: str):
    """Greedy sampling under a regex, so a random-init model answers with moments (the plumbing is what is tested)."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return lambda _: SamplingParams(
        temperature=0.0, max_tokens=32, structured_outputs=StructuredOutputsParams(regex=regex)
    )


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_coarse_to_fine_maps_windows_back_and_scores_them_alike(family, tiny_qwen25, tiny_qwen3, tmp_path):
    """Every window of a still video is the same clip to the model: the same answer, mapped back by its own
    offset, with the same score (positions and time stamps start at 0 in every window). Then the fine pass
    re-asks around the best candidates within its budget."""
    from vtg.data.windows import plan_windows
    from vtg.request import Requests
    from vtg.vllm_engine import close_llm, make_llm

    model = tiny_qwen25 if family == "qwen2.5-vl" else tiny_qwen3
    video = still_video(tmp_path / "still.mp4", 64.0)
    requests = Requests.for_model(model, mode="multi")
    settings = G.WindowSettings(window_s=20, stride_s=15, coarse_fps=2.0, candidates=5, fine_windows=3, min_score=0)
    llm = make_llm(model)
    try:
        with ThreadPoolExecutor(2) as pool:
            asks: list[G.Ask] = []
            regex = r"starts at 1\.0s, ends at 4\.0s"
            runner = G.StrategyRunner(llm, forced_answers(regex), pool, on_ask=lambda _, ask: asks.append(ask))
            out = runner.run({"q": lambda: G.ground(requests, video, "the red square", 64.0, "auto", settings)})
    finally:
        close_llm(llm)
    g = out["q"].grounding
    assert out["q"].error is None and g.strategy == "coarse_to_fine"
    windows = plan_windows(64.0, 20.0, 15.0)
    assert g.windows == len(windows) == 4 and g.calls == 4 + 3  # the tail window starts at 44 s
    assert [a.stage for a in asks] == ["coarse", "fine"] and [len(a.calls) for a in asks] == [4, 3]
    # each window answered [1, 4] about itself: in the video that is its start + [1, 4]
    coarse = sorted((w.start + 1.0, w.start + 4.0) for w in windows)
    assert sorted(g.moments) == coarse
    # the same clip scores the same in every window (to the batch's float rounding: the mean of ~35 log-probs)
    assert max(g.scores) - min(g.scores) <= 2e-4 and 0.0 < g.scores[0] <= 1.0
    assert g.text == ("; ".join(f"starts at {s:.1f}s, ends at {e:.1f}s" for s, e in g.moments))


def test_a_query_no_window_answers_is_not_present(tiny_qwen25, tmp_path):
    from vtg.request import Requests
    from vtg.vllm_engine import close_llm, make_llm

    video = still_video(tmp_path / "still.mp4", 40.0)
    requests = Requests.for_model(tiny_qwen25, mode="single")
    settings = G.WindowSettings(window_s=20, coarse_fps=2.0)
    llm = make_llm(tiny_qwen25)
    try:
        with ThreadPoolExecutor(1) as pool:
            runner = G.StrategyRunner(llm, forced_answers("not present"), pool)
            out = runner.run(
                {
                    "absent": lambda: G.ground(requests, video, "a blue circle", 40.0, "coarse_to_fine", settings),
                    # a record that says 400 s about a 40-s file: the windows cover the file, as its header says
                    "told_400s": lambda: G.ground(requests, video, "a blue circle", 400.0, "coarse_to_fine", settings),
                    "unreadable": lambda: G.ground(requests, str(tmp_path / "nope.mp4"), "x", 40.0, "auto", settings),
                }
            )
    finally:
        close_llm(llm)
    g = out["absent"].grounding
    assert (g.moments, g.text, g.not_present, g.calls) == ([], "not present", True, 3)
    assert out["unreadable"].grounding is None and "nope.mp4" in out["unreadable"].error
    told = out["told_400s"].grounding
    assert (told.windows, told.calls, told.text) == (g.windows, 3, "not present")
