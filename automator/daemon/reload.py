"""Watches the project's files; a change is validated first, then swapped in atomically or reported and refused."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

import watchfiles

from automator.config.load import load_project
from automator.config.problems import Problem
from automator.config.project import Project
from automator.connector import ConfigError, Connector
from automator.daemon.connectors import close_connectors
from automator.daemon.metrics import Metrics
from automator.daemon.running import Running

log = logging.getLogger(__name__)
RELOAD_TIMEOUT = 30.0  # seconds a reload may take before it is abandoned (a slow disk, a huge tree)
WATCH_STEP_MS = 500  # milliseconds between the file watcher's looks (see watch)

Loaded = tuple[Project | None, list[Problem]]
Swap = Callable[[Project | None, list[Problem], list[str]], Awaitable[bool]]


def is_project_file(root: Path, path: Path) -> bool:
    """automator.yaml, segments.yaml, loyalty.yaml, pipelines/*.yaml, rules/**/*.yaml and folders under rules/
    (tests and the database are not)."""
    try:
        # Its own name, not a symlink's target: a link out of the project is still a change to report.
        rel = (path.parent.resolve() / path.name).relative_to(root.resolve())
    except ValueError:
        return False
    if rel.parts[0] == "rules" and len(rel.parts) > 1 and not rel.suffix:
        return True  # a folder moved in, out or linked: which rule files there are has changed
    if rel.suffix != ".yaml" or rel.name.endswith(".test.yaml"):
        return False
    if len(rel.parts) == 1:
        return rel.name in ("automator.yaml", "segments.yaml", "loyalty.yaml")
    return rel.parts[0] in ("pipelines", "rules")


def load(root: Path) -> tuple[Project | None, list[Problem]]:
    """The project as it is on disk now."""
    return load_project(root)


class BoundedLoader:
    """Loads a project on a fresh daemon thread each time, and waits for it a bounded time.

    A load that takes longer is abandoned: nothing waits for its thread any more, and a daemon thread never keeps
    the process from exiting. No new load starts while an abandoned one still runs, so a stuck disk cannot pile
    up threads; the next load starts once it has ended (its own result is stale by then and is dropped).
    """

    def __init__(self, root: Path, timeout: float = RELOAD_TIMEOUT,
                 load: Callable[[Path], Loaded] = load) -> None:
        self.root = root
        self.timeout = timeout
        self._load = load
        self._running: asyncio.Future[Loaded] | None = None  # the last load started, until its thread ends

    async def load(self, stopping: asyncio.Event) -> Loaded | None:
        """The project loaded now, a Problem saying the load was abandoned, or None when `stopping` came first."""
        stop: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
        try:
            stuck = self._running
            if stuck is not None and not stuck.done():
                log.warning("waiting for the reload abandoned earlier to end before loading again")
                await asyncio.wait({stuck, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not stuck.done():
                    return None
            started = time.monotonic()
            running = self._running = self._start()
            await asyncio.wait({running, stop}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                return running.result()
            if stopping.is_set():
                return None
            log.error("reload abandoned after %.0f s: loading %s has not ended (a slow disk, a huge tree?)",
                      time.monotonic() - started, self.root)
            return None, [Problem(str(self.root), 1, 1,
                                  f"the reload took longer than {self.timeout:g} s and was abandoned",
                                  "the rules already running stay in place; a change saved after this one is "
                                  "loaded once the stuck load has ended")]
        finally:
            stop.cancel()

    def _start(self) -> asyncio.Future[Loaded]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Loaded] = loop.create_future()

        def settle(outcome: Loaded | None, error: BaseException | None) -> None:
            if result.done():
                return
            if error is not None:
                result.set_exception(error)
            else:
                assert outcome is not None
                result.set_result(outcome)

        def work() -> None:
            try:
                outcome, error = self._load(self.root), None
            except BaseException as exc:  # handed to the awaiting side, which logs it
                outcome, error = None, exc
            try:
                loop.call_soon_threadsafe(settle, outcome, error)
            except RuntimeError:
                pass  # the loop is closed: the daemon stopped while this load was abandoned
        # Retrieved even when abandoned: an exception of a load nobody waits for is not an asyncio warning.
        result.add_done_callback(lambda f: f.cancelled() or f.exception())
        threading.Thread(target=work, name="reload", daemon=True).start()
        return result


class Swapper:
    """Puts a newly loaded project in place in `running`, or keeps the running one and records why not.

    `connectors_of` builds a project's connectors (a reload is refused when they cannot be built); `swapped` tells
    the rest of the daemon (timers, the engine process, the pollers); `heartbeat` writes the status record, which
    shows the outcome either way. The retired connectors are closed `retire_after` seconds later: calls in flight
    on them finish first.
    """

    def __init__(self, running: Running, metrics: Metrics, *,
                 connectors_of: Callable[[Project], Awaitable[dict[str, Connector]]],
                 swapped: Callable[[Project], Awaitable[None]], heartbeat: Callable[[], Awaitable[None]],
                 retire_after: float) -> None:
        self.running = running
        self.metrics = metrics
        self.connectors_of = connectors_of
        self.swapped = swapped
        self.heartbeat = heartbeat
        self.retire_after = retire_after

    async def swap(self, project: Project | None, problems: list[Problem], changed: list[str]) -> bool:
        """Put a newly loaded project in place, or keep the running one and report why not."""
        running = self.running
        if project is None:
            running.load_errors = problems
            self.metrics.reloads.labels("failed").inc()
            log.error("reload refused (%s): %d problem(s); the rules already running stay in place",
                      ", ".join(changed), len(problems))
            for problem in problems:
                log.error("%s", problem.format().replace("\n", " "))
            await self.heartbeat()
            return False
        try:
            connectors = await self.connectors_of(project)
        except ConfigError as exc:
            running.load_errors = [Problem(str(project.root / "automator.yaml"), 1, 1, str(exc))]
            self.metrics.reloads.labels("failed").inc()
            log.error("reload refused: %s", exc)
            await self.heartbeat()
            return False
        old, retired = running.project.version, list(running.connectors.values())
        running.project, running.connectors, running.load_errors = project, connectors, []
        # Calls in flight on the old instances finish first (they are bounded by the outbox's deadline).
        loop = asyncio.get_running_loop()
        loop.call_later(self.retire_after, lambda: loop.create_task(close_connectors(retired)))
        await self.swapped(project)
        self.metrics.reloads.labels("ok").inc()
        log.info("reloaded (%s): %d rules, version %s → %s", ", ".join(changed), len(project.rules), old,
                 project.version)
        await self.heartbeat()
        return True


async def watch(root: Path, stopping: asyncio.Event, swap: Swap, debounce_ms: int = 300,
                timeout: float = RELOAD_TIMEOUT) -> None:
    """Reload on every change until `stopping`; a broken change leaves the running rules in place.

    The watcher only collects what changed; one reload at a time loads the project (bounded by `timeout`) and
    hands it to `swap`, so changes saved while a load runs are loaded together after it, and a load that never
    ends holds no one up.
    """
    changed: set[str] = set()
    wake = asyncio.Event()
    reloader = asyncio.create_task(_reload(BoundedLoader(root, timeout), changed, wake, stopping, swap),
                                   name="reloader")
    try:
        # step: how often the watcher's thread wakes to look at what inotify collected (and at `stopping`). At
        # watchfiles' 50 ms it was 20 of an idle daemon's 40 wake-ups a second; at 500 ms a change is loaded
        # 0.5-1 s after it is saved, and a stop waits that long for the watcher at most.
        async for changes in watchfiles.awatch(root, watch_filter=lambda _c, p: is_project_file(root, Path(p)),
                                               stop_event=stopping, debounce=debounce_ms, step=WATCH_STEP_MS,
                                               recursive=True):
            changed.update(str(Path(p).relative_to(root)) for _, p in changes)
            wake.set()
    finally:
        if not stopping.is_set():
            reloader.cancel()
        # Once stopping is set it returns by itself: a swap under way is finished, a load is not waited for.
        await asyncio.gather(reloader, return_exceptions=True)


async def _reload(loader: BoundedLoader, changed: set[str], wake: asyncio.Event, stopping: asyncio.Event,
                  swap: Swap) -> None:
    """Load and swap in what changed, one load at a time, until stopping."""
    stop = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            woken = asyncio.ensure_future(wake.wait())
            await asyncio.wait({woken, stop}, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            if stop.done():
                return
            wake.clear()
            names = sorted(changed)
            changed.clear()
            try:
                loaded = await loader.load(stopping)
            except Exception:  # a bug in loading must not end hot reload for the daemon's life
                log.exception("reload (%s) failed; the rules already running stay in place", ", ".join(names))
                continue
            if loaded is None:
                return
            await swap(*loaded, names)
    finally:
        stop.cancel()
