"""Long videos behind the server: the strategy per request (auto: windows above the model's direct_max_s), each
strategy's own limits and the time budget (4xx naming the limit), chat completions reaching it through the
`grounding` extension, progress in /metrics and the log, and other requests answered while a long one runs. One real
server (tiny Qwen2.5-VL on the vLLM CPU engine) and real videos made here."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from support.server import start_server
from support.videos import grey_video

pytestmark = pytest.mark.integration


def _video(path, seconds: float, fps: float = 2.0):
    return grey_video(path, seconds, fps)


@pytest.fixture(scope="module")
def srv(tiny_qwen25, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_long")
    media = tmp / "media"
    media.mkdir()
    _video(media / "short.mp4", 8)
    _video(media / "two_min.mp4", 120)
    _video(media / "hour.mp4", 3600)
    _video(media / "too_long.mp4", 4000)
    recipe = tmp / "serve.yaml"
    recipe.write_text(
        "serve:\n  max_model_len: 1024\n  windows: {window_s: 10, coarse_fps: 2.0, fine_windows: 2}\n"
        "  limits:\n    max_tokens: 32\n    max_frames: 16\n    max_video_duration_s: 30\n"
        "    max_windowed_duration_s: 3700\n    max_windows: 500\n    max_grounding_s: 120\n"
    )
    server = start_server(
        ["--model", str(tiny_qwen25), "--config", str(recipe), "--served-model-name", "tiny",
         "--allowed-local-media-path", str(media)],
        tmp / "server.log",
    )  # fmt: skip
    yield {"url": server.url, "media": media, "server": server}
    server.stop()


def _ground(srv, video, timeout=300, **extra):
    body = {"video": video, "query": "the red square", "max_tokens": 8, **extra}
    return httpx.post(srv["url"] + "/v1/grounding", json=body, timeout=timeout)


def _error(r, status: int) -> str:
    assert r.status_code == status, r.text
    return r.json()["error"]["message"]


def test_auto_grounds_short_videos_directly_and_long_ones_by_windows(srv):
    from vtg.data.windows import plan_windows

    short = _ground(srv, "short.mp4").json()
    assert (short["strategy"], short["calls"], short["windows"]) == ("direct", 1, 0)
    long = _ground(srv, "two_min.mp4").json()
    assert long["strategy"] == "coarse_to_fine" and long["windows"] == len(plan_windows(120.0, 10.0, 7.5)) == 16
    assert long["duration"] == 120.0 and all(0 <= m["start"] < m["end"] <= 120.0 for m in long["moments"])
    assert long["usage"]["prompt_tokens"] > 16 * 10  # every window's prompt is counted


def test_each_strategy_has_its_own_limits_named_in_the_error(srv):
    assert "limits.max_video_duration_s" in _error(_ground(srv, "two_min.mp4", strategy="direct"), 400)
    assert "coarse_to_fine" in _error(_ground(srv, "two_min.mp4", strategy="direct"), 400)  # says what to do
    assert "limits.max_windowed_duration_s" in _error(_ground(srv, "too_long.mp4"), 400)
    from vtg.data.windows import plan_windows

    msg = _error(_ground(srv, "hour.mp4", windows={"window_s": 5, "stride_s": 2}), 400)
    assert "limits.max_windows" in msg and f"{len(plan_windows(3600.0, 5.0, 2.0))} windows" in msg
    assert "limits.max_grounding_s" in _error(_ground(srv, "two_min.mp4", time_budget_s=500), 400)
    assert "stride_s" in _error(_ground(srv, "two_min.mp4", windows={"window_s": 5, "stride_s": 8}), 400)
    r = _ground(srv, "hour.mp4", time_budget_s=0.5)
    assert "time budget of 0.5 s (time_budget_s)" in _error(r, 408)


def test_chat_completions_reach_the_strategies_through_the_grounding_extension(srv):
    import openai

    client = openai.OpenAI(base_url=srv["url"] + "/v1", api_key="none")
    url = (srv["media"] / "two_min.mp4").as_uri()
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                             {"type": "text", "text": "the red square"}]}]  # fmt: skip
    extension = {"grounding": {"strategy": "coarse_to_fine", "windows": {"candidates": 2}}}
    resp = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, extra_body=extension)
    choice = resp.choices[0]
    moments = choice.model_extra["moments"]
    assert len(moments) <= 2 and all(0 <= m["start"] < m["end"] <= 120.0 for m in moments)
    assert choice.message.content == (
        "not present"
        if not moments
        else "; ".join(f"starts at {m['start']:.1f}s, ends at {m['end']:.1f}s" for m in moments)
    )
    stream = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=8, extra_body=extension, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    with pytest.raises(openai.BadRequestError, match="limits.max_video_duration_s"):
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=8)  # no extension: one call
    two = [{"role": "user", "content": [messages[0]["content"][0], *messages[0]["content"]]}]
    with pytest.raises(openai.BadRequestError, match="exactly one video"):
        client.chat.completions.create(model="tiny", messages=two, max_tokens=8, extra_body=extension)


def _metric_lines(srv, name: str) -> list[str]:
    text = httpx.get(srv["url"] + "/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_a_long_request_shows_progress_and_does_not_stall_others(srv):
    from vtg.data.windows import plan_windows

    result, progress, others = {}, [], []

    def long_request():
        t0 = time.monotonic()
        result["response"] = _ground(srv, "hour.mp4", timeout=600)
        result["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=long_request)
    thread.start()
    while thread.is_alive():
        progress += [float(line.rsplit(" ", 1)[1]) for line in _metric_lines(srv, "vtg_grounding_progress")]
        t0 = time.monotonic()
        r = _ground(srv, "short.mp4", timeout=60)
        assert r.status_code == 200, r.text
        others.append(time.monotonic() - t0)
        time.sleep(0.2)
    thread.join()
    assert result["response"].status_code == 200, result["response"].text
    assert result["response"].json()["windows"] == len(plan_windows(3600.0, 10.0, 7.5))
    assert any(0 < p < 1 for p in progress), progress  # seen part-way
    assert len(others) >= 3 and max(others) < result["seconds"] / 2, (others, result["seconds"])
    assert not _metric_lines(srv, "vtg_grounding_progress")  # gone when the request ends
    log = srv["server"].log.read_text(errors="replace")
    assert "coarse pass, windows" in log and "hour.mp4" in log
