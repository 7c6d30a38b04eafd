"""Admission: events journaled in group commits, a request answered once its events are committed, and webhooks
held back (for a bounded time) while the backlog of undecided events is over its limit."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

from automator.clock import FakeClock
from automator.daemon.admission import Admission
from automator.daemon.storethread import StoreThread
from automator.model import EntityRef, Event

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)


def event(n: int) -> tuple[Event, str | None]:
    return Event(id=f"e{n}", type="nps.received", at=NOW, entity=EntityRef("client", str(n)),
                 delivery_id=f"d-{n}"), None


@asynccontextmanager
async def admission(tmp_path: Path, **kw: float) -> AsyncIterator[tuple[Admission, list[str]]]:
    """An Admission on a fresh store, its writer running; the list records each wake-up of the engine."""
    journal = StoreThread(tmp_path / "a.db", "journal", synchronous="NORMAL")
    woken: list[str] = []
    front = Admission(journal, FakeClock(NOW), asyncio.Event(), on_journaled=lambda: woken.append("woken"), **kw)
    writer = asyncio.create_task(front.run())
    try:
        yield front, woken
    finally:
        front.close()
        await writer
        journal.close()


def test_events_are_journaled_once_and_counted_in_the_backlog(tmp_path: Path) -> None:
    async def main() -> None:
        async with admission(tmp_path) as (front, woken):
            assert await front.append([event(1), event(2)]) == [True, True]
            assert await front.append([event(2), event(3)]) == [False, True]  # a duplicate delivery is dropped
            assert front.backlog == 3 and woken == ["woken", "woken"]
            front.decided(2)
            assert front.backlog == 1
            front.decided(5)  # timer and emitted events are decided too: never below nothing waiting
            assert front.backlog == 0
            pending = await front.journal.call(lambda s: s.journal_lag(NOW)[0])
            assert pending == 3

    asyncio.run(main())


def test_concurrent_requests_share_one_transaction(tmp_path: Path) -> None:
    async def main() -> None:
        async with admission(tmp_path) as (front, woken):
            results = await asyncio.gather(*(front.append([event(n)]) for n in range(5)))
            assert results == [[True]] * 5
            assert len(woken) < 5  # one wake-up per group written, not per request

    asyncio.run(main())


def test_over_the_backlog_a_webhook_waits_for_room(tmp_path: Path) -> None:
    async def main() -> None:
        async with admission(tmp_path, max_backlog=2, max_wait=30.0) as (front, _):
            await front.append([event(n) for n in range(3)])
            held = asyncio.create_task(front.append([event(9)]))
            for _ in range(5):  # the loop turns: a request let through is queued to the writer meanwhile
                await asyncio.sleep(0)
            # The writer thread runs its calls in order: had the request been let through, it would be written.
            assert await front.journal.call(lambda s: s.journal_event("e9")) is None
            assert not held.done()
            front.decided(1)  # back to the limit: room again
            assert await asyncio.wait_for(held, 10) == [True]
            assert front.backlog == 3

    asyncio.run(main())


def test_a_held_webhook_is_accepted_anyway_after_the_longest_wait(tmp_path: Path) -> None:
    async def main() -> None:
        async with admission(tmp_path, max_backlog=0, max_wait=0.05) as (front, _):
            await front.append([event(1)])
            assert await asyncio.wait_for(front.append([event(2)]), 10) == [True]  # nobody decided: still taken
            assert front.backlog == 2

    asyncio.run(main())


def test_a_stopping_daemon_holds_nothing_back(tmp_path: Path) -> None:
    async def main() -> None:
        async with admission(tmp_path, max_backlog=0, max_wait=30.0) as (front, _):
            await front.append([event(1)])
            front.stopping.set()
            assert await asyncio.wait_for(front.append([event(2)]), 10) == [True]

    asyncio.run(main())
