"""Wires project, store, connectors and loops into one daemon; signals set flags; a graceful stop flushes all."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn

from automator.clock import Clock, SystemClock, parse_duration
from automator.config.load import builtin_connectors
from automator.config.problems import Problem
from automator.config.project import Project
from automator.connector import ConfigError, Connector, MissingEnv, env_values, resolve_env
from automator.daemon import crashpoints, worklog
from automator.daemon.catchup import interval, poll_forever
from automator.daemon.engine import Engine, sleep
from automator.daemon.engine_process import START as ENGINE_START
from automator.daemon.instance import InstanceLock
from automator.daemon.listener import CannotListen, Limits, guarded_protocol, listen
from automator.daemon.metrics import LockTime, Metrics
from automator.daemon.outbox import Outbox
from automator.daemon.reload import watch
from automator.daemon.retry import RetryPolicy
from automator.daemon.storable import UNSTORABLE
from automator.daemon.storethread import GroupCommit, StoreThread
from automator.daemon.timers import sync_schedules
from automator.daemon.web import WebApp
from automator.daemon.worker import BatchReport
from automator.model import Event
from automator.store.journal import worker_name
from automator.store.sqlite import SqliteStore

log = logging.getLogger(__name__)
HEARTBEAT = 2.0  # seconds between status records that `automator status` reads
RETENTION = timedelta(days=30)
MAX_BODY = 1_000_000
MAX_BACKLOG = 1000  # undecided events past which webhooks are slowed down (see journal_append)
MAX_ADMISSION_WAIT = 1.0  # seconds a webhook may be held back at most
OUTBOX_DEADLINE = 30.0  # seconds a call may take: retired connectors are closed after it
# Seconds from a stop to the exit at most: a call in flight has its deadline, then whatever still runs is abandoned.
STOP_DEADLINE = OUTBOX_DEADLINE + 10.0


def store_path(project: Project) -> Path:
    """The database file: `store:` of automator.yaml, relative to the project, `automator.db` by default."""
    path = Path(project.config.store or "automator.db")
    return path if path.is_absolute() else project.root / path


def append_batches(store: SqliteStore, batches: list[list[tuple[Event, str | None]]], now: datetime, *,
                   apart: bool = False) -> list[list[bool] | Exception]:
    """Journal the events of many requests in one transaction: one fsync for the lot (group commit).

    With `apart`, each request's events are written in a savepoint of their own: those that cannot be stored
    (UNSTORABLE) are undone alone and their error is that request's result (the daemon's second try of a group
    that failed so; the first does without the savepoints).
    """
    def append(batch: list[tuple[Event, str | None]]) -> list[bool]:
        return store.append([e for e, _ in batch], now, digests=[d for _, d in batch], echoes=echoes)

    def append_apart(batch: list[tuple[Event, str | None]]) -> list[bool] | Exception:
        try:
            with store.atomic():
                return append(batch)
        except UNSTORABLE as exc:
            return exc

    with store.atomic():
        echoes = store.expecting_echoes(now)
        results: list[list[bool] | Exception] = [(append_apart if apart else append)(batch) for batch in batches]
        crashpoints.reached("journal.before_commit")
    crashpoints.after_commit(store, "journal.after_commit")
    return results


def build_connectors(project: Project, db: Any, clock: Clock, *, sandbox: str | None = None,
                     emulators: dict[str, Any] | None = None,
                     types: Mapping[str, type[Connector]] | None = None,
                     announce: bool = True) -> dict[str, Connector]:
    """One instance per connector of automator.yaml, its `${env:...}` secrets resolved.

    With `sandbox` (the daemon's own address), every connector that talks to an outside system is pointed at
    its emulator, served by the daemon under `/_sandbox/<name>` and sending its webhooks to `/hooks/<name>`;
    the emulators are kept in `emulators` (an existing one is reused, so a reload keeps its data). A connector
    type without an emulator is played by `local`. `announce`: log which system plays each connector (the
    daemon does; its engine process, building the same connectors, does not say it again).
    """
    from connectors.local import LocalConnector

    found = dict(types) if types is not None else builtin_connectors()
    out: dict[str, Connector] = {}
    missing: list[MissingEnv] = []  # every variable not set, reported at once
    for name, conf in project.config.connectors.items():
        cls = found.get(conf.type)
        if cls is None:
            raise ConfigError(f"connector {name!r}: type {conf.type!r} is not installed")
        options = {k: v for k, v in conf.options.items() if k != "type"}
        if sandbox is not None and not cls.in_store:
            emulated = cls.sandbox(name, options, base_url=f"{sandbox}/_sandbox/{name}",
                                   hook_url=f"{sandbox}/hooks/{name}")
            if emulated is None:
                if announce:
                    log.info("sandbox: connector %s (%s) is played by local", name, conf.type,
                             extra={"connector": name})
                cls, options = LocalConnector, {}
            else:
                options, emulator = emulated
                if emulators is not None:
                    kept = emulators.get(name)
                    emulators[name] = kept if kept is not None and type(kept) is type(emulator) else emulator
                if announce:
                    log.info("sandbox: connector %s (%s) talks to its emulator", name, conf.type,
                             extra={"connector": name})
                out[name] = cls.create(name, options, db=db, now=clock.now)
                continue
        try:
            resolved = resolve_env(options, f"connector {name!r}")
        except MissingEnv as exc:
            unset = {path for _, path, _ in exc.missing}
            if sandbox is None or not cls.in_store or not unset <= set(cls.webhook_auth):
                missing.append(exc)
                continue
            # In the sandbox, an in-store connector whose webhook secret is not set is one without it: it accepts
            # no webhook (401) and performs its actions, so the example runs on a fresh machine, opening nothing.
            resolved = resolve_env({k: v for k, v in options.items() if k not in unset}, f"connector {name!r}")
            if announce:
                log.warning("sandbox: connector %s accepts no webhooks: %s", name,
                            ", ".join(sorted(f"{path} needs {var}" for _, path, var in exc.missing)),
                            extra={"connector": name})
        if not missing:
            out[name] = cls.create(name, resolved, db=db, now=clock.now)
            out[name].secrets |= env_values(options)
    if missing:
        raise MissingEnv.combined(missing)
    for name, connector in out.items():
        connector.pipelines = {n: p for n, p in project.pipelines.items() if p.connector == name}
    return out


def retry_policy(settings: Mapping[str, Any]) -> RetryPolicy:
    """`daemon: {retry: ...}` of automator.yaml as a RetryPolicy."""
    default = RetryPolicy()
    seconds = {k: parse_duration(settings[k]).approx().total_seconds() for k in ("first_delay", "max_delay")
               if k in settings}
    return RetryPolicy(attempts=int(settings.get("attempts", default.attempts)),
                       base=seconds.get("first_delay", default.base), cap=seconds.get("max_delay", default.cap))


class NoSignals(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT (uvicorn would re-raise them
    after its shutdown, and the process would not exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    """One `automator run`: webhooks in, rules decided, effects out, timers kept."""

    owns_process = False  # set by run_daemon: a stop then ends the whole process within STOP_DEADLINE

    def __init__(self, project: Project, *, host: str = "127.0.0.1", port: int = 8080, sandbox: bool = False,
                 clock: Clock | None = None, db_path: str | Path | None = None, synchronous: str = "FULL",
                 connector_types: Mapping[str, type[Connector]] | None = None, policy: RetryPolicy | None = None,
                 reload: bool = True, max_body: int = MAX_BODY, processes: int = 2,
                 log_settings: Mapping[str, Any] | None = None) -> None:
        self.project = project
        self.root = project.root
        self.host, self.port, self.sandbox = host, port, sandbox
        self.clock = clock or SystemClock()
        self.db_path = Path(db_path) if db_path else store_path(project)
        self.synchronous = synchronous
        self.connector_types = connector_types
        self.lock_time = LockTime(None, "daemon")  # this process's turns at the write lock, once serving
        settings = project.config.daemon
        self.policy = policy or retry_policy(settings.get("retry") or {})
        self.reload = reload
        self.max_body = int(settings.get("max_body", max_body))
        self.max_backlog = int(settings.get("max_backlog", MAX_BACKLOG))
        self.limits = Limits.from_settings(settings)
        self.max_admission_wait = MAX_ADMISSION_WAIT
        self.backlog = 0  # accepted events not yet decided (an estimate; read from the store at start)
        self.retention = parse_duration(settings["keep_history"]).approx() if "keep_history" in settings \
            else RETENTION
        self.metrics = Metrics()
        self.worker = worker_name()
        self.started_at = self.clock.now()
        self.load_errors: list[Problem] = []
        self.connectors: dict[str, Connector] = {}
        self.emulators: dict[str, Any] = {}  # --sandbox: the emulated systems, served under /_sandbox/<name>
        self.processes = processes  # 2: rules are decided by a second process (another core)
        self.log_settings = dict(log_settings or {})
        self.child: subprocess.Popen[bytes] | None = None
        self.wake_worker = asyncio.Event()  # events were journaled (the engine of this process decides them)
        self.wake_timers = asyncio.Event()  # the timers may have changed (a reload)

    # ---- lifecycle -------------------------------------------------------------------------------
    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; then stop accepting, finish in-flight work, flush, and return 0.

        Raises AlreadyRunning at once, before the database is opened, when another daemon runs on it."""
        claim = InstanceLock(self.db_path)
        claim.acquire()
        try:
            return await self._serve()
        finally:
            claim.release()

    async def _serve(self) -> int:
        try:  # first: a port that is taken ends the daemon before anything is started
            listener = listen(self.host, self.port, self.limits.backlog)
        except CannotListen as exc:
            log.error("%s", exc)
            return 1
        self.port = listener.getsockname()[1]  # --port 0: the one the system chose
        self.stopping = asyncio.Event()
        self.room = asyncio.Event()  # set when the backlog is back under max_backlog
        self.engine = StoreThread(self.db_path, "engine", synchronous=self.synchronous)
        # Webhooks journaled and, with an engine process, effects claimed and settled: what queues up while one
        # transaction is written goes into the next one together (one fsync).
        self.journal = StoreThread(self.db_path, "journal", synchronous=self.synchronous, group=self.processes == 2)
        self.appender: GroupCommit[list[tuple[Event, str | None]], list[bool]] = GroupCommit(self._append_batch)
        self.lock_time = LockTime(self.journal.store.lock, "daemon")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig)
        try:
            self.connectors = await self._connectors(self.project)
            await self._recover()
            two = self.processes == 2
            # With an engine process, this one performs the effects of every connector but those writing into
            # the store (`local`): the engine process performs those, on its store thread, between its batches.
            self.outbox = Outbox(self.journal if two else self.engine, lambda: self.connectors, worker=self.worker,
                                 clock=self.clock, metrics=self.metrics, policy=self.policy, on_events=self.wake_engine,
                                 handles=(lambda c: not c.in_store) if two else None)
            server = NoSignals(uvicorn.Config(WebApp(self), host=self.host, port=self.port, lifespan="off",
                                              proxy_headers=False, log_config=None, access_log=False,
                                              http=guarded_protocol(self.limits, self.metrics), loop="none",
                                              timeout_graceful_shutdown=10, backlog=self.limits.backlog,
                                              limit_concurrency=self.limits.max_connections))
            self.server = server
            tasks = [asyncio.create_task(self.appender.run(), name="appender"),
                     asyncio.create_task(self.outbox.run(self.stopping), name="outbox"),
                     asyncio.create_task(self._beat(), name="heartbeat")]
            if two:
                self._start_child()
                tasks.append(asyncio.create_task(self._watch_child(), name="engine-process"))
            else:
                decider = Engine(self.engine, lambda: self.project, worker=self.worker, clock=self.clock,
                                 metrics=self.metrics, retention=self.retention, on_decided=self._decided,
                                 wake=self.wake_worker, wake_timers=self.wake_timers)
                tasks.append(asyncio.create_task(decider.run(self.stopping), name="engine"))
            if self.reload:
                tasks.append(asyncio.create_task(watch(self), name="reload"))
            self.pollers: dict[str, asyncio.Task[None]] = {}
            self._start_pollers()
            await self._heartbeat()
            log.info("serving on http://%s:%d with %d rules%s", self.host, self.port, len(self.project.rules),
                     " (sandbox)" if self.sandbox else "", extra={"version": self.project.version})
            await server.serve(sockets=[listener])
            self.stopping.set()  # the server ended on its own (it could not start) or after stop()
            self.appender.close()
            if self.child is not None:
                self.child.send_signal(signal.SIGTERM)  # it finishes the batch it is deciding and writes it
            await asyncio.gather(*tasks, *self.pollers.values(), return_exceptions=True)
            await _close(self.connectors.values())
            await self._heartbeat(stopped=True)
            if not server.started:
                log.error("could not serve on %s:%d (see above); stopped", self.host, self.port)
                return 1
            log.info("stopped cleanly")
            return 0
        finally:
            listener.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.journal.close()
            self.engine.close()

    # ---- the engine process ------------------------------------------------------------------------
    def _start_child(self) -> None:
        """Start `automator.daemon.engine_process` with a pipe each way (see that module for the lines)."""
        commands_r, self._commands = os.pipe()
        replies, replies_w = os.pipe()
        settings = {"root": str(self.root), "db": str(self.db_path), "synchronous": self.synchronous,
                    "sandbox": f"http://{self.host}:{self.port}" if self.sandbox else None,
                    "retention_s": self.retention.total_seconds(), **self.log_settings}
        self.child = subprocess.Popen([sys.executable, "-c", ENGINE_START, str(os.getpid()), json.dumps(settings),
                                       str(commands_r), str(replies_w)], pass_fds=(commands_r, replies_w))
        os.close(commands_r)
        os.close(replies_w)
        os.set_blocking(self._commands, False)
        self._replies, self._pending = replies, bytearray()
        asyncio.get_running_loop().add_reader(replies, self._from_child)
        log.info("rules are decided by process %d", self.child.pid)

    def wake_engine(self) -> None:
        """Events were journaled: the engine decides them now (not at its next look, a second later)."""
        self.wake_worker.set()
        self._tell_child(b"j\n")

    def _tell_child(self, line: bytes) -> None:
        if self.child is None:
            return
        try:
            os.write(self._commands, line)
        except BlockingIOError:  # the child is busy: it also looks by itself every second
            pass
        except OSError:
            pass  # it is gone: _watch_child acts on that

    def _from_child(self) -> None:
        data = os.read(self._replies, 65536)
        if not data:
            asyncio.get_running_loop().remove_reader(self._replies)
            return
        self._pending.extend(data)
        *lines, rest = bytes(self._pending).split(b"\n")
        self._pending[:] = rest
        for line in lines:
            if line == b"w":
                self.outbox.wake.set()
            elif line.startswith(b"d"):
                self._decided_count(int(line[1:]))
            elif line.startswith(b"m"):
                for name, labels, amount in json.loads(line[1:]):
                    getattr(self.metrics, name).labels(*labels).inc(amount)

    async def _watch_child(self) -> None:
        assert self.child is not None
        code = await asyncio.to_thread(self.child.wait)
        if code == 0 and not self.stopping.is_set():
            self.stop()  # it was stopped first (a supervisor signals every process of the daemon): follow it
        elif not self.stopping.is_set():
            # A crash: the daemon is one unit to its supervisor, so it goes down whole and comes back whole.
            log.critical("the engine process died (exit %s): stopping at once, to be restarted whole", code)
            os.kill(os.getpid(), signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(self._commands)

    def _start_pollers(self) -> None:
        """A catch-up poller for each connector that can poll and has none running (new ones after a reload)."""
        for name, connector in self.connectors.items():
            every = interval(connector)
            running = self.pollers.get(name)
            if every and (running is None or running.done()):
                self.pollers[name] = asyncio.create_task(poll_forever(self, name, every), name=f"poll-{name}")

    def stop(self, sig: int | None = None) -> None:
        """Stop accepting webhooks; the loops finish what they hold and return."""
        if sig is not None:
            log.info("received %s: stopping", signal.Signals(sig).name)
        self.stopping.set()
        if self.owns_process:
            self._arm_stop_deadline()
        if getattr(self, "server", None) is not None:
            self.server.should_exit = True

    def _arm_stop_deadline(self) -> None:
        """Once stopping, the process ends within STOP_DEADLINE whatever happens: a stuck thread, task or call
        (or an interpreter exit joining a stuck thread) is named in the log and abandoned, the exit code is 1."""
        if getattr(self, "stop_deadline", None) is not None:
            return
        loop = asyncio.get_running_loop()
        self.stop_deadline = threading.Timer(STOP_DEADLINE, self._abandon, (loop,))
        self.stop_deadline.daemon = True  # it never keeps the process alive itself
        self.stop_deadline.start()

    def _abandon(self, loop: asyncio.AbstractEventLoop) -> None:
        """The stop deadline passed (on the timer's thread): say what still runs, and end the process now."""
        try:
            tasks = sorted(t.get_name() for t in asyncio.all_tasks(loop) if not t.done())
        except RuntimeError:  # the loop is already gone
            tasks = []
        threads = sorted(t.name for t in threading.enumerate() if t not in (threading.current_thread(),
                                                                               threading.main_thread()))
        log.critical("not stopped %g s after the stop began: abandoning tasks [%s] and threads [%s]; exiting 1",
                     STOP_DEADLINE, ", ".join(tasks), ", ".join(threads))
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
        os._exit(1)

    async def _recover(self) -> None:
        """What an earlier life left half done is put right before anything new is accepted."""
        now = self.clock.now()
        events = await self.engine.call(SqliteStore.release_dead_claims, self.worker)
        self.backlog = (await self.engine.call(SqliteStore.journal_lag, now))[0]
        repeatable = frozenset(n for n, c in self.connectors.items() if c.deduplicates)
        retried, parked, unstarted = await self.engine.call(SqliteStore.release_dead_effects, self.worker, now,
                                                            repeatable)
        if events or retried or parked or unstarted:
            log.warning("recovered after a crash: %d events to decide again, %d effects never called to perform, %d "
                        "effects to retry, %d effects parked as uncertain", events, unstarted, retried, parked)
        await self.engine.call(sync_schedules, self.project, now)

    async def _connectors(self, project: Project) -> dict[str, Connector]:
        db = self.engine.store.db
        address = f"http://{self.host}:{self.port}" if self.sandbox else None
        return await self.engine.call(lambda _s: build_connectors(project, db, self.clock, sandbox=address,
                                                                  emulators=self.emulators,
                                                                  types=self.connector_types))

    # ---- loops -----------------------------------------------------------------------------------
    async def journal_append(self, items: list[tuple[Event, str | None]]) -> list[bool]:
        """Journal one request's events (grouped with concurrent requests); True for each one new.

        Admission control: while more than `max_backlog` accepted events wait to be decided, a webhook waits
        (at most `max_admission_wait`) before it is journaled, so a sender faster than the rules slows down
        instead of taking all the CPU from them. It is then accepted anyway: systems that never resend must
        not time out on us, and the journal keeps what it takes.

        Events that cannot be stored (UNSTORABLE) raise to this request alone: the others committed with it are not
        failed with it.
        """
        if self.backlog > self.max_backlog:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_admission_wait):
                    while self.backlog > self.max_backlog and not self.stopping.is_set():
                        self.room.clear()
                        await self.room.wait()
        fresh = await self.appender.submit(items)
        self.backlog += sum(fresh)
        worklog.accepted(items, fresh)
        return fresh

    async def _append_batch(self, batches: list[list[tuple[Event, str | None]]]) -> list[list[bool] | Exception]:
        try:
            results = await self.journal.call(append_batches, batches, self.clock.now())
        except UNSTORABLE:  # one request's events cannot be stored: the others must not fail with it
            results = await self.journal.call(append_batches, batches, self.clock.now(), apart=True)
        self.wake_engine()
        return results

    def _decided(self, report: BatchReport) -> None:
        """A batch of decisions was written by the engine in this process."""
        self._decided_count(report.events + report.failed)
        if any(d.effects for d in report.decisions):
            self.outbox.wake.set()

    def _decided_count(self, count: int) -> None:
        # Timer and emitted events are decided too: the estimate never goes below nothing waiting.
        self.backlog = max(0, self.backlog - count)
        if self.backlog <= self.max_backlog:
            self.room.set()

    async def _beat(self) -> None:
        while not self.stopping.is_set():
            await sleep(asyncio.Event(), self.stopping, HEARTBEAT)
            with contextlib.suppress(Exception):  # a status record is not worth stopping for
                await self._heartbeat()

    # ---- reload ----------------------------------------------------------------------------------
    async def swap(self, project: Project | None, problems: list[Problem], changed: list[str]) -> bool:
        """Put a newly loaded project in place, or keep the running one and report why not."""
        if project is None:
            self.load_errors = problems
            self.metrics.reloads.labels("failed").inc()
            log.error("reload refused (%s): %d problem(s); the rules already running stay in place",
                      ", ".join(changed), len(problems))
            for problem in problems:
                log.error("%s", problem.format().replace("\n", " "))
            await self._heartbeat()
            return False
        try:
            connectors = await self._connectors(project)
        except ConfigError as exc:
            self.load_errors = [Problem(str(project.root / "automator.yaml"), 1, 1, str(exc))]
            self.metrics.reloads.labels("failed").inc()
            log.error("reload refused: %s", exc)
            await self._heartbeat()
            return False
        old, retired = self.project.version, list(self.connectors.values())
        self.project, self.connectors, self.load_errors = project, connectors, []
        # Calls in flight on the old instances finish first (they are bounded by the outbox's deadline).
        loop = asyncio.get_running_loop()
        loop.call_later(OUTBOX_DEADLINE, lambda: loop.create_task(_close(retired)))
        await self.engine.call(sync_schedules, project, self.clock.now())
        self.wake_timers.set()  # a new schedule may be due before the timers loop would look again
        self._tell_child(b"r\n")
        if hasattr(self, "pollers"):
            self._start_pollers()
        self.metrics.reloads.labels("ok").inc()
        log.info("reloaded (%s): %d rules, version %s → %s", ", ".join(changed), len(project.rules), old,
                 project.version)
        await self._heartbeat()
        return True

    # ---- seeing ----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """What /healthz answers."""
        return {"status": "stopping" if self.stopping.is_set() else "ok", "rules": len(self.project.rules),
                "version": self.project.version, "load_errors": len(self.load_errors)}

    async def render_metrics(self) -> tuple[bytes, str]:
        """/metrics, with the gauges read from the store at the moment of the scrape."""
        # Counting rows is slow with a million timers: never inside a (grouped) write transaction.
        reader = self.engine if self.processes == 2 else self.journal
        figures = await reader.call(gauges, self.clock.now())
        self.metrics.set_gauges(**figures, rule_load_errors=len(self.load_errors),
                                rules_loaded=len(self.project.rules))
        self.lock_time.feed(self.metrics)
        return self.metrics.render()

    async def _heartbeat(self, *, stopped: bool = False) -> None:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "address": f"http://{self.host}:{self.port}",
                  "started_at": self.started_at.isoformat(), "heartbeat": datetime.now(timezone.utc).isoformat(),
                  "state": "stopped" if stopped else ("stopping" if self.stopping.is_set() else "running"),
                  "sandbox": self.sandbox, "version": self.project.version, "rules": len(self.project.rules),
                  "connectors": {n: c.type for n, c in self.connectors.items()},
                  "load_errors": [p.format() for p in self.load_errors]}
        await self.journal.call(_write_status, record)


async def _close(connectors: Any) -> None:
    for connector in connectors:
        try:
            await connector.aclose()
        except Exception:  # closing is best effort: a connector that cannot close must not block the stop
            log.exception("connector %s did not close cleanly", connector.name)


def _write_status(store: SqliteStore, record: dict[str, Any]) -> None:
    with store.atomic():
        store.set_meta("daemon", json.dumps(record, ensure_ascii=False))


def gauges(store: SqliteStore, now: datetime) -> dict[str, float]:
    """The store's figures that /metrics and `automator status` show."""
    pending, lag = store.journal_lag(now)
    return {"timers_pending": store.count("timers"), "journal_pending": pending, "journal_lag_seconds": lag,
            "effects_pending": store.count("effects", "status in ('pending', 'retry', 'running')"),
            "dead_letters": store.count("effects", "status in ('dead', 'uncertain')")}


def run_daemon(daemon: Daemon) -> int:
    """Run a daemon to its end on uvloop (when installed); the process exit code.

    The daemon owns the process: once it is told to stop, the process ends within STOP_DEADLINE even if a thread
    hangs (see Daemon._arm_stop_deadline).
    """
    daemon.owns_process = True
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(daemon.serve())
