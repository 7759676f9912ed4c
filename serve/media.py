"""Safe media resolution: which video files a request may read.

Local files: `file:///abs/path`, or a plain path, must lie under an allowed root *after* resolving symlinks
(`os.path.realpath`), so neither `..` nor a symlink pointing outside escapes; `..` components are refused outright.
Remote files: http(s) only when URL fetching is on, through `vtg.data.fetch` (non-public addresses refused unless
explicitly allowed, no redirects, the download capped at the file-size limit).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

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
    ):
        self.roots = [os.path.realpath(r) for r in roots]
        self.max_bytes = max_bytes
        self.allow_url_fetch = allow_url_fetch
        self.allow_private_urls = allow_private_urls
        self.fetch_timeout_s = fetch_timeout_s
        self._fetch_dir: str | None = None

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

    def list_videos(self, limit: int = 500) -> list[VideoEntry]:
        """Video files under the allowed roots (symlinks leading outside are skipped)."""
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
                    out.append(
                        VideoEntry(
                            url=Path(real).as_uri(),
                            name=os.path.relpath(os.path.join(dirpath, name), root),
                            root=root,
                            bytes=os.path.getsize(real),
                        )
                    )
                    if len(out) >= limit:
                        return out
        return out

    # ---- remote ------------------------------------------------------------------------------------------------

    async def resolve(self, ref: str, param: str = "video") -> str:
        """A local path to read: the checked local file, or a downloaded copy of an allowed URL."""
        scheme = urlparse(ref).scheme.lower() if "://" in ref else ""
        if scheme in ("http", "https"):
            return await self._fetch(ref, param)
        return self.resolve_local(ref, param)

    async def _fetch(self, url: str, param: str) -> str:
        from vtg.data.fetch import FetchError, fetch

        if not self.allow_url_fetch:
            raise forbidden(
                f"{param}: fetching videos from URLs is disabled (start the server with "
                "--allow-url-fetch, or use a file under an allowed root)",
                param,
            )
        parsed = urlparse(url)
        dest = os.path.join(
            self._fetch_root(), hashlib.sha256(url.encode()).hexdigest()[:32] + Path(parsed.path).suffix[:8]
        )
        try:
            await asyncio.to_thread(
                fetch,
                url,
                dest,
                max_bytes=self.max_bytes,
                allow_private=self.allow_private_urls,
                timeout_s=self.fetch_timeout_s,
            )
        except FetchError as e:
            status = {"private": forbidden, "too_large": too_large}.get(e.kind, bad_request)
            raise status(f"{param}: {e}", param) from None
        return dest

    def _fetch_root(self) -> str:
        if self._fetch_dir is None:
            self._fetch_dir = tempfile.mkdtemp(prefix="vtg-serve-fetch-")
        return self._fetch_dir


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
