"""One connection to a SQLite database and its transactions: `atomic()` under the process's write lock, turns taken
ahead, callbacks after commit.

Every write goes through `atomic()`, which opens `BEGIN IMMEDIATE` (the write lock is taken up front, so two
writers never deadlock on an upgrade) and nests as savepoints.

Durable where observed (`fsync="observed"`, the daemon's connections): with synchronous FULL asked for, SQLite
commits with NORMAL (no fsync) and the write-ahead log is fsynced after the commits that something outside the
process will see (`durable()`: a webhook's journal entry before its 2xx, an effect's start mark before its call).
The log is one sequential file: fsyncing it makes every earlier commit durable too, and a power cut loses only a
suffix of commits, as a crash a moment earlier would.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from collections.abc import Callable, Iterator

import sqlite_utils

from automator.store.lock import FairLock, write_lock

# A checkpoint copies each page changed since the last one back into the database, inside some writer's commit
# (with the write lock held). SQLite's default, every 1,000 pages (4 MB), copies the journal's and the runs' hot
# pages again and again; every 10,000 pages (a write-ahead log of up to 40 MB) copies them a tenth as often, and
# the daemon's commits took 0.9 ms instead of 1.3 ms on average (bench/daemon_throughput.py: +10 % events/s).
# Only with synchronous=FULL, where the log is flushed often (every commit; with fsync="observed", every commit
# something outside sees, hundreds a second under load): with NORMAL a checkpoint first flushes all of it, and 40 MB at once made p99 acknowledgements at 500/s 27 ms instead of 8.
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
    it fast); NORMAL survives process crashes only. `fsync="observed"` (with FULL): only the commits marked with
    `durable()` are fsynced, the others become durable with the next one that is (see the module's docstring).
    `read_only` takes no write lock, ever.
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "FULL", timeout: float = 30.0,
                 read_only: bool = False, fsync: str = "every") -> None:
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
        full = synchronous.upper() in ("FULL", "EXTRA", "2", "3")
        # The write-ahead log, fsynced by us after the commits marked durable (opened at the first: it exists
        # then, and this connection being open keeps SQLite from deleting it); None: SQLite syncs as configured.
        self._wal: Path | None = None
        self._wal_fd: int | None = None
        self._durable = False  # the transaction under way is to be fsynced once committed
        if read_only:
            # An operator's look: no write lock, no migration, so a daemon holding the lock never makes it wait
            # (WAL readers see the last commit while a writer writes).
            self._lock: FairLock | None = None
            return
        if not memory:
            conn.execute("PRAGMA journal_mode=WAL")
            if fsync == "observed" and full:  # the name SQLite gives its log: beside the file it opened
                self._wal = Path(conn.execute("PRAGMA database_list").fetchone()[2] + "-wal")
            conn.execute(f"PRAGMA synchronous={'NORMAL' if self._wal is not None else synchronous}")
            if full:
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
            self._durable = False
            try:
                yield
            except BaseException:
                self._on_commit.clear()
                self._durable = False
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._depth = 0
        finally:
            if lock is not None:
                lock.release()
        if self._durable:
            # After the lock is freed: the other process writes meanwhile (a log that a checkpoint then restarts
            # was synced by that checkpoint, into the database). An fsync here takes 0.7 ms; with every commit
            # fsynced under the lock, at 500 webhooks/s acknowledgements took p50/p99 10-19/76-438 ms, fsyncing
            # only these 6.5-9.5/90-105 ms (A/B runs at load under 3).
            self._durable = False
            self._sync_wal()
        callbacks, self._on_commit = self._on_commit, []
        for callback in callbacks:
            callback()

    def durable(self) -> None:
        """The transaction under way is seen outside the process once committed (a 2xx, a call begun): `atomic()`
        returns only once it is on disk. Every commit is, unless the connection was opened with
        `fsync="observed"`; with synchronous NORMAL, none is."""
        if self._wal is not None and self._depth:
            self._durable = True

    def _sync_wal(self) -> None:
        if self._wal_fd is None:
            assert self._wal is not None
            self._wal_fd = os.open(self._wal, os.O_RDONLY)
        os.fdatasync(self._wal_fd)

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
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
