"""The moment a call begins: what must be done before the first byte of an effect's call leaves.

The outbox sets CALL_START, for the task that performs one effect, to a mark written on disk that the call has
begun (automator/daemon/outbox.py); the HTTP engines await it just before they write a request:
automator/http1.py with a connection in hand, having the mark write the request the moment it is committed;
automator.http.send before handing a request to another engine.
So an effect is in doubt after a crash only once a request of its call may have reached the system, not while it
waited for a rate-limit token, a pooled connection or a connect: one that never left is performed after a
restart, not parked. Unset (None) everywhere else: a catch-up poll, a test, a command.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol


class CallMark(Protocol):
    """Marks the call begun on disk, once, and returns when that is committed. `then`, if given, is called (on the
    event loop's thread) the moment the mark is committed, or at once when it already was: the engine's write of
    the request, so that nothing the loop does comes between the mark and the first byte."""

    def __call__(self, then: Callable[[], None] | None = None) -> Awaitable[None]: ...


CALL_START: ContextVar[CallMark | None] = ContextVar("automator_call_start", default=None)


async def call_starting() -> None:
    """Await the current task's CALL_START, if any: for an engine that writes the request itself afterwards."""
    mark = CALL_START.get()
    if mark is not None:
        await mark()
