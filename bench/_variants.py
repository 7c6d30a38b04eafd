"""`automator …` with experimental patches applied in this process only — to measure what a product change would
gain before making it. The product code is not touched: the patches are monkeypatches of this interpreter.

    python bench/_variants.py PATCHES run --config … --port …      (PATCHES: names joined by '+', or 'none')

Patches:
  fairlock  one FIFO hand-over lock per database file around every top-level write transaction
            (SqliteStore.atomic): the daemon's journal and engine threads queue for the write lock in Python,
            instead of SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries
  switch    sys.setswitchinterval(0.0005): a thread waiting for the GIL gets it after 0.5 ms, not 5 ms
  flow      admission control: a webhook waits before being journaled while more than FLOW_LIMIT accepted
            events are not yet decided, so a sender faster than the pipeline is slowed instead of the backlog
            growing without bound
  budget2   the worker's batch stops after 2 ms instead of 5 ms (process_batch's budget): the write lock is held
            for less time while it decides, so a webhook waits less for it
  oldclaim  claim_events with its query before the UNION ALL rewrite (every pending event read and sorted)
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

FLOW_LIMIT = 1000


class FairLock:
    """A lock handed over to the longest waiter on release (FIFO), so no thread can take it twice in a row while
    another waits."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._held = False

    def acquire(self) -> None:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        gate.acquire()  # released by the holder, which hands the lock over

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


def fairlock() -> None:
    from automator.store import sqlite

    locks: dict[str, FairLock] = {}
    guard = threading.Lock()
    plain = sqlite.SqliteStore.atomic.__wrapped__  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def atomic(self: Any) -> Iterator[None]:
        if self._depth:
            yield from plain(self)
            return
        with guard:
            lock = locks.setdefault(str(self.path), FairLock())
        lock.acquire()
        try:
            yield from plain(self)
        finally:
            lock.release()

    sqlite.SqliteStore.atomic = atomic  # type: ignore[method-assign]


def switch() -> None:
    sys.setswitchinterval(0.0005)


def flow() -> None:
    from automator.daemon import process

    state: dict[str, Any] = {"backlog": 0, "loop": None, "room": None}
    batch = process.process_batch

    def process_batch(store: Any, *args: Any, **kwargs: Any) -> Any:  # on the engine thread
        report = batch(store, *args, **kwargs)
        state["backlog"] = max(0, state["backlog"] - report.events - report.failed)
        if state["backlog"] <= FLOW_LIMIT and state["room"] is not None:
            state["loop"].call_soon_threadsafe(state["room"].set)
        return report

    append = process.Daemon.journal_append

    async def journal_append(self: Any, items: Any) -> Any:
        if state["room"] is None:
            state["loop"], state["room"] = asyncio.get_running_loop(), asyncio.Event()
        while state["backlog"] > FLOW_LIMIT and not self.stopping.is_set():
            state["room"].clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):  # the worker sets it after each batch; the timeout is a safety
                    await state["room"].wait()
        fresh = await append(self, items)
        state["backlog"] += sum(fresh)
        return fresh

    process.process_batch = process_batch  # type: ignore[assignment]
    process.Daemon.journal_append = journal_append  # type: ignore[method-assign]


def budget2() -> None:
    import functools

    from automator.daemon import process

    process.process_batch = functools.partial(process.process_batch, budget=0.002)  # type: ignore[assignment]


def oldclaim() -> None:
    from automator.store import journal

    def claim_events(self: Any, worker: str, now: Any, limit: int, lease: Any) -> Any:
        from automator.store.sqlite import utc

        stamp = utc(now)
        with self.atomic():
            held = {row[0] for row in self.db.conn.execute(
                "select distinct key from journal where status = 'claimed' and claimed_until >= ? and claimed_by != ?",
                [stamp, worker])}
            rows = self.db.conn.execute(
                "select seq, key, body from journal where status = 'pending' or (status = 'claimed' and "
                "(claimed_until < ? or claimed_by = ?)) order by seq limit ?",
                [stamp, worker, limit + len(held) * 4]).fetchall()
            taken = [(seq, body) for seq, key, body in rows if key not in held][:limit]
            if taken:
                self.db.conn.executemany(
                    "update journal set status = 'claimed', claimed_by = ?, claimed_until = ? where seq = ?",
                    [[worker, utc(now + lease), seq] for seq, _ in taken])
        return [journal.event_from_body(body) for _, body in taken]

    journal.JournalMixin.claim_events = claim_events  # type: ignore[method-assign]


PATCHES = {"fairlock": fairlock, "switch": switch, "flow": flow, "budget2": budget2, "oldclaim": oldclaim}


def main() -> None:
    names = [n for n in sys.argv[1].split("+") if n and n != "none"]
    for name in names:
        PATCHES[name]()
    from automator.cli import cli

    sys.argv = ["automator", *sys.argv[2:]]
    cli()


if __name__ == "__main__":
    main()
