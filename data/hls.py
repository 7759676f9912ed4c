"""HLS (HTTP Live Streaming) read as a live source: the playlist and every segment fetched by vtg itself, each URL
through the same guard as any fetched video (`vtg.data.fetch`: http(s) only, non-public hosts refused unless
allowed, no redirects, a byte cap), then each segment decoded with PyAV on its own. FFmpeg never opens a URL: its
HLS demuxer would connect to whatever hosts a playlist names, unchecked.

Media time: a segment starts where the durations (`#EXTINF`) of the segments read before it end, from 0 at the
first segment read (a live playlist joined mid-way starts there); a frame's time is its segment's start plus its
offset from the segment's first frame. A live playlist (no `#EXT-X-ENDLIST`) is fetched again every half target
duration for new segments (by media sequence number) until it ends or has had no new segment for `stall_s`.

Read: media playlists with `#EXTINF` segments (MPEG-TS, or fMP4 with an `#EXT-X-MAP` init section); a multivariant
playlist's lowest-bandwidth variant (the model sees small frames anyway). Refused, with a message: encrypted
segments (`#EXT-X-KEY`), byte ranges (`#EXT-X-BYTERANGE`), playlists over `max_playlist_bytes`."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlparse

from vtg.data.video import VideoError

MAX_PLAYLIST_BYTES = 1 << 20


def is_hls_url(source: str) -> bool:
    parsed = urlparse(source) if "://" in source else None
    if parsed is None or parsed.scheme.lower() not in ("http", "https"):
        return False
    return parsed.path.lower().endswith((".m3u8", ".m3u"))


@dataclass
class Segment:
    url: str
    duration: float
    seq: int
    init: str | None = None  # the fMP4 init section's URL (#EXT-X-MAP)


@dataclass
class Playlist:
    segments: list[Segment] = field(default_factory=list)
    variants: list[tuple[int, str]] = field(default_factory=list)  # (bandwidth, url) of a multivariant playlist
    ended: bool = False
    target_s: float = 6.0


def _attributes(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def parse_playlist(text: str, url: str) -> Playlist:
    """A playlist's segments (URLs made absolute against `url`) or variants; VideoError for what is not read."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise VideoError(f"{url}: not an HLS playlist (no #EXTM3U header)")
    out, seq, duration, init, variant_bw = Playlist(), 0, None, None, None
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-STREAM-INF":
            variant_bw = int(_attributes(value).get("BANDWIDTH", "0") or 0)
        elif tag == "#EXT-X-TARGETDURATION":
            out.target_s = float(value)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            seq = int(value)
        elif tag == "#EXTINF":
            duration = float(value.split(",")[0])
        elif tag == "#EXT-X-ENDLIST":
            out.ended = True
        elif tag == "#EXT-X-MAP":
            if "BYTERANGE" in _attributes(value):
                raise VideoError(f"{url}: byte-range init sections (#EXT-X-MAP BYTERANGE) are not read")
            init = urljoin(url, _attributes(value)["URI"])
        elif tag == "#EXT-X-KEY" and _attributes(value).get("METHOD", "NONE") != "NONE":
            raise VideoError(f"{url}: encrypted HLS segments (#EXT-X-KEY) are not read")
        elif tag == "#EXT-X-BYTERANGE":
            raise VideoError(f"{url}: byte-range segments (#EXT-X-BYTERANGE) are not read")
        elif not line.startswith("#"):
            if variant_bw is not None:
                out.variants.append((variant_bw, urljoin(url, line)))
                variant_bw = None
            elif duration is not None:
                out.segments.append(Segment(urljoin(url, line), duration, seq, init))
                seq, duration = seq + 1, None
    if not out.segments and not out.variants and out.ended:
        raise VideoError(f"{url}: the HLS playlist has no segments")
    return out


class GuardedFetcher:
    """Playlists and segments through `vtg.data.fetch` (its URL guard on every URL, no redirects, a byte cap)."""

    def __init__(self, *, max_segment_bytes: int, allow_private: bool = False, timeout_s: float = 30.0):
        self.max_segment_bytes, self.allow_private, self.timeout_s = max_segment_bytes, allow_private, timeout_s

    def file(self, url: str, dest: str, max_bytes: int | None = None) -> None:
        from vtg.data.fetch import FetchError, fetch

        try:
            fetch(url, dest, max_bytes=max_bytes or self.max_segment_bytes, allow_private=self.allow_private,
                  timeout_s=self.timeout_s)  # fmt: skip
        except FetchError as e:
            raise VideoError(f"HLS: {e}") from e

    def text(self, url: str) -> str:
        with tempfile.TemporaryDirectory(prefix="vtg-hls-") as tmp:
            dest = os.path.join(tmp, "playlist.m3u8")
            self.file(url, dest, MAX_PLAYLIST_BYTES)
            with open(dest, "rb") as f:
                return f.read().decode("utf-8", errors="replace")


def open_playlist(url: str, fetcher) -> tuple[str, Playlist]:
    """The media playlist to read (a multivariant playlist's lowest-bandwidth variant) and its URL."""
    playlist = parse_playlist(fetcher.text(url), url)
    if playlist.variants:
        url = min(playlist.variants)[1]
        playlist = parse_playlist(fetcher.text(url), url)
        if playlist.variants:
            raise VideoError(f"{url}: a variant of a multivariant playlist is itself multivariant")
    return url, playlist


def hls_frames(
    url: str,
    fps: float,
    budget=None,
    *,
    fetcher,
    playlist: tuple[str, Playlist] | None = None,
    stall_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[Any, float]]:
    """(RGB frame, media time) of an HLS source, about `fps` a second, segment by segment (memory: one segment on
    disk, one frame decoded). `playlist`: the already fetched (url, Playlist) of `open_playlist`. VideoError for a
    source that cannot be read, a segment that cannot be fetched or decoded, or a live playlist stalled `stall_s`
    (default: three target durations)."""
    from vtg.stream import file_frames

    url, current = playlist or open_playlist(url, fetcher)
    stall_s = stall_s if stall_s is not None else 3 * current.target_s
    start_t, last_seq, last_new = 0.0, None, clock()
    init_url, init = None, b""  # the fMP4 init section last fetched (it rarely changes)
    with tempfile.TemporaryDirectory(prefix="vtg-hls-") as tmp:
        while True:
            fresh = [s for s in current.segments if last_seq is None or s.seq > last_seq]
            for seg in fresh:
                path = os.path.join(tmp, "segment")
                fetcher.file(seg.url, path)
                if seg.init:  # an fMP4 segment decodes after its init section
                    if seg.init != init_url:
                        fetcher.file(seg.init, path + ".init")
                        with open(path + ".init", "rb") as f:
                            init_url, init = seg.init, f.read()
                    with open(path, "rb") as f:
                        body = f.read()
                    with open(path, "wb") as f:
                        f.write(init + body)
                first = None
                try:
                    for frame, t in file_frames(path, fps, budget, None if seg.init else "mpegts"):
                        first = t if first is None else first
                        yield frame, start_t + (t - first)
                except VideoError as e:  # named by its URL, not the temporary file it was read from
                    raise VideoError(f"HLS segment {seg.url}: {str(e).replace(path + ': ', '')}") from None
                start_t += seg.duration
                last_seq, last_new = seg.seq, clock()
            if current.ended:
                return
            if clock() - last_new > stall_s:
                raise VideoError(f"{url}: the live playlist has had no new segment for {stall_s:g} s")
            sleep(max(0.5, current.target_s / 2))
            current = parse_playlist(fetcher.text(url), url)
