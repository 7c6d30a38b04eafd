"""An operator's command that writes work into a running daemon's store nudges it (SIGUSR1 to the pid in its
instance file, only while the daemon holds it), and a nudged daemon wakes every loop of both processes."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from automator.config.load import load_project
from automator.daemon import protocol
from automator.daemon.options import daemon_options
from automator.daemon.instance import NUDGE, InstanceLock, instance_file, nudge
from automator.daemon.process import Daemon


def test_a_daemon_holding_its_database_is_nudged(tmp_path: Path) -> None:
    heard: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        heard.append(signum)

    previous = signal.signal(NUDGE, handler)
    claim = InstanceLock(tmp_path / "a.db")  # this process plays the daemon: its pid is in the file
    claim.acquire()
    try:
        assert nudge(tmp_path / "a.db")
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # let the handler run
        assert heard == [NUDGE]
    finally:
        claim.release()
        signal.signal(NUDGE, previous)


def test_nobody_is_signalled_without_a_daemon(tmp_path: Path) -> None:
    assert not nudge(tmp_path / "never.db")  # no daemon ever ran on it
    # A daemon that ended left its file (with no pid, or another's): the lock is free, so nobody is signalled.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        instance_file(tmp_path / "a.db").write_text(f"{sleeper.pid}\n")
        assert not nudge(tmp_path / "a.db")
        assert sleeper.poll() is None  # SIGUSR1 would have ended it
    finally:
        sleeper.kill()
        sleeper.wait()


class Told:
    def __init__(self) -> None:
        self.commands: list[protocol.Command] = []

    def tell(self, command: protocol.Command) -> None:
        self.commands.append(command)


def test_a_nudged_daemon_wakes_its_loops_and_its_engine_process(make_project, tmp_path: Path) -> None:
    project, problems = load_project(make_project("rules: []\n"))
    assert project is not None, problems

    async def go() -> None:
        daemon = Daemon(project, daemon_options(project.root, project.config, db_path=tmp_path / "n.db",
                                                reload=False))
        child = Told()
        daemon.child = child  # type: ignore[assignment]
        daemon.nudged()  # before it serves: no outbox yet, and nothing fails
        assert daemon.wake_worker.is_set() and daemon.wake_timers.is_set()
        assert child.commands == [protocol.NUDGE]

        class Outbox:
            wake = asyncio.Event()

        daemon.outbox = Outbox()  # type: ignore[assignment]
        daemon.nudged()
        assert Outbox.wake.is_set()

    asyncio.run(go())

