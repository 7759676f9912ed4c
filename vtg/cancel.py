"""Cooperative cancellation of work that runs in threads for a request (decoding, fetching).

Cancelling an asyncio task does not stop a thread it started: `asyncio.to_thread` returns at once, but the decode
goes on, holding a core. So whoever owns a request (the server: a client that disconnects) opens a `scope()`; threads
started from it inherit the event through the context (`asyncio.to_thread` copies it), and long loops call
`check(token)` between steps (a frame, a chunk), which raises `Cancelled` once the owner has cancelled.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar

_current: ContextVar[threading.Event | None] = ContextVar("vtg_cancel", default=None)


class Cancelled(Exception):  # noqa: N818 (named for what happened, like asyncio.CancelledError)
    """The work's owner cancelled it (the client went away); nobody waits for its result."""


def token() -> threading.Event | None:
    """The cancellation event of the work running now (None outside any scope)."""
    return _current.get()


def check(event: threading.Event | None) -> None:
    if event is not None and event.is_set():
        raise Cancelled("cancelled: the request's client went away")


@contextlib.contextmanager
def scope() -> Iterator[threading.Event]:
    """An event that cancels the work started inside the block (and the threads it starts) once set."""
    event = threading.Event()
    reset = _current.set(event)
    try:
        yield event
    finally:
        _current.reset(reset)
