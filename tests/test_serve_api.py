"""The real server (`vtg serve`, vLLM CPU engine, tiny Qwen2.5-VL) called over HTTP with the official `openai`
client and httpx: plain vs streamed chat, grounding, every bad-request class, media escapes, saturation, uploads.
The session's shared server (start-up is the expensive part)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from vtg.data.grammar import iou

pytestmark = pytest.mark.integration


def _video(path: Path, seconds: int, fps: float = 1.0, size: int = 32) -> Path:
    from vtg.data.synth import encode_mp4

    rng = np.random.default_rng(0)
    encode_mp4(rng.integers(0, 255, (int(seconds * fps), size, size, 3), dtype=np.uint8), path, fps)
    return path


@pytest.fixture(scope="module")
def env(shared_server):
    """The session's shared server (tests/conftest.py), with this module's files: in its media root a video over its
    30 s limit, a corrupt one and a symlink escaping to a secret video in a folder outside every root."""
    media, secret = shared_server.media, shared_server.media.parent / "secret"
    secret.mkdir()
    _video(media / "long.mp4", 40)  # over the shared server's 30 s limit
    (media / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    shutil.copy(shared_server.world / "videos" / "v00000.mp4", secret / "secret.mp4")
    (media / "escape.mp4").symlink_to(secret / "secret.mp4")
    records = [json.loads(x) for x in (shared_server.world / "train.jsonl").read_text().splitlines()]
    yield {
        "url": shared_server.url,
        "world": shared_server.world,
        "media": media,
        "secret": secret,
        "records": records,
        "server": shared_server,
    }


def _client(env, **kw):
    import openai

    return openai.OpenAI(base_url=env["url"] + "/v1", api_key="unused", max_retries=0, timeout=300, **kw)


def _video_msg(url: str, text: str = "When does it happen?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": text}]}
    ]


def _uri(env, name="v00000.mp4") -> str:
    return (env["world"] / "videos" / name).resolve().as_uri()


def _post(env, path, body, **kw):
    return httpx.post(env["url"] + path, json=body, timeout=300, **kw)


def _assert_error(resp, status, *needles):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == status
    for n in needles:
        assert n in err["message"], err["message"]
    return err


# ---- the happy paths -------------------------------------------------------------------------------------------


def test_models_health_metrics_openapi(env):
    health = httpx.get(env["url"] + "/health").json()
    assert health["status"] == "ok" and health["engine"]["alive"] and health["slots_in_use"] == 0
    cards = _client(env).models.list().data
    assert [(m.id, m.prompt_style, m.profile) for m in cards] == [("tiny", "short", "vtg")]
    schema = httpx.get(env["url"] + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/grounding", "/v1/models"} <= set(schema["paths"])


def test_openai_stream_equals_plain(env):
    client = _client(env)
    kw = dict(model="tiny", messages=_video_msg(_uri(env)), max_tokens=24, temperature=0, seed=1)
    plain = client.chat.completions.create(**kw)
    choice = plain.choices[0]
    assert plain.usage.completion_tokens > 0 and plain.usage.prompt_tokens > 50  # the video's tokens are in
    content, reasoning, last = "", "", None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        for c in chunk.choices:
            content += c.delta.content or ""
            reasoning += getattr(c.delta, "reasoning_content", None) or ""
            last = c if c.finish_reason else last
        if chunk.usage:
            assert chunk.usage.completion_tokens == plain.usage.completion_tokens
    assert content == (choice.message.content or "")
    assert reasoning == (getattr(choice.message, "reasoning_content", None) or "")
    assert last.finish_reason == choice.finish_reason
    assert last.model_extra["moments"] == choice.model_extra["moments"]


def test_chat_moments_and_reasoning_parsed(env):
    """Constrained to the answer grammar, the random model's answers must come back parsed: moments + reasoning."""
    from vtg.data.grammar import parse_answer

    rx = r"<think>[a-z ]{1,20}</think> starts at [0-9]\.[0-9]s, ends at [0-9]\.[0-9]s"  # inside the 10.5 s video
    resp = _client(env).chat.completions.create(
        model="tiny",
        messages=_video_msg(_uri(env)),
        max_tokens=64,
        temperature=1.0,
        seed=3,
        n=2,
        extra_body={"structured_outputs": {"regex": rx}},
    )
    assert len(resp.choices) == 2
    for choice in resp.choices:
        extra = choice.model_extra
        assert choice.message.content.startswith("starts at"), choice.message.content
        assert extra["reasoning"] == choice.message.reasoning_content and extra["reasoning"]
        ((s, e),) = parse_answer(choice.message.content).normalized()
        got = [(m["start"], m["end"]) for m in extra["moments"]]
        assert got == ([(s, e)] if e > s else []), (choice.message.content, got)
        assert all(0 < m["score"] <= 1 for m in extra["moments"])


def test_grounding_ranked_moments(env):
    from vtg.nms import merge_samples

    rec = next(r for r in env["records"] if r.get("kind") == "multi")
    body = {
        "video": rec["video"],
        "query": rec["query"],
        "mode": "single",
        "top_k": 3,
        "samples": 4,
        "constrained": True,
        "max_tokens": 64,
        "seed": 0,
    }
    resp = _post(env, "/v1/grounding", body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    samples = out["samples"]
    assert len(samples) == 4 and all(s["parsed"] for s in samples) and out["not_present_score"] == 0
    assert out["reasoning"] and abs(out["duration"] - rec["duration"]) < 1.0
    expected = merge_samples([s["moments"] for s in samples], top_k=3)
    assert [(m["start"], m["end"]) for m in out["moments"]] == [(m.start, m.end) for m in expected]
    assert bool(out["moments"]) == any(s["moments"] for s in samples)
    scores = [m["score"] for m in out["moments"]]
    assert scores == sorted(scores, reverse=True) and all(0.25 - 1e-6 <= s <= 1 for s in scores)
    for i, a in enumerate(out["moments"]):
        assert 0 <= a["start"] < a["end"] <= out["duration"]
        for b in out["moments"][i + 1 :]:
            assert iou((a["start"], a["end"]), (b["start"], b["end"])) < 0.5  # NMS held


# ---- bad requests: 4xx + envelope, and the engine survives ----------------------------------------------------


def test_bad_requests(env):
    url = env["url"] + "/v1/chat/completions"
    ok_msg = _video_msg(_uri(env))
    r = httpx.post(url, content=b'{"model": "tiny", "messages": [', headers={"content-type": "application/json"})
    _assert_error(r, 400, "malformed JSON")
    bad_part = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    _assert_error(_post(env, "/v1/chat/completions", {"model": "tiny", "messages": bad_part}), 400, "image_url")
    cases = [
        ({"messages": _video_msg(str(env["media"] / "missing.mp4"))}, 404, "does not exist"),
        ({"messages": _video_msg(str(env["media"] / "corrupt.mp4"))}, 400, "cannot read video"),
        ({"messages": _video_msg(str(env["media"] / "long.mp4"))}, 400, "over the 30 s limit"),
        ({"messages": [{"role": "user", "content": ok_msg[0]["content"] * 2}]}, 400, "at most 1"),
        ({"messages": ok_msg, "temperature": 7}, 400, "temperature"),
        ({"messages": ok_msg, "top_p": 0}, 400, "top_p"),
        ({"messages": ok_msg, "n": 50}, 400, "max_samples"),
        ({"messages": ok_msg, "max_tokens": 100000}, 400, "max_tokens"),
        ({"messages": ok_msg, "structured_outputs": {"regex": "(["}}, 400, ""),
        ({"messages": ok_msg, "stop": [""]}, 400, "stop"),  # found by the schemathesis run (was a 500)
        ({"messages": ok_msg, "model": "nope"}, 404, "'nope' does not exist"),
        ({"messages": _video_msg("ftp://example.com/a.mp4")}, 400, "scheme"),
        ({"messages": _video_msg("https://example.com/a.mp4")}, 403, "disabled"),
    ]
    for body, status, needle in cases:
        _assert_error(
            _post(env, "/v1/chat/completions", {"model": "tiny", **body, "max_tokens": body.get("max_tokens", 4)}),
            status,
            needle,
        )
    _assert_error(_post(env, "/v1/grounding", {"video": "v.mp4", "query": " "}), 400, "query")
    _assert_error(
        _post(env, "/v1/grounding", {"video": "videos/v00000.mp4", "query": "q", "samples": 99}), 400, "samples"
    )
    _assert_error(httpx.get(env["url"] + "/v1/chat/completions"), 405)
    _assert_error(httpx.get(env["url"] + "/v1/nothing"), 404)
    # streaming requests are checked before the first byte: still a proper 4xx
    _assert_error(
        _post(
            env,
            "/v1/chat/completions",
            {"model": "tiny", "stream": True, "messages": _video_msg(str(env["media"] / "corrupt.mp4"))},
        ),
        400,
    )
    # the engine is alive and well
    assert httpx.get(env["url"] + "/health").status_code == 200
    assert _client(env).chat.completions.create(model="tiny", messages=ok_msg, max_tokens=4).choices[0]
    metrics = httpx.get(env["url"] + "/metrics").text
    assert 'vtg_requests_total{route="/v1/chat/completions",status="400"}' in metrics
    assert "vtg_internal_errors_total 0.0" in metrics


def test_path_traversal_and_symlink_escape(env):
    media, secret = env["media"], env["secret"]
    attempts = [
        (f"file://{media}/../secret/secret.mp4", 403),
        (f"{media}/../secret/secret.mp4", 403),
        (str(secret / "secret.mp4"), 403),
        (str(media / "escape.mp4"), 403),  # symlink inside a root pointing outside it
        ("escape.mp4", 404),  # relative: not found under any root once resolved
        ("/etc/passwd", 403),
    ]
    for ref, status in attempts:
        _assert_error(
            _post(env, "/v1/chat/completions", {"model": "tiny", "messages": _video_msg(ref), "max_tokens": 4}), status
        )
        _assert_error(_post(env, "/v1/grounding", {"video": ref, "query": "q"}), status)
        _assert_error(httpx.get(env["url"] + "/v1/media", params={"url": ref}), status)
    listed = httpx.get(env["url"] + "/v1/videos").json()["data"]
    assert listed and not any("secret" in v["url"] or v["name"] == "escape.mp4" for v in listed)
    good = httpx.get(env["url"] + "/v1/media", params={"url": _uri(env)}, headers={"Range": "bytes=0-99"})
    assert good.status_code == 206 and len(good.content) == 100  # the player can seek


def test_sixteen_concurrent_clients(env):
    client = _client(env)

    def ask(i):
        r = client.chat.completions.create(
            model="tiny", messages=_video_msg(_uri(env, f"v0000{i % 4}.mp4")), max_tokens=8, temperature=0.5, seed=i
        )
        return r.usage.completion_tokens

    with cf.ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(ask, range(16)))
    assert len(tokens) == 16 and all(t > 0 for t in tokens)


def test_saturation_gives_429_not_5xx(env):
    async def burst():
        async with httpx.AsyncClient(timeout=300) as c:
            body = {"model": "tiny", "messages": _video_msg(_uri(env)), "max_tokens": 4}
            return await asyncio.gather(*(c.post(env["url"] + "/v1/chat/completions", json=body) for _ in range(40)))

    codes = [r.status_code for r in asyncio.run(burst())]
    assert set(codes) <= {200, 429} and codes.count(429) > 0 and codes.count(200) >= 16, codes
    assert httpx.get(env["url"] + "/health").status_code == 200


def test_upload_then_ground(env):
    data = (env["world"] / "videos" / "v00001.mp4").read_bytes()
    up = httpx.post(env["url"] + "/v1/uploads", params={"filename": "clip.mp4"}, content=data)
    assert up.status_code == 200, up.text
    _assert_error(httpx.post(env["url"] + "/v1/uploads", params={"filename": "x.exe"}, content=b"x"), 400, "video")
    out = _post(
        env,
        "/v1/grounding",
        {"video": up.json()["url"], "query": "red square", "mode": "single", "top_k": 1, "max_tokens": 8},
    )
    assert out.status_code == 200, out.text
    assert len(out.json()["samples"]) == 1
