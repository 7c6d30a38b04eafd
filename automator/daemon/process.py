"""Wires project, store, connectors and loops into one daemon; signals set flags; a graceful stop flushes all.

The work is done by the parts this module assembles, each in its own module: `admission` (events in, group
commit, backlog), `supervisor` (the engine process and its pipes), `reload` (watching and swapping the rules),
`catchup` (polling), `health` (/healthz, /metrics, the status record), `web` (HTTP), `outbox` and `engine`.
The Daemon owns their lifecycle: the order they start and stop in.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn

from automator.clock import Clock, SystemClock
from automator.config.problems import Problem
from automator.config.project import Project
from automator.connector import Connector
from automator.daemon import protocol
from automator.daemon.admission import Admission
from automator.daemon.catchup import Pollers
from automator.daemon.connectors import build_connectors, close_connectors
from automator.daemon.deadline import StopDeadline
from automator.daemon.engine import Engine
from automator.daemon.health import Health
from automator.daemon.instance import NUDGE, InstanceLock
from automator.daemon.listener import CannotListen, guarded_protocol, listen
from automator.daemon.metrics import LockTime, Metrics
from automator.daemon.options import DaemonOptions, daemon_options
from automator.daemon.outbox import Outbox
from automator.daemon.reload import Swapper, watch
from automator.daemon.retry import RetryPolicy
from automator.daemon.running import Running
from automator.daemon.storethread import StoreThread
from automator.daemon.supervisor import EngineChild
from automator.daemon.timers import sync_schedules
from automator.daemon.web import WebApp
from automator.daemon.worker import BatchReport
from automator.store.journal import worker_name

log = logging.getLogger(__name__)
OUTBOX_DEADLINE = 30.0  # seconds a call may take: retired connectors are closed after it
# Seconds from a stop to the exit at most: a call in flight has its deadline, then whatever still runs is abandoned.
STOP_DEADLINE = OUTBOX_DEADLINE + 10.0


class NoSignals(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT (uvicorn would re-raise them
    after its shutdown, and the process would not exit 0).

    Nor its tick: uvicorn's main loop wakes ten times a second to see whether it should exit and to renew the Date
    header. Here it sleeps until `should_exit` is set, and the header is made by the answers (DatedState): an idle
    daemon's web side takes no CPU.
    """

    _should_exit = False
    _exit: asyncio.Event | None = None  # set with should_exit, once main_loop waits on it
    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, config: uvicorn.Config) -> None:
        from automator.daemon.listener import DatedState

        super().__init__(config)
        self.server_state = DatedState(config)

    @property
    def should_exit(self) -> bool:
        """Whether the server is to stop (set by `Daemon.stop`, from any thread)."""
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._exit is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._exit.set)

    async def main_loop(self) -> None:
        """Wait for `should_exit` (uvicorn's would poll it every 0.1 s)."""
        self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        if not self.should_exit:  # after the event exists: a stop from now on sets it
            await self._exit.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    """One `automator run`: webhooks in, rules decided, effects out, timers kept."""

    owns_process = False  # set by run_daemon: a stop then ends the whole process within STOP_DEADLINE

    def __init__(self, project: Project, options: DaemonOptions | None = None, *, clock: Clock | None = None,
                 connector_types: Mapping[str, type[Connector]] | None = None,
                 policy: RetryPolicy | None = None) -> None:
        """`options`: how an operator runs it (see automator.daemon.options), by default as `automator run` with no
        flags would; the keywords are collaborators a test replaces."""
        self.options = options if options is not None else daemon_options(project.root, project.config)
        self.running = Running(project)
        self.root = project.root
        self.port = self.options.port  # --port 0: the one the system chose, once listening
        self.clock = clock or SystemClock()
        self.connector_types = connector_types
        self.policy = policy or self.options.retry
        self.metrics = Metrics()
        self.worker = worker_name()
        self.emulators: dict[str, Any] = {}  # --sandbox: the emulated systems, served under /_sandbox/<name>
        self.child: EngineChild | None = None
        self.server: NoSignals | None = None
        self.stopping = asyncio.Event()
        self.wake_worker = asyncio.Event()  # events were journaled (the engine of this process decides them)
        self.wake_timers = asyncio.Event()  # the timers may have changed (a reload)
        self.deadline = StopDeadline(self._kill_child)

    @property
    def address(self) -> str:
        """Where the daemon listens, as a URL (once listening, with the port the system chose for --port 0)."""
        return f"http://{self.options.host}:{self.port}"

    @property
    def project(self) -> Project:
        """The project in service (a reload replaces it)."""
        return self.running.project

    @property
    def connectors(self) -> dict[str, Connector]:
        """The connectors in service (a reload replaces them)."""
        return self.running.connectors

    @property
    def load_errors(self) -> list[Problem]:
        """Why the last reload was refused; empty once one is swapped in."""
        return self.running.load_errors

    # ---- the parts -------------------------------------------------------------------------------
    def open(self, *, group: bool | None = None) -> None:
        """Open the store threads and assemble the parts that use them (serve() does it once it listens).

        `group`: the journal's writer groups calls (one fsync for what queued up meanwhile); by default when an
        engine process shares the store."""
        options = self.options
        two = options.processes == 2
        # Both journal what connectors report (webhooks, polls, actions' answers: with --processes 1 the engine's
        # thread settles effects too), so both resolve their ids to persons.
        systems = self.project.config.systems
        self.engine = StoreThread(options.db_path, "engine", synchronous=options.synchronous, systems=systems)
        # Webhooks journaled and, with an engine process, effects claimed and settled: what queues up while one
        # transaction is written goes into the next one together (one fsync).
        self.journal = StoreThread(options.db_path, "journal", synchronous=options.synchronous,
                                   group=two if group is None else group, systems=systems)
        self.admission = Admission(self.journal, self.clock, self.stopping, on_journaled=self.wake_engine,
                                   max_backlog=options.max_backlog)
        # Counting rows is slow with a million timers: never inside a (grouped) write transaction.
        self.health = Health(self.running, self.stopping, self.metrics, self.clock, writer=self.journal,
                             reader=self.engine if two else self.journal,
                             lock_time=LockTime(self.journal.store.lock, "daemon"),
                             address=self.address, sandbox=options.sandbox)
        self.reloader = Swapper(self.running, self.metrics, connectors_of=self.connectors_of, swapped=self._swapped,
                                heartbeat=self.health.heartbeat, retire_after=OUTBOX_DEADLINE)
        self.pollers = Pollers(self.running, self.journal, self.admission.append, self.stopping,
                               serving=lambda: self.server is not None and self.server.started)

    def close(self) -> None:
        """Close the store threads (after serve(), or a test's use of the parts)."""
        self.journal.close()
        self.engine.close()

    def web_app(self) -> WebApp:
        """The ASGI app, given the parts it needs."""
        return WebApp(self.admission, self.health, self.running, metrics=self.metrics, clock=self.clock,
                      max_body=self.options.max_body, emulators=self.emulators)

    async def connectors_of(self, project: Project) -> dict[str, Connector]:
        """Build `project`'s connectors (on the engine's store thread: `local` ones use its database)."""
        db = self.engine.store.db
        address = self.address if self.options.sandbox else None
        return await self.engine.call(lambda _s: build_connectors(project, db, self.clock, sandbox=address,
                                                                  emulators=self.emulators,
                                                                  types=self.connector_types))

    # ---- lifecycle -------------------------------------------------------------------------------
    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; then stop accepting, finish in-flight work, flush, and return 0.

        Raises AlreadyRunning at once, before the database is opened, when another daemon runs on it."""
        loop = asyncio.get_running_loop()
        # Before the claim: an operator's command nudges a daemon it sees holding it, and SIGUSR1 would end the
        # process if nothing caught it.
        loop.add_signal_handler(NUDGE, self.nudged)
        try:
            claim = InstanceLock(self.options.db_path)
            claim.acquire()
            try:
                return await self._serve()
            finally:
                claim.release()
        finally:
            loop.remove_signal_handler(NUDGE)

    async def _serve(self) -> int:
        options = self.options
        try:  # first: a port that is taken ends the daemon before anything is started
            listener = listen(options.host, self.port, options.limits.backlog)
        except CannotListen as exc:
            log.error("%s", exc)
            return 1
        self.port = listener.getsockname()[1]  # --port 0: the one the system chose
        self.open()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig)
        try:
            self.running.connectors = await self.connectors_of(self.project)
            await self._recover()
            two = options.processes == 2
            # With an engine process, this one performs the effects of every connector but those writing into
            # the store (`local`): the engine process performs those, on its store thread, between its batches.
            self.outbox = Outbox(self.journal if two else self.engine, lambda: self.connectors, worker=self.worker,
                                 clock=self.clock, metrics=self.metrics, policy=self.policy, on_events=self.wake_engine,
                                 handles=(lambda c: not c.in_store) if two else None)
            server = NoSignals(uvicorn.Config(self.web_app(), host=options.host, port=self.port, lifespan="off",
                                              proxy_headers=False, log_config=None, access_log=False,
                                              http=guarded_protocol(options.limits, self.metrics), loop="none",
                                              timeout_graceful_shutdown=10, backlog=options.limits.backlog,
                                              limit_concurrency=options.limits.max_connections))
            self.server = server
            tasks = [asyncio.create_task(self.admission.run(), name="appender"),
                     asyncio.create_task(self.outbox.run(self.stopping), name="outbox"),
                     asyncio.create_task(self.health.beat(), name="heartbeat")]
            if two:
                self.child = EngineChild(self.metrics, on_decided=self.admission.decided,
                                         on_effects=self.outbox.wake.set)
                self.child.start({"root": str(self.root), "db": str(options.db_path),
                                  "synchronous": options.synchronous,
                                  "sandbox": self.address if options.sandbox else None,
                                  "retention_s": options.retention.total_seconds(), **options.log.for_child()})
                tasks.append(asyncio.create_task(self.child.watch(self.stopping, self.stop), name="engine-process"))
            else:
                decider = Engine(self.engine, lambda: self.project, worker=self.worker, clock=self.clock,
                                 metrics=self.metrics, retention=options.retention, on_decided=self._decided,
                                 wake=self.wake_worker, wake_timers=self.wake_timers)
                tasks.append(asyncio.create_task(decider.run(self.stopping), name="engine"))
            if options.reload:
                tasks.append(asyncio.create_task(watch(self.root, self.stopping, self.reloader.swap), name="reload"))
            self.pollers.start()
            await self.health.heartbeat()
            log.info("serving on %s with %d rules%s", self.address, len(self.project.rules),
                     " (sandbox)" if options.sandbox else "", extra={"version": self.project.version})
            await server.serve(sockets=[listener])
            self.stopping.set()  # the server ended on its own (it could not start) or after stop()
            self.admission.close()
            if self.child is not None:
                self.child.terminate()  # it finishes the batch it is deciding and writes it
            await asyncio.gather(*tasks, *self.pollers.tasks.values(), return_exceptions=True)
            await close_connectors(self.connectors.values())
            await self.health.heartbeat(stopped=True)
            if not server.started:
                log.error("could not serve on %s:%d (see above); stopped", options.host, self.port)
                return 1
            log.info("stopped cleanly")
            return 0
        finally:
            listener.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.close()

    def stop(self, sig: int | None = None) -> None:
        """Stop accepting webhooks; the loops finish what they hold and return."""
        if sig is not None:
            log.info("received %s: stopping", signal.Signals(sig).name)
        self.stopping.set()
        if self.owns_process:
            self.deadline.arm(STOP_DEADLINE)
        if self.server is not None:
            self.server.should_exit = True

    def _kill_child(self) -> None:
        if self.child is not None:
            self.child.kill()

    async def _recover(self) -> None:
        """What an earlier life left half done is put right before anything new is accepted."""
        now = self.clock.now()
        events = await self.engine.call(lambda s: s.release_dead_claims(self.worker))
        self.admission.backlog = (await self.engine.call(lambda s: s.journal_lag(now)))[0]
        repeatable = frozenset(n for n, c in self.connectors.items() if c.deduplicates)
        retried, parked, unstarted = await self.engine.call(
            lambda s: s.release_dead_effects(self.worker, now, repeatable))
        if events or retried or parked or unstarted:
            log.warning("recovered after a crash: %d events to decide again, %d effects never called to perform, %d "
                        "effects to retry, %d effects parked as uncertain", events, unstarted, retried, parked)
        await self.engine.call(sync_schedules, self.project, now)

    # ---- between the parts -----------------------------------------------------------------------
    def nudged(self) -> None:
        """Another process wrote work into the store (SIGUSR1 from an operator's command, see instance.nudge):
        every loop of both processes looks now; they sleep until woken otherwise."""
        log.debug("nudged: looking for work written by another process")
        self.wake_worker.set()
        self.wake_timers.set()
        outbox: Outbox | None = getattr(self, "outbox", None)  # None before the daemon serves
        if outbox is not None:
            outbox.wake.set()
        if self.child is not None:
            self.child.tell(protocol.NUDGE)

    def wake_engine(self) -> None:
        """Events were journaled: the engine decides them now (not at its next look, a second later)."""
        self.wake_worker.set()
        if self.child is not None:
            self.child.tell(protocol.JOURNALED)

    def _decided(self, report: BatchReport) -> None:
        """A batch of decisions was written by the engine in this process."""
        self.admission.decided(report.events + report.failed)
        if any(d.effects for d in report.decisions):
            self.outbox.wake.set()

    async def _swapped(self, project: Project) -> None:
        """A reload put `project` in place: its schedules, the timers loop, the engine process and the pollers
        follow."""
        # The connectors whose ids are their own may have changed. Set from here while the store threads work:
        # one assignment of a frozenset, so an event being journaled is resolved by the old set or the new one.
        for thread in (self.engine, self.journal):
            thread.store.set_systems(project.config.systems)
        await self.engine.call(sync_schedules, project, self.clock.now())
        self.wake_timers.set()  # a new schedule may be due before the timers loop would look again
        if self.child is not None:
            self.child.tell(protocol.RELOAD)
        self.pollers.start()


def run_daemon(daemon: Daemon) -> int:
    """Run a daemon to its end on uvloop (when installed); the process exit code.

    The daemon owns the process: once it is told to stop, the process ends within STOP_DEADLINE even if a thread
    hangs (see automator.daemon.deadline).
    """
    daemon.owns_process = True
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(daemon.serve())
