"""The write lock: a FIFO turn inside a process, and a turn across processes taken once the other process frees it
or dies, given up after the timeout with SQLite's words."""
from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from automator.store.lock import FairLock

# Another process writing the database: takes the write lock, says so, and frees it when told (a line on stdin),
# or is killed holding it.
HOLDER = """
import sys
from pathlib import Path
from automator.store.lock import FairLock
lock = FairLock(Path(sys.argv[1]))
lock.acquire(60.0)
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("freed", flush=True)
sys.stdin.readline()
"""


class Holder:
    """A process holding the lock file until `free()` (or `kill()`)."""

    def __init__(self, file: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(file)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline() == "held\n"

    def free(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "freed\n"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def free_for_others(file: Path) -> bool:
    """Whether another open file description could take the lock at once (nobody here holds it)."""
    fd = os.open(file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def acquire_on_a_thread(lock: FairLock, timeout: float) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []

    def take() -> None:
        try:
            lock.acquire(timeout)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=take)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("lets_go", ["frees it", "dies"])
def test_a_turn_held_by_another_process_is_handed_over_when_it_lets_go(tmp_path: Path, lets_go: str) -> None:
    file = tmp_path / "db-lock"
    lock = FairLock(file)
    holder = Holder(file)
    try:
        assert not lock.try_acquire()
        thread, outcome = acquire_on_a_thread(lock, 60.0)
        thread.join(0.2)
        assert thread.is_alive() and not outcome  # waiting for the other process
        if lets_go == "dies":
            holder.kill()  # the kernel frees its lock
        else:
            holder.free()
        thread.join(60.0)
        assert outcome == [None]
        assert not free_for_others(file)  # this process holds it now
        lock.release()
        assert free_for_others(file)
    finally:
        holder.end()


def test_a_turn_not_handed_over_in_time_fails_as_sqlite_would_and_leaves_nothing_held(tmp_path: Path) -> None:
    file = tmp_path / "db-lock"
    lock = FairLock(file)
    holder = Holder(file)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked .another process held it too long"):
            lock.acquire(0.05)
        assert not lock.try_acquire()
        holder.free()
        other = Holder(file)  # nothing of the given-up wait holds the lock: another process takes it
        other.free()
        other.end()
        lock.acquire(60.0)
        assert not free_for_others(file)
        lock.release()
        assert free_for_others(file)
    finally:
        holder.end()


def test_the_threads_of_one_process_take_their_turns_in_the_order_they_asked(tmp_path: Path) -> None:
    lock = FairLock(tmp_path / "db-lock")
    lock.acquire(1.0)
    order: list[int] = []
    threads = []
    for i in range(5):
        asked = threading.Event()

        def take(i: int = i, asked: threading.Event = asked) -> None:
            asked.set()
            lock.acquire(60.0)
            order.append(i)
            lock.release()

        thread = threading.Thread(target=take)
        thread.start()
        asked.wait()
        while len(lock._waiters) < i + 1:  # queued behind the holder before the next one asks
            threading.Event().wait(0.001)
        threads.append(thread)
    lock.release()
    for thread in threads:
        thread.join(60.0)
    assert order == [0, 1, 2, 3, 4]


def test_a_thread_waiting_behind_another_of_its_process_gives_up_with_sqlites_words(tmp_path: Path) -> None:
    lock = FairLock(tmp_path / "db-lock")
    lock.acquire(1.0)
    with pytest.raises(sqlite3.OperationalError, match="a write of this process held it too long"):
        lock.acquire(0.05)
    lock.release()
    lock.acquire(1.0)
    lock.release()
