"""One daemon per database: an exclusive lock on `<db>-daemon.pid`, held for the daemon's whole life.

Two daemons on one database would both journal, decide and perform effects: every effect could go out twice and
every timer fire twice. The first `automator run` takes an advisory lock (flock) on a file beside the database
and writes its pid into it; a second one finds the lock taken and stops at once, naming the database and the
holder's pid. The kernel frees the lock when its holder dies, however it dies, so a crashed daemon never leaves
a stale lock behind (a pid file without the lock would).

An operator's command that writes work a running daemon must act on (`automator dead --replay`) tells it so with
`nudge()`: SIGUSR1 to the pid in the file, sent only while the lock is held (so never to a pid a dead daemon left
behind). The daemon's loops sleep until they are woken; without the nudge the work would wait for their next look.

This is not the write lock (`<db>-lock`, `store/sqlite.py`'s FairLock): that one is taken for each transaction by
every process writing the database (the daemon's two processes, an operator replaying a dead letter). This one is
taken once, by the daemon's first process only: operator commands never touch it and work while it is held.
"""
from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

NUDGE = signal.SIGUSR1  # the daemon's first process: "work was written into the store; look for it now"


class AlreadyRunning(Exception):
    """Another daemon holds the database."""


def instance_file(db: Path) -> Path:
    """The lock file of a database's daemon (beside the real file: two paths to one database share it)."""
    return Path(f"{db.resolve()}-daemon.pid")


class InstanceLock:
    """The daemon's claim on its database; `acquire()` before anything else opens the database."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = instance_file(db)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this process's pid into the file, or raise AlreadyRunning at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Not inheritable (Python's default): the engine process must not keep the claim alive after the daemon.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(f"another daemon (pid {holder}) is running on {self.db.resolve()} "
                                 f"(it holds {self.path.name}); stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the claim up (the file stays: removing it would race with a daemon starting now)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def holder(db: Path) -> int | None:
    """The pid of the daemon running on `db`, None when none is: the lock must be held (a pid a dead daemon left in
    the file is no one's)."""
    try:
        fd = os.open(instance_file(db), os.O_RDONLY)
    except OSError:
        return None  # no daemon ever ran on it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a daemon is running
        else:
            return None
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(pid) if pid.isdigit() else None
    finally:
        os.close(fd)


def nudge(db: Path) -> bool:
    """Tell the daemon running on `db`, if one is, that work was written into its store (SIGUSR1); True if told.

    A daemon of another user cannot be signalled: it finds the work at its next look."""
    pid = holder(db)
    if pid is None:
        return False
    try:
        os.kill(pid, NUDGE)
    except OSError:
        return False
    return True
