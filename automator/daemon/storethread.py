"""The store's threads (one SQLite connection each, calls run in order off the event loop) and group commit."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from automator.store.sqlite import SqliteStore

T = TypeVar("T")
R = TypeVar("R")


class StoreThread:
    """A thread that owns one SqliteStore connection; `call(fn, ...)` runs `fn(store, ...)` there, in order."""

    def __init__(self, path: str | Path, name: str, *, synchronous: str = "FULL") -> None:
        self.name = name
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"automator-{name}")
        self.store: SqliteStore = self.executor.submit(SqliteStore, path, synchronous=synchronous).result()

    async def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run `fn(store, *args, **kwargs)` on this thread and wait for its result without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, self.store, *args, **kwargs))

    def close(self) -> None:
        """Close the connection on its own thread, then stop the thread."""
        self.executor.submit(self.store.close).result()
        self.executor.shutdown(wait=True)


class GroupCommit(Generic[T, R]):
    """Callers `submit` one item and wait for its result; the items that arrive while a batch is being written
    go together in the next one, so a burst costs one transaction (and one fsync), not one per request."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]], *, max_batch: int = 1000) -> None:
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
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
            if self._closed:
                return

    def close(self) -> None:
        """Stop taking items; `run` returns once the queued ones are written."""
        self._closed = True
        self._wake.set()
