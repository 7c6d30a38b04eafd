"""The engine's loops sleep until woken: a look finds work or the loop waits for a wake-up (events journaled, a
timer set), with no look in between; a wake-up that comes while a batch is decided is not lost; stopping ends the
sleeps. And the engine process's counters are sent once some were added, not on a timer."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from automator.clock import FakeClock
from automator.daemon import engine as engine_module
from automator.daemon.engine import Engine
from automator.daemon.engine_process import Tally
from automator.daemon.timers import FireReport
from automator.daemon.worker import BatchReport

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)


class _Store:
    """A store thread that runs calls at once, on the loop."""

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self, *args)


async def _settle() -> None:
    for _ in range(50):  # every task gets its turns: no timing, only the loop's order
        await asyncio.sleep(0)


def _engine(monkeypatch: pytest.MonkeyPatch, batches: list[BatchReport], *, due: datetime | None = None,
            during: Callable[[Engine], None] = lambda e: None) -> tuple[Engine, list[str]]:
    looks: list[str] = []
    engine: Engine

    def process_batch(store: Any, project: Any, worker: str, now: datetime) -> BatchReport:
        looks.append("batch")
        during(engine)
        return batches.pop(0) if batches else BatchReport()

    def fire_due(store: Any, project: Any, now: datetime) -> FireReport:
        looks.append("timers")
        return FireReport(next_due=due)

    monkeypatch.setattr(engine_module, "process_batch", process_batch)
    monkeypatch.setattr(engine_module, "fire_due", fire_due)
    engine = Engine(_Store(), lambda: None, worker="W", clock=FakeClock(NOW), metrics=Tally(),  # type: ignore[arg-type]
                    retention=timedelta(days=30), on_decided=lambda report: None)
    return engine, looks


def _running(engine: Engine, check: Callable[[], Awaitable[None]]) -> None:
    """Run the engine's loops, let them settle, `check`, then stop them (stopping ends every sleep at once)."""
    async def main() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(engine.run(stopping))
        await _settle()
        await check()
        stopping.set()
        await asyncio.wait_for(running, 10)

    asyncio.run(main())


def test_the_worker_sleeps_after_a_batch_that_left_nothing_until_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, looks = _engine(monkeypatch, [BatchReport(events=1)])

    async def check() -> None:
        assert looks.count("batch") == 1  # decided, then asleep: no second look that finds nothing
        engine.wake.set()  # events journaled
        await _settle()
        assert looks.count("batch") == 2

    _running(engine, check)


def test_a_batch_cut_short_or_journaling_events_of_its_own_is_followed_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine, looks = _engine(monkeypatch, [BatchReport(events=128, more=True), BatchReport(events=1)])

    async def check() -> None:
        assert looks.count("batch") == 2

    _running(engine, check)


def test_a_wake_up_while_a_batch_is_decided_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[bool] = []

    def journaled_meanwhile(engine: Engine) -> None:
        if not woken:
            woken.append(True)
            engine.wake.set()

    engine, looks = _engine(monkeypatch, [BatchReport(events=1)], during=journaled_meanwhile)

    async def check() -> None:
        assert looks.count("batch") == 2

    _running(engine, check)


def test_the_timers_loop_sleeps_until_the_next_timer_or_an_earlier_one_is_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine, looks = _engine(monkeypatch, [], due=NOW + timedelta(hours=1))

    async def check() -> None:
        assert looks.count("timers") == 1
        engine.wake_timers.set()  # a decision set a timer
        await _settle()
        assert looks.count("timers") == 2

    _running(engine, check)


def test_the_tally_calls_back_when_a_count_is_added_to_none() -> None:
    first: list[int] = []
    tally = Tally(lambda: first.append(1))
    tally.runs.labels("r", "done").inc()
    tally.runs.labels("r", "done").inc()
    assert first == [1]
    assert tally.drain() == [["runs", ["r", "done"], 2.0]]
    tally.effects.labels("api").inc()
    assert first == [1, 1]
