"""HLS read as a live source (vtg.data.hls): a real HLS encode (PyAV's muxer, MPEG-TS segments) served over real
HTTP on loopback, read segment by segment through vtg's URL guard. Checked: the frames and media times equal those
of the file the playlist was made from; the guard applies to the playlist and to every segment; a live playlist is
followed as it grows and given up when it stalls; what is not read is refused with a message."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vtg.data.hls import GuardedFetcher, hls_frames, is_hls_url, open_playlist, parse_playlist
from vtg.data.video import VideoError
from vtg.stream import file_frames


@pytest.fixture(scope="module")
def vod(tmp_path_factory):
    """(source mp4, HLS folder): the first synthetic-world-like clip, 9 s at 2 fps, in 2-s segments."""
    from support.videos import grey_video, hls_vod

    tmp = tmp_path_factory.mktemp("hls")
    video = grey_video(tmp / "clip.mp4", 9.0, fps=2.0)
    hls_vod(video, tmp / "hls", segment_s=2.0)
    return video, tmp / "hls"


@pytest.fixture(scope="module")
def http_root(vod):
    """An HTTP server on loopback over the HLS folder (`.url`), which also serves a live version of the playlist:
    each fetch of `live.m3u8` lists one segment more, without #EXT-X-ENDLIST until all are listed
    (`.state["live_fetches"]` counts them)."""
    from support.http_folder import _Quiet, serve_folder

    lines = (vod[1] / "index.m3u8").read_text().splitlines()
    head = [x for x in lines if x.startswith("#EXT") and not x.startswith(("#EXTINF", "#EXT-X-ENDLIST"))]
    head = [x for x in head if not x.startswith("#EXT-X-PLAYLIST-TYPE")]
    segs = [(lines[i], lines[i + 1]) for i, x in enumerate(lines) if x.startswith("#EXTINF")]
    state = {"live_fetches": 0}

    class Handler(_Quiet):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path != "/live.m3u8":
                return super().do_GET()
            state["live_fetches"] += 1
            n = min(len(segs), state["live_fetches"])
            body = head + [x for s in segs[:n] for x in s] + (["#EXT-X-ENDLIST"] if n == len(segs) else [])
            data = "\n".join(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serve_folder(vod[1], Handler) as url:
        yield SimpleNamespace(url=url, state=state)


def fetcher(allow_private=True):
    return GuardedFetcher(max_segment_bytes=10_000_000, allow_private=allow_private, timeout_s=10)


def test_hls_frames_equal_the_source_file(vod, http_root):
    video, _ = vod
    want = list(file_frames(str(video), 2.0))
    got = list(hls_frames(http_root.url + "/index.m3u8", 2.0, fetcher=fetcher()))
    assert [t for _, t in got] == pytest.approx([t for _, t in want], abs=1e-6)
    # re-encoded (H.264 twice): the same picture, not the same bytes
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for (a, _), (b, _) in zip(got, want)]
    assert max(diffs) < 3.0, diffs


def test_a_live_playlist_is_followed_until_it_ends(vod, http_root):
    http_root.state["live_fetches"] = 0
    naps = []
    got = list(hls_frames(http_root.url + "/live.m3u8", 2.0, fetcher=fetcher(), sleep=naps.append))
    assert [t for _, t in got] == pytest.approx([t for _, t in file_frames(str(vod[0]), 2.0)], abs=1e-6)
    assert http_root.state["live_fetches"] == 5 and naps == [1.0] * 4  # half the target duration between fetches


def test_a_stalled_live_playlist_ends_with_an_error(vod):
    text = (vod[1] / "index.m3u8").read_text().replace("#EXT-X-ENDLIST", "")

    class Stalled:  # the same playlist every time, never ended: the real segment fetches go through the guard
        def text(self, url):
            return text

        def file(self, url, dest, max_bytes=None):
            Path(dest).write_bytes((vod[1] / url.rsplit("/", 1)[1]).read_bytes())

    now = [0.0]
    frames = hls_frames("http://cams.example/x.m3u8", 2.0, fetcher=Stalled(), stall_s=5.0,
                        sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])  # fmt: skip
    with pytest.raises(VideoError, match="no new segment for 5 s"):
        for _ in frames:
            pass


def test_the_url_guard_applies_to_the_playlist_and_every_segment(vod, http_root):
    with pytest.raises(VideoError, match="non-public|private"):
        open_playlist(http_root.url + "/index.m3u8", fetcher(allow_private=False))
    # a playlist on a public host naming a segment on loopback: refused at the segment
    text = (vod[1] / "index.m3u8").read_text().replace("seg0", http_root.url + "/seg0")

    class PublicPlaylist(GuardedFetcher):
        def text(self, url):
            return text

    frames = hls_frames("http://cams.example/x.m3u8", 2.0, fetcher=PublicPlaylist(max_segment_bytes=10**7))
    with pytest.raises(VideoError, match=r"127\.0\.0\.1.*non-public|non-public.*127\.0\.0\.1"):
        list(frames)


def test_playlists_parsed_and_refused():
    url = "https://cams.example/live/index.m3u8"
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nmid.m3u8\n" \
             "#EXT-X-STREAM-INF:BANDWIDTH=200000\nlow/index.m3u8\n"  # fmt: skip
    assert min(parse_playlist(master, url).variants) == (200000, "https://cams.example/live/low/index.m3u8")
    media = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI=\"init.mp4\"\n" \
            "#EXTINF:4.0,\na.m4s\n#EXTINF:3.5,\n/abs/b.m4s\n"  # fmt: skip
    p = parse_playlist(media, url)
    assert [(s.seq, s.duration, s.url) for s in p.segments] == [
        (7, 4.0, "https://cams.example/live/a.m4s"),
        (8, 3.5, "https://cams.example/abs/b.m4s"),
    ]
    assert p.segments[0].init == "https://cams.example/live/init.mp4" and not p.ended and p.target_s == 4.0
    for text, needle in [
        ("<html>", "not an HLS playlist"),
        ('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:2,\na.ts\n', "encrypted"),
        ("#EXTM3U\n#EXTINF:2,\n#EXT-X-BYTERANGE:100@0\na.ts\n", "byte-range"),
        ("#EXTM3U\n#EXT-X-ENDLIST\n", "no segments"),
    ]:
        with pytest.raises(VideoError, match=needle):
            parse_playlist(text, url)
    assert is_hls_url(url) and not is_hls_url("/videos/x.m3u8") and not is_hls_url("https://x.example/a.mp4")


def test_vtg_stream_reads_hls_through_the_guard(vod, http_root, monkeypatch):
    """`vtg stream`'s frames (vtg.stream.source_frames): an HLS URL is read by segments, loopback only when allowed."""
    from vtg.stream import source_frames

    url = http_root.url + "/index.m3u8"
    monkeypatch.delenv("VTG_ALLOW_PRIVATE_URLS", raising=False)
    with pytest.raises(VideoError, match="non-public"):
        list(source_frames(url, 2.0))
    monkeypatch.setenv("VTG_ALLOW_PRIVATE_URLS", "1")
    assert [t for _, t in source_frames(url, 2.0)] == [t for _, t in file_frames(str(vod[0]), 2.0)]
