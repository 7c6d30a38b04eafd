"""One connection to a SQLite database and its transactions: `atomic()` under the process's write lock, turns taken
ahead, callbacks after commit.

Every write goes through `atomic()`, which opens `BEGIN IMMEDIATE` (the write lock is taken up front, so two
writers never deadlock on an upgrade) and nests as savepoints.
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from collections.abc import Callable, Iterator

import sqlite_utils

from automator.store.lock import FairLock, write_lock

# A checkpoint copies each page changed since the last one back into the database, inside some writer's commit
# (with the write lock held). SQLite's default, every 1,000 pages (4 MB), copies the journal's and the runs' hot
# pages again and again; every 10,000 pages (a write-ahead log of up to 40 MB) copies them a tenth as often, and
# the daemon's commits took 0.9 ms instead of 1.3 ms on average (bench/daemon_throughput.py: +10 % events/s).
# Only with synchronous=FULL, where every commit has already flushed the log: with NORMAL a checkpoint first
# flushes all of it, and 40 MB at once made p99 acknowledgements at 500/s 27 ms instead of 8.
WAL_CHECKPOINT_PAGES = 10_000


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that can only read (`mode=ro`, `query_only`): no write lock is taken, ever."""
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=timeout,
                           check_same_thread=False)
    conn.execute("PRAGMA query_only=ON")
    return conn


class Connection:
    """An open database: the sqlite3 connection, its sqlite-utils view (`db`) and the transaction under way.

    `synchronous` is FULL by default for a file (an accepted event survives a power cut; group commit keeps
    it fast); NORMAL survives process crashes only. `read_only` takes no write lock, ever.
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "FULL", timeout: float = 30.0,
                 read_only: bool = False) -> None:
        memory = str(path) == ":memory:"
        # isolation_level=None: transactions are ours (atomic()), never sqlite3's implicit ones.
        if read_only:
            conn = _connect_read_only(Path(path), timeout)
        else:
            conn = sqlite3.connect(":memory:" if memory else str(path), isolation_level=None, timeout=timeout,
                                   check_same_thread=False)
        self.path = None if memory else Path(path)
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._depth = 0
        self._on_commit: list[Callable[[], None]] = []
        self.timeout = timeout
        self._turn_taken = False
        if read_only:
            # An operator's look: no write lock, no migration, so a daemon holding the lock never makes it wait
            # (WAL readers see the last commit while a writer writes).
            self._lock: FairLock | None = None
            return
        if not memory:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            if synchronous.upper() in ("FULL", "EXTRA", "2", "3"):
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self._lock = write_lock(self.path)

    @property
    def depth(self) -> int:
        """How deep in nested `atomic()` calls the connection is (0: in no transaction of ours)."""
        return self._depth

    @contextlib.contextmanager
    def atomic(self, *, savepoint: bool = True) -> Iterator[None]:
        """One transaction (BEGIN IMMEDIATE); nested calls join it through savepoints. With `savepoint=False`
        a nested call joins it as it is: a failure inside is undone by whichever enclosing level undoes it
        (for writes that are never undone alone; a savepoint is two statements more per call)."""
        conn = self.conn
        if self._depth and not savepoint:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        if self._depth:
            self._depth += 1
            name = f"sp{self._depth}"
            mark = len(self._on_commit)
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                del self._on_commit[mark:]  # what it undoes will never be committed
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            else:
                conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        lock = self._lock
        if lock is not None and not self._turn_taken:
            lock.acquire(self.timeout)
        self._turn_taken = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._on_commit.clear()
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._depth = 0
        finally:
            if lock is not None:
                lock.release()
        callbacks, self._on_commit = self._on_commit, []
        for callback in callbacks:
            callback()

    @property
    def lock(self) -> FairLock | None:
        """The process's write lock of this database (None in memory), shared by all its connections."""
        return self._lock

    def take_turn(self, *, wait: bool = True) -> bool:
        """Take this connection's turn at the write lock (waiting for it, or only if it is free at once: True if
        taken); the next `atomic()` uses it and frees it when done.

        Lets a caller wait for the turn on one thread and write on another: the daemon's first process waits on a
        helper thread and writes on its event loop's thread, so that the lock is never held while the writer waits
        for the interpreter lock."""
        if self._lock is None or self._turn_taken:
            return True
        if wait:
            self._lock.acquire(self.timeout)
        elif not self._lock.try_acquire():
            return False
        self._turn_taken = True
        return True

    def give_back_turn(self) -> None:
        """Free a turn taken with `take_turn` that no transaction will use."""
        if self._turn_taken:
            self._turn_taken = False
            if self._lock is not None:
                self._lock.release()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the transaction under way is committed (at once outside one); never if it is
        rolled back."""
        if self._depth:
            self._on_commit.append(callback)
        else:
            callback()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
