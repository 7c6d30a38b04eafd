"""The engine in a process of its own (the default; `automator run --processes 1` keeps it in the daemon's).

Deciding rules is the daemon's heaviest work and Python runs one thread at a time: in a second process it has a
core of its own, while the first process serves webhooks and performs effects. The daemon starts it with two
pipes (see automator.daemon.supervisor) and the two speak automator.daemon.protocol over them; end of file means
the daemon is gone. Everything else goes through the store, shared by the two processes: they take turns at its
write lock (a lock file beside it).

This process also performs the effects of connectors that write into the store (`local`), on its store thread
between its batches: a batch is decided before its write lock is taken, and nothing else may change entities
meanwhile.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from automator.clock import SystemClock
from automator.config.load import load_project
from automator.connector import Connector
from automator.daemon import protocol
from automator.daemon.connectors import build_connectors, close_connectors
from automator.daemon.engine import Engine
from automator.daemon.metrics import LockTime
from automator.daemon.outbox import Outbox
from automator.daemon.reload import BoundedLoader
from automator.daemon.retry import retry_policy
from automator.daemon.storethread import StoreThread
from automator.daemon.worker import BatchReport
from automator.store.journal import worker_name

log = logging.getLogger(__name__)
METRICS_EVERY = 0.5  # seconds between counter updates sent to the daemon

# The process's first lines, run by `python -c START DAEMON_PID SETTINGS_JSON COMMANDS_FD REPLIES_FD` before anything
# else is imported (importing automator takes a good part of a second). The two processes are one daemon: if the
# daemon is killed, this one is killed with it (Linux's death signal, asked for first), as if they were one process,
# so that recovery after a crash never meets a half-alive daemon. A daemon that died before that line is seen by
# this process's parent no longer being the daemon (an orphan is handed to init or to a subreaper, such as
# systemd's or a container's): it is killed the same way, at once.
START = """\
import os, signal, sys
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    os.kill(os.getpid(), signal.SIGKILL)
from automator.daemon.engine_process import main
sys.exit(main(sys.argv[2:]))
"""


class Tally:
    """Counters with prometheus_client's `.labels(...).inc()` shape, under any name, kept to be sent on."""

    def __init__(self, on_first: Callable[[], None] = lambda: None) -> None:
        self.counts: dict[tuple[str, tuple[str, ...]], float] = {}
        self.on_first = on_first  # called when a count is added to none: the reporter is woken only then

    def __getattr__(self, name: str) -> _Counter:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Counter(self, name)

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
        counts = self.tally.counts
        if not counts:
            self.tally.on_first()
        counts[self.key] = counts.get(self.key, 0.0) + amount


async def serve(settings: Mapping[str, Any], commands: int, replies: int) -> int:
    """Decide and fire timers until told to stop (SIGTERM, SIGINT or the daemon's pipe closing); the exit code."""
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

    def tell(reply: protocol.Reply) -> None:
        if not protocol.send(replies, reply):
            stopping.set()  # the daemon is gone

    clock = SystemClock()
    store = StoreThread(settings["db"], "engine", synchronous=settings.get("synchronous", "FULL"))
    state: dict[str, Any] = {"project": project}

    async def connectors_of(project: Any) -> dict[str, Connector]:
        return await store.call(lambda s: {name: c for name, c in build_connectors(
            project, s.db, clock, sandbox=settings["sandbox"], emulators=None, announce=False).items()
            if c.in_store})

    state["connectors"] = await connectors_of(project)
    # Said once its connectors are built: the operator (and a test) knows the engine process is ready.
    log.info("engine process ready: %d rules, version %s", len(project.rules), project.version)
    # Counters go to the daemon METRICS_EVERY seconds after the first one since the last report, not on a timer:
    # an idle engine process does nothing. Counts are added on the event loop's thread.
    lock_time = LockTime(store.store.lock, "engine")
    due: list[asyncio.TimerHandle] = []  # the report scheduled, if one is

    def send_counts() -> None:
        lock_time.feed(tally)  # while `due` is held: what it adds schedules no other report
        counts = tally.drain()
        due.clear()
        if counts:
            tell(protocol.Counters(counts))

    def first_count() -> None:
        if not due and not stopping.is_set():
            due.append(loop.call_later(METRICS_EVERY, send_counts))

    tally = Tally(first_count)
    worker = worker_name()

    def decided(report: BatchReport) -> None:
        tell(protocol.Decided(report.events + report.failed))
        effects = [e for d in report.decisions for e in d.effects]
        if effects:
            tell(protocol.EFFECTS_COMMITTED)
            # This process's outbox only if one is its own (an in-store connector's): woken for every batch, it took
            # the write lock to claim nothing and read when the next effect is due.
            if any(e.connector in state["connectors"] for e in effects):
                outbox.wake.set()

    engine = Engine(store, lambda: state["project"], worker=worker, clock=clock, metrics=tally,
                    retention=timedelta(seconds=float(settings.get("retention_s", 30 * 86400))), on_decided=decided)
    outbox = Outbox(store, lambda: state["connectors"], worker=worker, clock=clock, metrics=tally,  # type: ignore[arg-type]
                    policy=retry_policy(project.config.daemon.get("retry") or {}), on_events=engine.wake.set,
                    handles=lambda c: c.in_store)

    # On a daemon thread, bounded: a load that hangs neither keeps this process alive nor holds the next one up.
    loader = BoundedLoader(Path(settings["root"]))

    async def reload() -> None:
        loaded = await loader.load(stopping)
        if loaded is None:
            return  # stopping
        fresh, problems = loaded
        if fresh is None:
            # The files changed again since the daemon loaded them (it refuses them too), or the load hung.
            log.error("the new rules did not load here; the old ones stay in place: %s",
                      "; ".join(p.format().replace("\n", " ") for p in problems))
            return
        old, state["connectors"] = list(state["connectors"].values()), await connectors_of(fresh)
        state["project"] = fresh
        engine.wake_timers.set()
        log.info("engine process reloaded: %d rules, version %s", len(fresh.rules), fresh.version)
        loop.call_later(outbox.deadline, lambda: loop.create_task(close_connectors(old)))

    lines = protocol.Lines()

    def readable() -> None:
        data = os.read(commands, 65536)
        if not data:
            stopping.set()  # the daemon is gone
            return
        for command in lines.messages(data, protocol.decode_command):
            if command is protocol.JOURNALED:
                engine.wake.set()
            elif command is protocol.RELOAD:
                loop.create_task(reload())
            elif command is protocol.NUDGE:  # an operator's command wrote work into the store
                engine.wake.set()
                engine.wake_timers.set()
                outbox.wake.set()

    loop.add_reader(commands, readable)

    try:
        await asyncio.gather(engine.run(stopping), outbox.run(stopping))
    finally:
        for handle in due:
            handle.cancel()
        send_counts()
        loop.remove_reader(commands)
        await close_connectors(state["connectors"].values())
        store.close()
    return 0


def main(argv: list[str]) -> int:
    """`SETTINGS_JSON COMMANDS_FD REPLIES_FD`, once START has bound this process to the daemon's life."""
    from automator.daemon import crashpoints
    from automator.daemon.logs import setup_logging

    settings = json.loads(argv[0])
    crashpoints.role = "engine"
    # What the log lines never show, not gathered for each record: the caller's frame (a walk up the stack), the
    # thread, the process id (a system call) and the process name. A line per run decided is a good part of this
    # process's work (py-spy at 500 events/s: logging 17 % of its Python time).
    logging._srcfile = None  # the logging HOWTO's way ("Optimization")
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    setup_logging(settings.get("log_format", "text"), settings.get("log_level", "INFO"),
                  mask=settings.get("mask", True))
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(settings, int(argv[1]), int(argv[2])))
