"""The write lock of one database: a FIFO turn for this process's threads and an advisory file lock across processes."""
from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import select
import sqlite3
import stat
import threading
import time
from pathlib import Path


class FairLock:
    """A lock handed to the longest waiter on release (FIFO): the threads writing one database take turns.

    SQLite's own busy handler makes a waiting writer sleep 1, 2, 5, 10, 15… ms between tries, so whichever writer
    happens to retry at the right moment wins: webhook acknowledgements then wait tens of milliseconds behind the
    worker (or the worker starves behind a flood of webhooks). Queueing here first makes the wait one transaction
    long at most. Across processes (the engine process, a CLI replaying a dead letter) the turn is taken with an
    advisory lock on a file beside the database, where the kernel wakes the next writer at once (`_FileTurn`).
    """

    def __init__(self, file: Path | None = None) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._held = False
        self._file = _FileTurn(file) if file is not None else None
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
        if self._file is not None:
            try:
                self._file.take(timeout)
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
        if self._file is not None and not self._file.try_take():
            self._hand_over()
            return False
        self._since = time.perf_counter()
        return True

    def release(self) -> None:
        """Hand the lock to the next waiter, or free it."""
        self.held += time.perf_counter() - self._since
        if self._file is not None:
            self._file.give()
        self._hand_over()

    def _hand_over(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


class _FileTurn:
    """The turn across processes: an exclusive flock on the lock file, and a bell (a FIFO beside it) that each
    holder rings as it frees the lock, so that a waiter sleeps until then instead of trying again and again.

    Tried every 0.1 ms then 0.5 ms, a writer woke up to 20 times per commit of the other process. Now it sleeps in
    poll() on the bell and tries again when woken (at 500 events/s: CPU per event 1.6 → 1.3 ms in the first
    process, 1.3 → 1.0 ms in the engine process; syscalls 50 → 40 and 73 → 50, context switches 4.3 → 2.6 and
    6.3 → 3.5 per event). The bell is rung on every release, heard or not (one write). Rings are read only by a
    waiter that poll() woke (an old ring nobody heard costs it one more try): read by a process about to try the
    lock itself, a ring the other process was about to hear would be lost. A ring can still be missed (two
    processes waiting at once, one reads it; a holder killed before it rang, the kernel freeing its lock): a waiter
    also tries again every RECHECK seconds while it waits. A waiter does not block in flock(LOCK_EX) instead: the
    kernel would hand it the lock while its thread still waits for the interpreter lock (up to 5 ms behind a busy
    thread), and the other process would wait as long (p99 ack at 500/s: 1.5 s). Given up after `timeout` as
    SQLite would.
    """

    RECHECK = 0.002  # seconds: how late a missed ring is made up for

    def __init__(self, file: Path) -> None:
        self._fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o600)
        self._bell = _open_bell(Path(f"{file}.bell"))
        self._poll = select.poll()
        if self._bell is not None:
            self._poll.register(self._bell, select.POLLIN)

    def try_take(self) -> bool:
        """Take the lock if no other process holds it; True if taken."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def take(self, timeout: float) -> None:
        """Take the lock, waiting up to `timeout` seconds for the process that holds it."""
        deadline = time.monotonic() + timeout
        while not self.try_take():
            left = deadline - time.monotonic()
            if left <= 0:
                raise sqlite3.OperationalError("database is locked (another process held it too long)")
            if self._bell is None:
                time.sleep(min(left, 0.0005))
            elif self._poll.poll(min(left, self.RECHECK) * 1000):
                self._hush()  # heard (or an old ring nobody heard): try again

    def give(self) -> None:
        """Free the lock and ring the bell for a process that waits."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        if self._bell is not None:
            with contextlib.suppress(BlockingIOError):  # full of unheard rings: one more says nothing new
                os.write(self._bell, b"!")

    def _hush(self) -> None:
        if self._bell is not None:
            with contextlib.suppress(BlockingIOError):
                os.read(self._bell, 65536)  # all of it at once (a pipe holds 64 KiB): rings nobody heard pile up


def _open_bell(path: Path) -> int | None:
    """The bell's FIFO, opened for reading and writing without blocking (made if missing); None where FIFOs cannot
    be made: then a waiter tries every 0.5 ms, as before."""
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):  # not ours to write into
        os.close(fd)
        return None
    return fd


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
