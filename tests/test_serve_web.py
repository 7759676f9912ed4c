"""The web page in headless Chromium, driven over the DevTools protocol: pick a video, ground a query, see moments on
the timeline, click one and check that the player seeked there; a screenshot is saved in the test's tmp dir.
Also auth on (the session's keyed server, with an API key): 401 envelopes without/with a wrong key, the page and
/health open.
The live mode (a fake camera fed from a synthetic clip, then a local file) streams to /v1/streams.
Install Chromium with tests/install_chromium.sh (CI does)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import httpx
import pytest

from support.keyed_server import KEY, LORA_NAME

pytestmark = pytest.mark.integration


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def server(keyed_server):
    """Auth ON (the page must work with the key typed into it) and one LoRA adapter: the session's keyed server."""
    return keyed_server


def test_auth(server, synth_world):
    import openai

    url = server.url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.get(url + "/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(url + "/health").status_code == 200 and httpx.get(url + "/").status_code == 200
    ref = (synth_world / "videos" / "v00000.mp4").as_uri()
    assert httpx.get(url + "/v1/media", params={"url": ref}).status_code == 401
    # the key is never taken from a URL (it would reach access logs): media go through short-lived signed URLs
    assert httpx.get(url + "/v1/media", params={"url": ref, "api_key": KEY}).status_code == 401
    listed = httpx.get(url + "/v1/videos", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    signed = next(v["media_url"] for v in listed if v["url"] == ref)
    assert KEY not in signed and httpx.get(url + signed).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    assert ok.models.list().data[0].id == Path(server.proc.args[server.proc.args.index("--model") + 1]).name


def test_lora_adapter_selectable_by_model_name(server, synth_world):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)
    models = client.models.list().data
    base = models[0].id
    assert [m.id for m in models] == [base, LORA_NAME] and models[1].model_extra["parent"] == base
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "video_url", "video_url": {"url": (synth_world / "videos" / "v00001.mp4").as_uri()}},
                {"type": "text", "text": "When is the red square visible?"},
            ],
        }
    ]
    outs = {}
    for name in (base, LORA_NAME, base):
        r = client.chat.completions.create(model=name, messages=msgs, max_tokens=16, temperature=0)
        assert r.model == name
        outs.setdefault(name, []).append(r.choices[0].message.content + str(r.choices[0].message.reasoning_content))
    assert outs[base][0] == outs[base][1]  # deterministic at temperature 0 ...
    assert outs[LORA_NAME][0] != outs[base][0]  # ... so a different answer means the adapter was applied


class CDP:
    """A minimal Chrome DevTools Protocol client over the page's websocket."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"JS failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 120.0, what: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.3)
        status = self.js("document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {what or expr}; page status: {status}")


@contextlib.contextmanager
def _launch(tmp_path: Path, *extra: str):
    """Headless Chromium with `extra` flags, driven over the DevTools protocol (a CDP on its first page)."""
    exe = _chromium()
    if not exe:
        pytest.skip("chromium is not installed: run tests/install_chromium.sh")
    pytest.importorskip("websockets")
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1100,900",
            "--autoplay-policy=no-user-gesture-required",
            *extra,
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
        from websockets.sync.client import connect

        with connect(
            next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"], max_size=None, open_timeout=30
        ) as ws:
            yield CDP(ws)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def browser(tmp_path):
    with _launch(tmp_path) as b:
        yield b


def test_web_page_ground_and_seek(server, browser, tmp_path):
    b = browser
    b.call("Page.enable")
    b.call("Page.navigate", url=server.url + "/")
    b.wait("document.readyState === 'complete' && !!document.getElementById('apikey')", what="page load")
    # Without the key the page shows the server's error; with it, the videos load.
    b.wait("$('status').textContent.includes('API key')", what="auth error shown")
    b.js(f"$('apikey').value = {json.dumps(KEY)}; $('apikey').dispatchEvent(new Event('change')); true")
    b.wait("$('videos').options.length > 1", what="video list")
    b.js(
        "const s = $('videos'); s.value = [...s.options].find(o => o.text.endsWith('v00000.mp4')).value;"
        "s.dispatchEvent(new Event('change')); true"
    )
    b.wait("$('player').readyState >= 1 && $('player').duration > 0", what="video metadata")
    b.js(
        "$('query').value = 'when is the red square visible?'; $('mode').value = 'single';"
        "$('topk').value = '3'; $('constrained').checked = true; $('ground').click(); true"
    )
    n = b.wait("document.querySelectorAll('#timeline .moment').length", what="moments on the timeline")
    assert 1 <= n <= 3
    assert b.js("$('reasoning').textContent.length > 0")
    # Click the last moment (not necessarily at 0 s) and check the player moved to its start.
    start = b.js(
        "const m = [...document.querySelectorAll('#timeline .moment')].pop();"
        "const r = m.getBoundingClientRect(); m.dispatchEvent(new MouseEvent('click', {bubbles: true,"
        "clientX: r.left + 1, clientY: r.top + 1})); Number(m.dataset.start)"
    )
    b.wait(f"Math.abs($('player').currentTime - {start}) < 0.6", timeout=30, what="player seek")
    assert float(b.js("$('player').dataset.seekedTo")) == pytest.approx(start)
    shot = tmp_path / "web_page.png"
    shot.write_bytes(base64.b64decode(b.call("Page.captureScreenshot", format="png")["data"]))
    assert shot.stat().st_size > 5000
    if os.environ.get("VTG_TEST_ARTIFACTS"):  # keep it past pytest's tmp-dir pruning
        shutil.copy(shot, Path(os.environ["VTG_TEST_ARTIFACTS"]) / shot.name)


def _fake_camera(video: Path, out: Path, fps: int = 10, size: int = 112) -> Path:
    """A y4m file for Chromium's fake camera: a synthetic clip's frames (PyAV), scaled to `size` and repeated to
    `fps` (Chromium loops it)."""
    import av

    with av.open(str(video)) as src:
        stream = src.streams.video[0]
        frames = [(float(f.pts * stream.time_base), f) for f in src.decode(stream)]
    duration = frames[-1][0] + 1.0 / float(stream.average_rate or 2)
    with av.open(str(out), "w", format="yuv4mpegpipe") as dst:
        s = dst.add_stream("wrapped_avframe", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for k in range(int(duration * fps)):
            frame = [f for t, f in frames if t <= k / fps + 1e-6][-1].reformat(size, size, "yuv420p")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            for packet in s.encode(frame):
                dst.mux(packet)
        for packet in s.encode():
            dst.mux(packet)
    return out


def _streams_open(server) -> int:
    return httpx.get(server.url + "/health", timeout=30).json()["streams"]


LIVE_OPTIONS = {"window_s": 6, "stride_s": 1, "min_window_s": 2, "max_tokens": 8}  # progress within seconds


def _live_run(b, source: str, queries: list[str]) -> None:
    b.js(
        f"$('live-source').value = {json.dumps(source)}; $('live-queries').value = {json.dumps(chr(10).join(queries))};"
        f"$('live-options').value = {json.dumps(json.dumps(LIVE_OPTIONS))}; $('live-start').click(); true"
    )
    b.wait("live.state === 'running'", timeout=60, what=f"{source}: session.created")


def test_web_page_live_camera_and_file(server, synth_world, tmp_path):
    """Live mode in Chromium: a fake camera fed from a synthetic clip, then a local file played in the page. The
    tiny random-init model announces no real moments, so this checks the mechanics: the session is created at the
    model's fps, frames go out on its grid and the server's progress events come back (media time advancing), a
    query added mid-stream is acknowledged, no error, and Stop (or the file's end) closes the session and frees its
    slot on the server."""
    if "streams" not in httpx.get(server.url + "/health", timeout=30).json():
        pytest.skip("this server has no /v1/streams")
    videos = sorted((synth_world / "videos").glob("*.mp4"))
    camera = _fake_camera(videos[0], tmp_path / "camera.y4m")
    fake = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"]  # fmt: skip
    with _launch(tmp_path, *fake) as b:
        b.call("Page.enable")
        b.call("Page.navigate", url=server.url + "/")
        b.wait("document.readyState === 'complete' && !!window.live", what="page load")
        b.js(f"$('apikey').value = {json.dumps(KEY)}; $('tab-live').click(); true")
        assert b.js("$('live-start').checkVisibility()")
        assert not b.js("$('ground').checkVisibility()")

        # -- a refused session.create: the server's error is shown, and the page can start again
        b.js(
            "$('live-source').value = 'camera'; $('live-queries').value = 'when is the red square visible?';"
            "$('live-options').value = '{\"stride_s\": -1}'; $('live-start').click(); true"
        )
        b.wait("live.state === 'closed' && live.errors.length > 0", timeout=60, what="error shown")
        assert "stride_s" in b.js("$('status').textContent") and b.js("$('status').className") == "error"
        assert not b.js("$('live-start').disabled")

        # -- the camera
        _live_run(b, "camera", ["when is the red square visible?"])
        assert b.js("live.session.fps") == 2.0 and b.js("live.session.window_s") == LIVE_OPTIONS["window_s"]
        assert b.js("!!$('player').srcObject") and _streams_open(server) == 1
        first = b.wait("live.progress && live.progress.media_time", timeout=60, what="first progress event")
        b.js("$('live-add').value = 'when is the blue circle visible?'; $('live-add-btn').click(); true")
        b.wait("Object.keys(live.queries).length === 2", timeout=30, what="query.added")
        later = b.wait(
            f"live.progress.media_time > {first} + 0.9 && live.progress.media_time", timeout=60, what="later progress"
        )
        sent, last = b.js("live.sent"), b.js("live.lastSent")
        assert later <= last + 1e-3  # what the server processed is what the page sent (events round to 1 ms) ...
        assert abs(sent - last * 2.0) <= 3  # ... on the session's 2-fps grid from media time 0
        assert b.js("live.progress.windows") >= 2
        text = b.js("$('live-progress').textContent")
        assert "answered to" in text and "lag" in text, text
        assert b.js("live.errors") == [], b.js("live.errors")
        shot = tmp_path / "web_page_live.png"
        shot.write_bytes(base64.b64decode(b.call("Page.captureScreenshot", format="png")["data"]))
        assert shot.stat().st_size > 5000
        if os.environ.get("VTG_TEST_ARTIFACTS"):
            shutil.copy(shot, Path(os.environ["VTG_TEST_ARTIFACTS"]) / shot.name)
        b.js("$('live-stop').click(); true")
        b.wait("live.closed !== null", timeout=60, what="session.closed")
        assert b.js("live.closed.windows") >= 2 and len(b.js("live.closed.queries")) == 2
        assert b.js("$('player').srcObject.getVideoTracks()[0].readyState") == "ended"  # the camera is released
        deadline = time.monotonic() + 10
        while _streams_open(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _streams_open(server) == 0

        # -- a local file, played in the page (not uploaded): its end closes the session
        video = min(videos, key=lambda v: v.stat().st_size)
        root = b.call("DOM.getDocument")["root"]["nodeId"]
        node = b.call("DOM.querySelector", nodeId=root, selector="#live-file")["nodeId"]
        b.call("DOM.setFileInputFiles", files=[str(video)], nodeId=node)
        b.wait("$('player').src.startsWith('blob:') && $('player').duration > 0", timeout=30, what="file loaded")
        duration = b.js("$('player').duration")
        _live_run(b, "file", ["when is the red square visible?"])
        b.wait("live.closed !== null", timeout=duration + 60, what="the file's end closes the session")
        assert b.js("live.errors") == [], b.js("live.errors")
        assert b.js("live.progress.windows") >= 1 and b.js("live.progress.media_time") > LIVE_OPTIONS["min_window_s"]
        assert b.js("live.sent") >= 2.0 * (duration - 1) - 2  # about every frame of the 2-fps grid went out
    deadline = time.monotonic() + 10
    while _streams_open(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _streams_open(server) == 0
