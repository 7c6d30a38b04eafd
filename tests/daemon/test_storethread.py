"""StoreThread: calls run in order on the thread owning the connection; with group=True, the calls that queue up
go into one transaction, each undone alone when it fails, and every caller hears only after the commit; they are
written on the loop's thread once the turn at the write lock, waited for on the thread, has come."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from automator.daemon.storethread import StoreThread
from automator.store.connection import WAL_CHECKPOINT_PAGES
from automator.store.sqlite import SqliteStore


def put(store: SqliteStore, name: str, *, fail: bool = False, seen: list[Any] | None = None) -> str:
    with store.atomic():
        store.set_meta(name, "1")
        if seen is not None:
            store.on_commit(lambda: seen.append((name, store.connection.depth)))
        if fail:
            raise RuntimeError(f"{name} failed")
    return name


def hold_the_write_lock(path: Path, gate: threading.Event, held: threading.Event) -> threading.Thread:
    """Another writer of the database (a connection of its own on a thread) holds the write lock until `gate`."""
    def hold() -> None:
        other = SqliteStore(path, synchronous="NORMAL")
        with other.atomic():
            held.set()
            gate.wait(10)
        other.close()
    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    return thread


def test_queued_calls_share_one_transaction_and_a_failure_is_undone_alone(
        tmp_path: Path, wait_until: Callable[..., Awaitable[None]]) -> None:
    thread = StoreThread(tmp_path / "s.db", "writer", synchronous="NORMAL", group=True)
    commits: list[str] = []
    thread.store.db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    gate, held = threading.Event(), threading.Event()
    seen: list[Any] = []

    async def main() -> list[Any]:
        other = hold_the_write_lock(tmp_path / "s.db", gate, held)  # the calls queue up behind it
        calls = [asyncio.ensure_future(thread.call(put, name, fail=name == "b", seen=seen)) for name in "abc"]
        await wait_until(lambda: len(thread._queue) == 3, 10, "the three calls queued")
        assert not any(call.done() for call in calls)
        gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        other.join()
        return results

    try:
        a, b, c = asyncio.run(main())
        assert (a, c) == ("a", "c") and isinstance(b, RuntimeError) and str(b) == "b failed"
        assert [thread.store.get_meta(n) for n in "abc"] == ["1", None, "1"]
        assert len(commits) == 1  # a, b and c together
        assert seen == [("a", 0), ("c", 0)]  # after the real commit; never for the one undone
    finally:
        thread.close()


def test_a_call_alone_in_its_group_has_no_savepoint_and_its_failure_is_undone(tmp_path: Path) -> None:
    thread = StoreThread(tmp_path / "s.db", "writer", synchronous="NORMAL", group=True)
    statements: list[str] = []
    thread.store.db.conn.set_trace_callback(statements.append)

    async def main() -> list[Any]:
        failed = await asyncio.gather(thread.call(put, "b", fail=True), return_exceptions=True)
        return [await thread.call(put, "a"), *failed, await thread.call(put, "c")]

    try:
        a, b, c = asyncio.run(main())
        assert (a, c) == ("a", "c") and isinstance(b, RuntimeError) and str(b) == "b failed"
        assert [thread.store.get_meta(n) for n in "abc"] == ["1", None, "1"]
        # put's own atomic() is the only savepoint: one level fewer than in a group of several.
        assert sum(s.startswith("SAVEPOINT") for s in statements) == 3
    finally:
        thread.close()


def test_grouped_calls_are_written_on_the_loop_thread_while_the_wait_for_the_lock_is_not(tmp_path: Path) -> None:
    thread = StoreThread(tmp_path / "s.db", "writer", synchronous="NORMAL", group=True)
    gate, held = threading.Event(), threading.Event()

    async def main() -> tuple[str, int]:
        other = hold_the_write_lock(tmp_path / "s.db", gate, held)
        call = asyncio.ensure_future(thread.call(lambda s: threading.current_thread().name))
        ticks = 0
        while ticks < 20:  # the loop goes on while the call waits for its turn
            await asyncio.sleep(0.005)
            ticks += 1
        assert not call.done()
        gate.set()
        name = await call
        other.join()
        return name, ticks

    try:
        name, ticks = asyncio.run(main())
        assert name == threading.main_thread().name and ticks == 20
    finally:
        thread.close()


def test_a_turn_that_never_comes_fails_its_callers_and_the_writer_goes_on(tmp_path: Path) -> None:
    thread = StoreThread(tmp_path / "s.db", "writer", synchronous="NORMAL", group=True)
    thread.store.connection.timeout = 0.1
    gate, held = threading.Event(), threading.Event()

    async def main() -> tuple[Any, str]:
        other = hold_the_write_lock(tmp_path / "s.db", gate, held)
        first = await asyncio.gather(thread.call(put, "a"), return_exceptions=True)
        gate.set()
        other.join()
        return first[0], await thread.call(put, "b")

    try:
        failed, b = asyncio.run(main())
        assert isinstance(failed, sqlite3.OperationalError) and "locked" in str(failed)
        assert b == "b" and thread.store.get_meta("a") is None and thread.store.get_meta("b") == "1"
    finally:
        thread.close()


def test_a_writer_cancelled_while_it_waits_gives_its_turn_back(tmp_path: Path) -> None:
    thread = StoreThread(tmp_path / "s.db", "writer", synchronous="NORMAL", group=True)
    gate, held = threading.Event(), threading.Event()

    async def main() -> Any:
        other = hold_the_write_lock(tmp_path / "s.db", gate, held)
        call = asyncio.ensure_future(thread.call(put, "a"))
        await asyncio.sleep(0.02)
        assert thread._drainer is not None
        thread._drainer.cancel()
        gate.set()
        other.join()
        return (await asyncio.gather(call, return_exceptions=True))[0]

    try:
        stopped = asyncio.run(main())
        assert isinstance(stopped, RuntimeError) and "stopped" in str(stopped)  # its caller is not left waiting
        thread.executor.submit(lambda: None).result()  # the turn taken on the thread is given back there
        other = SqliteStore(tmp_path / "s.db", synchronous="NORMAL", timeout=1.0)
        with other.atomic():  # the write lock is free again
            other.set_meta("c", "1")
        other.close()
    finally:
        thread.close()


def test_a_turn_is_taken_at_once_only_when_nobody_holds_or_waits_for_the_lock(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", synchronous="NORMAL")
    gate, held = threading.Event(), threading.Event()
    other = hold_the_write_lock(tmp_path / "s.db", gate, held)
    try:
        assert store.take_turn(wait=False) is False
    finally:
        gate.set()
        other.join()
    assert store.take_turn(wait=False) is True
    store.give_back_turn()
    assert store.take_turn(wait=False) is True
    with store.atomic():  # uses the turn, and frees it
        store.set_meta("a", "1")
    assert store.take_turn(wait=False) is True
    store.give_back_turn()
    store.close()


def test_the_write_ahead_log_is_checkpointed_every_10000_pages_when_each_commit_flushes_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    assert store.db.conn.execute("pragma wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES == 10_000
    store.close()
    store = SqliteStore(tmp_path / "s.db", synchronous="NORMAL")  # a checkpoint flushes the log first: kept small
    assert store.db.conn.execute("pragma wal_autocheckpoint").fetchone()[0] == 1000
    store.close()


def test_without_grouping_each_call_is_its_own(tmp_path: Path) -> None:
    thread = StoreThread(tmp_path / "s.db", "engine", synchronous="NORMAL")

    async def main() -> list[Any]:
        return await asyncio.gather(thread.call(put, "a"), thread.call(put, "b", fail=True), return_exceptions=True)

    try:
        a, b = asyncio.run(main())
        assert a == "a" and isinstance(b, RuntimeError)
        assert thread.executor.submit(lambda: thread.store.get_meta("b")).result() is None
    finally:
        thread.close()


def test_on_commit_outside_a_transaction_runs_at_once_and_never_after_a_rollback() -> None:
    store = SqliteStore()
    seen: list[str] = []
    store.on_commit(lambda: seen.append("now"))
    with pytest.raises(RuntimeError):
        with store.atomic():
            store.on_commit(lambda: seen.append("rolled back"))
            raise RuntimeError("no")
    with store.atomic():
        store.on_commit(lambda: seen.append("committed"))
        assert seen == ["now"]
    assert seen == ["now", "committed"]


def test_the_time_the_write_lock_is_waited_for_and_held_is_counted_for_metrics(tmp_path: Path) -> None:
    from automator.daemon.metrics import LockTime, Metrics

    store = SqliteStore(tmp_path / "s.db", synchronous="NORMAL")
    metrics, lock_time = Metrics(), LockTime(store.lock, "daemon")
    lock_time.feed(metrics)  # what opening the store took so far
    counter = metrics.store_write_lock_seconds
    before = {state: counter.labels("daemon", state)._value.get() for state in ("waited", "held")}
    gate, held = threading.Event(), threading.Event()
    other = hold_the_write_lock(tmp_path / "s.db", gate, held)
    threading.Timer(0.2, gate.set).start()
    with store.atomic():  # waits about 0.2 s for the other writer of this process
        store.set_meta("a", "1")
    other.join()
    lock_time.feed(metrics)
    grown = {state: counter.labels("daemon", state)._value.get() - before[state] for state in ("waited", "held")}
    assert 0.15 < grown["waited"] < 5 and 0.15 < grown["held"] < 5, grown
    lock_time.feed(metrics)  # nothing new: nothing added
    assert counter.labels("daemon", "held")._value.get() - before["held"] == grown["held"]
    store.close()
