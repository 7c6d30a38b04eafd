"""StoreThread: calls run in order on the thread owning the connection; with group=True, the calls that queue up
go into one transaction, each undone alone when it fails, and every caller hears only after the commit."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from automator.daemon.storethread import StoreThread
from automator.store.sqlite import SqliteStore


def put(store: SqliteStore, name: str, *, fail: bool = False, seen: list[Any] | None = None) -> str:
    with store.atomic():
        store.set_meta(name, "1")
        if seen is not None:
            store.on_commit(lambda: seen.append((name, store._depth)))
        if fail:
            raise RuntimeError(f"{name} failed")
    return name


def test_queued_calls_share_one_transaction_and_a_failure_is_undone_alone(tmp_path: Path) -> None:
    thread = StoreThread(tmp_path / "s.db", "writer", synchronous="NORMAL", group=True)
    commits: list[str] = []
    thread.executor.submit(thread.store.db.conn.set_trace_callback,
                           lambda sql: commits.append(sql) if sql == "COMMIT" else None).result()
    gate = threading.Event()
    seen: list[Any] = []

    async def main() -> list[Any]:
        blocker = asyncio.ensure_future(thread.call(lambda s: gate.wait(5)))  # holds the thread: the rest queue up
        await asyncio.sleep(0.05)
        calls = [asyncio.ensure_future(thread.call(put, name, fail=name == "b", seen=seen)) for name in "abc"]
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        a, b, c = asyncio.run(main())
        assert (a, c) == ("a", "c") and isinstance(b, RuntimeError) and str(b) == "b failed"
        store = thread.store
        values = thread.executor.submit(lambda: [store.get_meta(n) for n in "abc"]).result()
        assert values == ["1", None, "1"]
        assert len(commits) == 2  # the blocker's group, then a, b and c together
        assert seen == [("a", 0), ("c", 0)]  # after the real commit; never for the one undone
    finally:
        thread.close()


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
