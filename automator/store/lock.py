"""The write lock of one database: a FIFO turn for this process's threads and an advisory file lock across processes."""
from __future__ import annotations

import collections
import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path


class FairLock:
    """A lock handed to the longest waiter on release (FIFO): the threads writing one database take turns.

    SQLite's own busy handler makes a waiting writer sleep 1, 2, 5, 10, 15… ms between tries, so whichever writer
    happens to retry at the right moment wins: webhook acknowledgements then wait tens of milliseconds behind the
    worker (or the worker starves behind a flood of webhooks). Queueing here first makes the wait one transaction
    long at most. Across processes (the engine process, a CLI replaying a dead letter) the turn is taken with an
    advisory lock on a file beside the database, where the kernel wakes the next writer at once.
    """

    def __init__(self, file: Path | None = None) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._held = False
        self._fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o600) if file is not None else None
        # Seconds this process's writers spent waiting for the lock and holding it, in all (for /metrics): only
        # the holder adds to them.
        self.waited = 0.0
        self.held = 0.0
        self._since = 0.0

    def acquire(self, timeout: float) -> None:
        """Take the lock, after every thread that asked before; past `timeout` seconds, fail as SQLite would."""
        asked = time.perf_counter()
        gate: threading.Lock | None = None
        with self._mutex:
            if self._held or self._waiters:
                gate = threading.Lock()
                gate.acquire()
                self._waiters.append(gate)
            else:
                self._held = True
        if gate is not None and not gate.acquire(timeout=timeout):  # released by the holder: handed over
            with self._mutex:
                if gate in self._waiters:
                    self._waiters.remove(gate)
                    raise sqlite3.OperationalError("database is locked (a write of this process held it too long)")
            gate.acquire()  # handed over just as we gave up: it is ours
        if self._fd is not None:
            try:
                self._lock_file(timeout)
            except BaseException:
                self._hand_over()
                raise
        self._since = time.perf_counter()
        self.waited += self._since - asked

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it or waits for it, without waiting; True if taken."""
        with self._mutex:
            if self._held or self._waiters:
                return False
            self._held = True
        if self._fd is not None and not self._try_file():
            self._hand_over()
            return False
        self._since = time.perf_counter()
        return True

    def _try_file(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
            return True
        except BlockingIOError:
            return False

    def _lock_file(self, timeout: float) -> None:
        # Another process's turn: tried every 0.1 ms, then every 0.5 ms (SQLite's own handler waits 1, 2, 5, 10… ms), and
        # given up after `timeout` as SQLite would. The kernel frees the lock if its holder dies.
        deadline = time.monotonic() + timeout
        tries = 0
        while not self._try_file():
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked (another process held it too long)")
            tries += 1
            time.sleep(0.0001 if tries < 20 else 0.0005)  # most turns are short: look again soon, at first

    def release(self) -> None:
        """Hand the lock to the next waiter, or free it."""
        self.held += time.perf_counter() - self._since
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._hand_over()

    def _hand_over(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


_WRITE_LOCKS: dict[str, FairLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def write_lock(path: Path | None) -> FairLock | None:
    """The process's one write lock for a database file (None for an in-memory database: one connection)."""
    if path is None:
        return None
    key = str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        if key not in _WRITE_LOCKS:
            _WRITE_LOCKS[key] = FairLock(Path(key + "-lock"))
        return _WRITE_LOCKS[key]
