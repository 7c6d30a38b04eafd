"""The store's threads (one SQLite connection each, calls run in order off the event loop; grouped writes on it) and
group commit."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from automator.store.base import Store
from automator.store.sqlite import SqliteStore

T = TypeVar("T")
R = TypeVar("R")


class StoreThread:
    """A thread that owns one connection to the store (the one place the daemon opens it: a SqliteStore);
    `call(fn, ...)` runs `fn(store, ...)` there, in order. `systems`: the connectors whose events the store
    resolves to persons when it journals them (`Store.set_systems`).

    With `group=True` the calls that queue up while one transaction is being written go together in the next:
    one transaction, one fsync, for all of them (each, unless alone, in a savepoint of its own, so that one that
    fails is undone alone and its caller gets its exception). A caller hears of its result once it is committed. The
    daemon's first process writes everything through one such writer: no two writers of one process wait for
    each other's turn at the write lock. Grouped calls are written on the event loop's thread, and only the
    wait for the turn is done on the thread (see `_drain`): they must be short and must not block.
    """

    def __init__(self, path: str | Path, name: str, *, synchronous: str = "FULL", group: bool = False,
                 systems: Iterable[str] = ()) -> None:
        self.name = name
        self.group = group
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"automator-{name}")
        # fsync="observed": only what leaves the process waits for an fsync (a webhook's 2xx, an effect's call).
        self.store: Store = self.executor.submit(SqliteStore, path, synchronous=synchronous, systems=systems,
                                                 fsync="observed").result()
        self._queue: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to a task
        self._closed = False

    async def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run `fn(store, *args, **kwargs)` on this thread and wait for its result without blocking the loop (grouped:
        in the next group's transaction, written on the loop's thread once the turn has come)."""
        loop = asyncio.get_running_loop()
        if not self.group:
            return await loop.run_in_executor(self.executor, partial(fn, self.store, *args, **kwargs))
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((fn, args, kwargs, future))
        if not self._draining:
            self._draining = True
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # The turn at the write lock is taken here when it is free, else waited for on the thread; the transaction
        # is written here, on the loop's thread. Written on the thread, it held the lock each time it waited to get
        # the interpreter lock back from the loop (after every statement), and the engine process waited as long:
        # the first process held the lock 5.1 ms per transaction, now 2.9 ms (bench/daemon_throughput.py: +7 %).
        loop = asyncio.get_running_loop()
        jobs: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        try:
            while self._queue:
                if not self.store.take_turn(wait=False):
                    try:
                        await loop.run_in_executor(self.executor, self.store.take_turn)
                    except asyncio.CancelledError:  # the thread may still get the turn: it must not keep it
                        self.executor.submit(self.store.give_back_turn)
                        raise
                    except Exception as exc:  # the lock never came (held past the timeout): those queued hear of it
                        jobs, self._queue = self._queue, []
                        _resolve([(job[3], (False, exc)) for job in jobs])
                        continue
                jobs, self._queue = self._queue, []
                outcomes: list[tuple[bool, Any]] = []
                try:
                    with self.store.atomic():
                        if len(jobs) == 1:  # alone: its failure undoes the transaction, no savepoint needed
                            fn, args, kwargs, _ = jobs[0]
                            outcomes.append((True, fn(self.store, *args, **kwargs)))
                        else:
                            for fn, args, kwargs, _ in jobs:
                                try:
                                    with self.store.atomic():
                                        outcomes.append((True, fn(self.store, *args, **kwargs)))
                                except Exception as exc:  # undone alone; its caller hears of it
                                    outcomes.append((False, exc))
                except Exception as exc:  # the commit itself failed: nothing of the group was written
                    outcomes = [(False, exc)] * len(jobs)
                _resolve([(job[3], outcome) for job, outcome in zip(jobs, outcomes)])
        finally:
            self._draining = False
            stopped = RuntimeError(f"the {self.name} store writer stopped")
            _resolve([(job[3], (False, stopped)) for job in jobs + self._queue])  # no caller waits for ever
            self._queue = []

    def close(self) -> None:
        """Close the connection on its own thread, then stop the thread (once)."""
        if self._closed:
            return
        self._closed = True
        self.executor.submit(self.store.close).result()
        self.executor.shutdown(wait=True)


def _resolve(results: list[tuple[asyncio.Future[Any], tuple[bool, Any]]]) -> None:
    """Give each future its result (ok, value) or exception (not ok, the exception); one already done is left."""
    for future, (ok, value) in results:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class GroupCommit(Generic[T, R]):
    """Callers `submit` one item and wait for its result; the items that arrive while a batch is being written
    go together in the next one, so a burst costs one transaction (and one fsync), not one per request.

    `flush` returns one result per item; an exception among them is raised to that item's caller alone.
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R | Exception]]], *, max_batch: int = 1000) -> None:
        self._flush = flush
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._closed = False

    async def submit(self, item: T) -> R:
        """Queue one item for the next batch; its result once that batch is committed."""
        if self._closed:
            raise RuntimeError("the store is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        """Write batches until `close()`, then write what is left."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:self._max], self._pending[self._max:]
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:  # every waiter hears of the failure; the loop goes on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                _resolve([(future, (not isinstance(result, Exception), result))
                          for (_, future), result in zip(batch, results)])
            if self._closed:
                return

    def close(self) -> None:
        """Stop taking items; `run` returns once the queued ones are written."""
        self._closed = True
        self._wake.set()
