"""The outbox in a process of its own (`automator run --outbox-process`): effects are performed on another core.

The daemon starts it with two pipes. Lines from the daemon: `w` (effects were committed: look now), `r` (the
rules were reloaded: rebuild the connectors); end of file means the daemon is gone. Lines to the daemon: `j`
(settling journaled events: decide them), `m{json}` (counters for /metrics). Everything else goes through the
store, whose leases make it safe for two processes to share: this is the same outbox, on its own connection.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from automator.clock import SystemClock
from automator.config.load import load_project
from automator.connector import Connector
from automator.daemon.outbox import Outbox
from automator.daemon.storethread import StoreThread
from automator.store.journal import worker_name

log = logging.getLogger(__name__)
METRICS_EVERY = 0.5  # seconds between counter updates sent to the daemon


class Tally:
    """The outbox's counters, with prometheus_client's `.labels(...).inc()` shape, kept to be sent on."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, tuple[str, ...]], float] = {}
        self.effects = _Counter(self, "effects")
        self.effect_retries = _Counter(self, "effect_retries")

    def drain(self) -> list[list[Any]]:
        """The increments since the last drain, as `[name, labels, amount]`."""
        out = [[name, list(labels), amount] for (name, labels), amount in self.counts.items()]
        self.counts = {}
        return out


class _Counter:
    def __init__(self, tally: Tally, name: str) -> None:
        self.tally, self.name = tally, name

    def labels(self, *values: str) -> _Child:
        return _Child(self.tally, (self.name, tuple(str(v) for v in values)))


class _Child:
    def __init__(self, tally: Tally, key: tuple[str, tuple[str, ...]]) -> None:
        self.tally, self.key = tally, key

    def inc(self, amount: float = 1.0) -> None:
        self.tally.counts[self.key] = self.tally.counts.get(self.key, 0.0) + amount


async def serve(settings: Mapping[str, Any], commands: int, replies: int) -> int:
    """Perform effects until told to stop (SIGTERM, SIGINT or the daemon's pipe closing); the exit code."""
    from automator.daemon.process import _close, build_connectors, retry_policy

    project, problems = load_project(settings["root"])
    if project is None:
        for problem in problems:
            log.error("%s", problem.format())
        return 2
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    os.set_blocking(replies, False)

    def tell(line: bytes) -> None:
        try:
            os.write(replies, line)
        except BlockingIOError:  # the daemon is busy reading: it also looks by itself every second
            pass
        except OSError:
            stopping.set()

    clock = SystemClock()
    engine = StoreThread(settings["db"], "outbox", synchronous=settings.get("synchronous", "FULL"))
    state: dict[str, Any] = {"project": project}

    async def connectors_of(project: Any) -> dict[str, Connector]:
        return await engine.call(lambda store: build_connectors(project, store.db, clock, sandbox=settings["sandbox"],
                                                                emulators=None))

    state["connectors"] = await connectors_of(project)
    tally = Tally()
    outbox = Outbox(engine, lambda: state["connectors"], worker=worker_name(), clock=clock, metrics=tally,  # type: ignore[arg-type]
                    policy=retry_policy(project.config.daemon.get("retry") or {}), on_events=lambda: tell(b"j\n"),
                    handles=lambda c: not c.in_store)  # the daemon performs those itself

    async def reload() -> None:
        fresh, found = await asyncio.to_thread(load_project, settings["root"])
        if fresh is None:
            return  # the daemon refused it too and keeps the old rules
        old, state["connectors"] = list(state["connectors"].values()), await connectors_of(fresh)
        loop.call_later(outbox.deadline, lambda: loop.create_task(_close(old)))

    pending = bytearray()

    def readable() -> None:
        data = os.read(commands, 65536)
        if not data:
            stopping.set()  # the daemon is gone
            return
        pending.extend(data)
        *lines, rest = bytes(pending).split(b"\n")
        pending[:] = rest
        for line in lines:
            if line == b"w":
                outbox.wake.set()
            elif line == b"r":
                loop.create_task(reload())

    loop.add_reader(commands, readable)

    async def report() -> None:
        while not stopping.is_set():
            await asyncio.sleep(METRICS_EVERY)
            counts = tally.drain()
            if counts:
                tell(b"m" + json.dumps(counts).encode() + b"\n")

    reporter = loop.create_task(report())
    try:
        await outbox.run(stopping)
    finally:
        reporter.cancel()
        counts = tally.drain()
        if counts:
            tell(b"m" + json.dumps(counts).encode() + b"\n")
        loop.remove_reader(commands)
        await _close(state["connectors"].values())
        engine.close()
    return 0


def _die_with_the_daemon() -> None:
    """The two processes are one daemon: if the daemon is killed, this one is killed with it (Linux), as if they
    were one process, so that recovery after a crash never meets a half-alive daemon."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the daemon died before the line above: do not outlive it
        os._exit(1)


def main(argv: list[str]) -> int:
    """`python -m automator.daemon.outbox_process SETTINGS_JSON COMMANDS_FD REPLIES_FD`."""
    from automator.daemon.logs import setup_logging

    from automator.daemon import crashpoints

    settings = json.loads(argv[0])
    crashpoints.role = "outbox"
    _die_with_the_daemon()
    setup_logging(settings.get("log_format", "text"), settings.get("log_level", "INFO"),
                  mask=settings.get("mask", True))
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(settings, int(argv[1]), int(argv[2])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
