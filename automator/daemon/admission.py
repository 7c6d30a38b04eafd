"""Events in: journaled in group commits, and webhooks held back a moment while the rules lag far behind.

Every way events enter the daemon (webhooks, catch-up polls) goes through `Admission.append`: the events of
concurrent requests are written in one transaction (one fsync), and a request is answered only once its events
are committed. The backlog is an estimate of the events accepted but not yet decided: the engine (in this
process or its own) reports each batch it decides through `decided`.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from automator.clock import Clock
from automator.daemon import crashpoints, worklog
from automator.daemon.storable import UNSTORABLE
from automator.daemon.storethread import GroupCommit, StoreThread
from automator.model import Event
from automator.store.base import Store

MAX_BACKLOG = 1000  # undecided events past which webhooks are slowed down (see Admission.append)
MAX_ADMISSION_WAIT = 1.0  # seconds a webhook may be held back at most

Item = tuple[Event, str | None]  # an event and, when it has no delivery id, the digest that deduplicates it


def append_batches(store: Store, batches: list[list[Item]], now: datetime, *,
                   apart: bool = False) -> list[list[bool] | Exception]:
    """Journal the events of many requests in one transaction: one fsync for the lot (group commit).

    With `apart`, each request's events are written in a savepoint of their own: those that cannot be stored
    (UNSTORABLE) are undone alone and their error is that request's result (the daemon's second try of a group
    that failed so; the first does without the savepoints).
    """
    def append(batch: list[Item]) -> list[bool]:
        return store.append([e for e, _ in batch], now, digests=[d for _, d in batch], echoes=echoes)

    def append_apart(batch: list[Item]) -> list[bool] | Exception:
        try:
            with store.atomic():
                return append(batch)
        except UNSTORABLE as exc:
            return exc

    # Joined as it is (no savepoint) when the store thread writes it in a group's transaction: that already undoes
    # each call alone, and a savepoint is two statements more per group.
    with store.atomic(savepoint=False):
        echoes = store.expecting_echoes(now)
        results: list[list[bool] | Exception] = [(append_apart if apart else append)(batch) for batch in batches]
        crashpoints.reached("journal.before_commit")
    crashpoints.after_commit(store, "journal.after_commit")
    return results


class Admission:
    """The journal's front door: group commit, and admission control by the backlog of undecided events."""

    def __init__(self, journal: StoreThread, clock: Clock, stopping: asyncio.Event, *,
                 on_journaled: Callable[[], None], max_backlog: int = MAX_BACKLOG,
                 max_wait: float = MAX_ADMISSION_WAIT) -> None:
        self.journal = journal
        self.clock = clock
        self.stopping = stopping
        self.on_journaled = on_journaled  # wakes the engine: the events are decided now, not at its next look
        self.max_backlog = max_backlog
        self.max_wait = max_wait
        self.backlog = 0  # accepted events not yet decided (an estimate; read from the store at start)
        self.room = asyncio.Event()  # set when the backlog is back under max_backlog
        self.appender: GroupCommit[list[Item], list[bool]] = GroupCommit(self._append_batch)

    async def run(self) -> None:
        """Write the queued requests' events, a group per transaction, until `close`."""
        await self.appender.run()

    def close(self) -> None:
        """No more requests: `run` returns once those queued are written."""
        self.appender.close()

    async def append(self, items: list[Item]) -> list[bool]:
        """Journal one request's events (grouped with concurrent requests); True for each one new.

        Admission control: while more than `max_backlog` accepted events wait to be decided, a webhook waits
        (at most `max_wait`) before it is journaled, so a sender faster than the rules slows down instead of
        taking all the CPU from them. It is then accepted anyway: systems that never resend must not time out
        on us, and the journal keeps what it takes.

        Events that cannot be stored (UNSTORABLE) raise to this request alone: the others committed with it are not
        failed with it.
        """
        if self.backlog > self.max_backlog:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_wait):
                    while self.backlog > self.max_backlog and not self.stopping.is_set():
                        self.room.clear()
                        await self.room.wait()
        fresh = await self.appender.submit(items)
        self.backlog += sum(fresh)
        worklog.accepted(items, fresh)
        return fresh

    async def _append_batch(self, batches: list[list[Item]]) -> list[list[bool] | Exception]:
        try:
            results = await self.journal.call(append_batches, batches, self.clock.now())
        except UNSTORABLE:  # one request's events cannot be stored: the others must not fail with it
            results = await self.journal.call(append_batches, batches, self.clock.now(), apart=True)
        self.on_journaled()
        return results

    def decided(self, count: int) -> None:
        """`count` events were decided: the backlog shrinks, and held webhooks go on once it is small again."""
        # Timer and emitted events are decided too: the estimate never goes below nothing waiting.
        self.backlog = max(0, self.backlog - count)
        if self.backlog <= self.max_backlog:
            self.room.set()
