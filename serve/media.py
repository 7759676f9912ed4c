"""Safe media resolution: which video files a request may read, and which files the server hands out.

Local files: `file:///abs/path`, or a plain path, must lie under an allowed root *after* resolving symlinks
(`os.path.realpath`), so neither `..` nor a symlink pointing outside escapes; `..` components are refused outright.
Remote files: http(s) only when URL fetching is on, through `vtg.data.fetch` (non-public addresses refused unless
explicitly allowed, no redirects, the download capped at the file-size limit), into a cache folder with a disk
budget (least recently used files go first, never one a request is reading) that is removed when the server stops.
Served files (`/v1/media`): only videos — a video extension and a container with a video stream — under the roots;
with an API key, the page loads them through URLs signed for a short time (`sign_media`), never with the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from vtg.data.video import VIDEO_EXTS
from vtg.serve.errors import bad_request, forbidden, not_found, too_large
from vtg.serve.protocol import VideoEntry


class MediaPolicy:
    def __init__(
        self,
        roots: list[str],
        *,
        max_bytes: int,
        allow_url_fetch: bool = False,
        allow_private_urls: bool = False,
        fetch_timeout_s: float = 30.0,
        fetch_cache_bytes: int | None = None,
    ):
        self.roots = [os.path.realpath(r) for r in roots]
        self.max_bytes = max_bytes
        self.allow_url_fetch = allow_url_fetch
        self.allow_private_urls = allow_private_urls
        self.fetch_timeout_s = fetch_timeout_s
        self.fetched = FetchCache(fetch_cache_bytes if fetch_cache_bytes is not None else 4 * max_bytes)

    # ---- local -------------------------------------------------------------------------------------------------

    def resolve_local(self, ref: str, param: str = "video") -> str:
        """The real path of a local video the request may read, or an APIError saying why not."""
        path = _local_path(ref, param)
        if "\x00" in path:
            raise bad_request(f"{param}: the path contains a NUL byte", param)
        if ".." in Path(path).parts:
            raise forbidden(f"{param}: '..' is not allowed in media paths ({ref!r})", param)
        if not self.roots:
            raise forbidden(
                f"{param}: local media is disabled; start the server with --allowed-local-media-path DIR", param
            )
        candidates = [path] if os.path.isabs(path) else [os.path.join(r, path) for r in self.roots]
        for cand in candidates:
            real = os.path.realpath(cand)
            if not self._inside(real):
                continue
            if os.path.isabs(path) or os.path.exists(real):
                return self._check_file(real, ref, param)
        if os.path.isabs(path):
            raise forbidden(f"{param}: {ref!r} is outside the allowed media roots", param)
        raise not_found(f"{param}: {ref!r} not found under the allowed media roots", param)

    def servable(self, ref: str, param: str = "url") -> str:
        """The real path of a video file `/v1/media` may hand out: under a root, named and made as a video."""
        from vtg.data.video import VideoError, probe_video

        real = self.resolve_local(ref, param)
        if Path(real).suffix.lower() not in VIDEO_EXTS:
            raise forbidden(f"{param}: {ref!r} is not a video file; only videos are served", param)
        try:
            probe_video(real)
        except VideoError:
            raise forbidden(
                f"{param}: {ref!r} is not a video (no readable video stream); only videos are served", param
            ) from None
        return real

    def _inside(self, real: str) -> bool:
        return any(os.path.commonpath([real, r]) == r for r in self.roots)

    def _check_file(self, real: str, ref: str, param: str) -> str:
        if not os.path.exists(real):
            raise not_found(f"{param}: video {ref!r} does not exist", param)
        if not os.path.isfile(real):
            raise bad_request(f"{param}: {ref!r} is not a file", param)
        if not os.access(real, os.R_OK):
            raise forbidden(f"{param}: video {ref!r} is not readable", param)
        size = os.path.getsize(real)
        if size > self.max_bytes:
            raise too_large(f"{param}: video {ref!r} is {size} bytes, over the {self.max_bytes}-byte limit", param)
        if size == 0:
            raise bad_request(f"{param}: video {ref!r} is empty", param)
        return real

    def list_videos(self, link, limit: int = 500) -> list[VideoEntry]:
        """Video files under the allowed roots: a video extension and a readable video stream, what `/v1/media`
        serves (symlinks leading outside are skipped); `link(url)` says where the page loads each from. Reads each
        file's header: call it from a thread."""
        from vtg.data.video import VideoError, probe_video

        out: list[VideoEntry] = []
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    real = os.path.realpath(os.path.join(dirpath, name))
                    if (
                        Path(name).suffix.lower() not in VIDEO_EXTS
                        or not self._inside(real)
                        or not os.path.isfile(real)
                    ):
                        continue
                    try:
                        probe_video(real)
                    except VideoError:
                        continue  # named like a video, but not one
                    url = Path(real).as_uri()
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    out.append(
                        VideoEntry(url=url, name=rel, root=root, bytes=os.path.getsize(real), media_url=link(url))
                    )
                    if len(out) >= limit:
                        return out
        return out

    # ---- remote ------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def opened(self, ref: str, param: str = "video"):
        """A local path to read while the block runs: the checked local file, or a fetched copy of an allowed URL
        (kept from eviction until the block ends)."""
        scheme = urlparse(ref).scheme.lower() if "://" in ref else ""
        if scheme not in ("http", "https"):
            yield self.resolve_local(ref, param)
            return
        path = await self._fetch(ref, param)
        try:
            yield path
        finally:
            self.fetched.release(path)

    def require_url_fetch(self, param: str) -> None:
        if not self.allow_url_fetch:
            raise forbidden(
                f"{param}: fetching videos from URLs is disabled (start the server with "
                "--allow-url-fetch, or use a file under an allowed root)",
                param,
            )

    def hls_fetcher(self):
        """Playlist and segment fetches of an HLS source (vtg.data.hls) under this policy's guard and byte cap."""
        from vtg.data.hls import GuardedFetcher

        return GuardedFetcher(
            max_segment_bytes=self.max_bytes, allow_private=self.allow_private_urls, timeout_s=self.fetch_timeout_s
        )

    async def _fetch(self, url: str, param: str) -> str:
        from vtg.data.fetch import FetchError, fetch

        self.require_url_fetch(param)
        dest = self.fetched.path_for(url)
        self.fetched.hold(dest)
        try:
            if not os.path.exists(dest):  # a URL fetched before is read from the cache
                await asyncio.to_thread(
                    fetch,
                    url,
                    dest,
                    max_bytes=self.max_bytes,
                    allow_private=self.allow_private_urls,
                    timeout_s=self.fetch_timeout_s,
                )
        except FetchError as e:
            self.fetched.release(dest)
            raise fetch_refused(e, f"{param}: {e}", param) from None
        except BaseException:
            self.fetched.release(dest)
            raise
        self.fetched.touch(dest)
        return dest

    def close(self) -> None:
        self.fetched.close()


def fetch_refused(e, message: str, param: str):
    """The API error for a URL the guard or the download refused (`vtg.data.fetch.FetchError`): 403 for a non-public
    host, 413 over the byte cap, else 400."""
    return {"private": forbidden, "too_large": too_large}.get(e.kind, bad_request)(message, param)


class FetchCache:
    """Fetched videos on disk within a byte budget: least recently used first out, never one a request holds. The
    folder (`vtg-serve-fetch-<pid>-…` in the temp folder) is removed on `close()`; folders left by a server that was
    killed are removed when the next one starts."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.held: Counter[str] = Counter()
        self._dir: str | None = None

    @property
    def dir(self) -> str:
        if self._dir is None:
            _remove_orphans()
            self._dir = tempfile.mkdtemp(prefix=f"vtg-serve-fetch-{os.getpid()}-")
        return self._dir

    def path_for(self, url: str) -> str:
        name = hashlib.sha256(url.encode()).hexdigest()[:32] + Path(urlparse(url).path).suffix[:8]
        return os.path.join(self.dir, name)

    def hold(self, path: str) -> None:
        self.held[path] += 1

    def release(self, path: str) -> None:
        self.held[path] -= 1
        if self.held[path] <= 0:
            del self.held[path]

    def touch(self, path: str) -> None:
        """Mark `path` used now and evict the least recently used files over the budget."""
        os.utime(path)
        stats = {}
        for name in os.listdir(self.dir):
            with contextlib.suppress(FileNotFoundError):
                if not name.endswith(".part"):
                    stats[os.path.join(self.dir, name)] = os.stat(os.path.join(self.dir, name))
        used = sum(st.st_size for st in stats.values())
        for f in sorted(stats, key=lambda f: stats[f].st_mtime):
            if used <= self.budget:
                break
            if f not in self.held:
                os.unlink(f)
                used -= stats[f].st_size

    def size(self) -> int:
        return sum(os.path.getsize(os.path.join(self.dir, f)) for f in os.listdir(self.dir)) if self._dir else 0

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _remove_orphans() -> None:
    """Remove fetch folders whose server process no longer runs."""
    for folder in Path(tempfile.gettempdir()).glob("vtg-serve-fetch-*-*"):
        pid = folder.name.split("-")[3]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- signed media URLs ---------------------------------------------------------------------------------------------


def sign_media(url: str, key: str | None, ttl_s: float, now: float | None = None) -> str:
    """The `/v1/media` URL of a video; with an API key, signed for `ttl_s` seconds (the key itself never appears)."""
    link = f"/v1/media?url={quote(url, safe='')}"
    if not key:
        return link
    exp = int((now if now is not None else time.time()) + ttl_s)
    return f"{link}&exp={exp}&sig={_signature(url, exp, key)}"


EXPIRY = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes '²' and '١', and int() of
SIGNATURE = re.compile(r"[0-9a-f]{64}")  # thousands of digits raises; compare_digest raises on non-ASCII text


def media_signature_ok(url: str, exp: str | None, sig: str | None, key: str) -> bool:
    """Whether `sig` signs `url` until `exp` with `key`, still valid now. Any malformed value is simply not a valid
    signature (the caller answers 401), never an error."""
    if not exp or not sig or not EXPIRY.fullmatch(exp) or not SIGNATURE.fullmatch(sig) or int(exp) < time.time():
        return False
    return hmac.compare_digest(sig, _signature(url, int(exp), key))


def _signature(url: str, exp: int, key: str) -> str:
    return hmac.new(key.encode(), f"{url}\n{exp}".encode(), hashlib.sha256).hexdigest()


def _local_path(ref: str, param: str) -> str:
    ref = ref.strip()
    if "://" not in ref:
        if ref.startswith("data:"):
            raise bad_request(f"{param}: data: URLs are not supported; upload the file or give a path", param)
        return ref
    parsed = urlparse(ref)
    if parsed.scheme.lower() != "file":
        raise bad_request(
            f"{param}: unsupported URL scheme {parsed.scheme!r}; expected file://, http(s):// or a path", param
        )
    if parsed.netloc not in ("", "localhost"):
        raise bad_request(f"{param}: file:// URL with a host ({parsed.netloc!r}) is not supported", param)
    return unquote(parsed.path)
