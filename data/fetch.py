"""Fetching a video from an http(s) URL: the one downloader vtg has (record videos given by URL, and the server's
URL fetching).

Guards, in order: http(s) only; the host's addresses are resolved first and loopback, private, link-local, multicast
and reserved ones are refused unless allowed (`allow_private`; for record files, `VTG_ALLOW_PRIVATE_URLS=1`);
redirects are not followed (they could point inside); the body is capped at `max_bytes` while it is read and the
partial file removed. (A DNS answer could still change between the check and the connection; fetch behind an
egress proxy where that matters.)
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlparse

from vtg.errors import UserError


class FetchError(UserError):
    """A URL that was not fetched; `kind` says why: scheme, host, private, redirect, status, too_large, network."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def is_internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def check_host(url: str, allow_private: bool = False) -> None:
    """Refuse a URL that is not http(s), has no host, or whose host resolves to a non-public address."""
    parsed = urlparse(url)
    if parsed.scheme.lower() not in ("http", "https"):
        raise FetchError("scheme", f"{url}: only http(s) URLs are fetched")
    if not parsed.hostname:
        raise FetchError("host", f"URL {url!r} has no host")
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
    except OSError as e:
        raise FetchError("host", f"cannot resolve host {parsed.hostname!r}: {e}") from None
    if allow_private:
        return
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if is_internal(ip):
            raise FetchError(
                "private",
                f"host {parsed.hostname!r} resolves to a non-public address ({ip}); fetching from it is not allowed",
            )


def fetch(
    url: str, dest: str | os.PathLike, *, max_bytes: int, allow_private: bool = False, timeout_s: float = 60.0
) -> int:
    """Download `url` to `dest` (written whole or not at all); returns its size in bytes."""
    import httpx

    from vtg import cancel

    cancelled = cancel.token()  # the request's, when a server fetches for one: checked every chunk
    check_host(url, allow_private)
    part = f"{dest}.part"
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout_s) as client, client.stream("GET", url) as resp:
            if resp.is_redirect:
                raise FetchError("redirect", f"{url} redirects; redirects are not followed")
            if resp.status_code != 200:
                raise FetchError("status", f"fetching {url} gave HTTP {resp.status_code}")
            size = 0
            with open(part, "wb") as f:
                for chunk in resp.iter_bytes():
                    cancel.check(cancelled)
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError("too_large", f"{url} is over the {max_bytes}-byte limit")
                    f.write(chunk)
    except httpx.HTTPError as e:
        raise FetchError("network", f"fetching {url} failed: {e}") from None
    except BaseException:
        if os.path.exists(part):
            os.unlink(part)
        raise
    os.replace(part, dest)
    return size
