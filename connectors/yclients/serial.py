"""One edit of a YCLIENTS client at a time: a client's categories and fields are changed by reading the client and
PUTting it back whole, so two concurrent edits would each lose the other's (reference part 2 §1.3.6).

The daemon's outbox does not order effects by entity: it claims due effects oldest first and runs up to its
in-flight limit of them at once, whoever they are about. So the connector serialises its own edits of one client.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    """An asyncio lock per key, made when first wanted and dropped when nobody holds or awaits it (so a key's lock
    never outlives the event loop it was used on, and the table does not grow with every client ever edited)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Run the block while no other block of the same key runs; blocks of one key run in arrival order."""
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
