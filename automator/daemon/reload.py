"""Watches the project's files; a change is validated first, then swapped in atomically or reported and refused."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

import watchfiles

from automator.config.load import load_project
from automator.config.problems import Problem
from automator.config.project import Project

if TYPE_CHECKING:
    from automator.daemon.process import Daemon

log = logging.getLogger(__name__)
RELOAD_TIMEOUT = 30.0  # seconds a reload may take before it is abandoned (a slow disk, a huge tree)

Loaded = tuple[Project | None, list[Problem]]


def is_project_file(root: Path, path: Path) -> bool:
    """automator.yaml, segments.yaml, pipelines/*.yaml, rules/**/*.yaml and folders under rules/ (tests and the
    database are not)."""
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
        return rel.name in ("automator.yaml", "segments.yaml")
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
        stop = asyncio.ensure_future(stopping.wait())
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


async def watch(daemon: Daemon, debounce_ms: int = 300, timeout: float = RELOAD_TIMEOUT) -> None:
    """Reload on every change until the daemon stops; a broken change leaves the running rules in place.

    The watcher only collects what changed; one reload at a time loads the project (bounded by `timeout`), so
    changes saved while a load runs are loaded together after it, and a load that never ends holds no one up.
    """
    root = daemon.root
    changed: set[str] = set()
    wake = asyncio.Event()
    reloader = asyncio.create_task(_reload(daemon, BoundedLoader(root, timeout), changed, wake), name="reloader")
    try:
        async for changes in watchfiles.awatch(root, watch_filter=lambda _c, p: is_project_file(root, Path(p)),
                                               stop_event=daemon.stopping, debounce=debounce_ms, recursive=True):
            changed.update(str(Path(p).relative_to(root)) for _, p in changes)
            wake.set()
    finally:
        if not daemon.stopping.is_set():
            reloader.cancel()
        # Once stopping is set it returns by itself: a swap under way is finished, a load is not waited for.
        await asyncio.gather(reloader, return_exceptions=True)


async def _reload(daemon: Daemon, loader: BoundedLoader, changed: set[str], wake: asyncio.Event) -> None:
    """Load and swap in what changed, one load at a time, until the daemon stops."""
    stop = asyncio.ensure_future(daemon.stopping.wait())
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
                loaded = await loader.load(daemon.stopping)
            except Exception:  # a bug in loading must not end hot reload for the daemon's life
                log.exception("reload (%s) failed; the rules already running stay in place", ", ".join(names))
                continue
            if loaded is None:
                return
            await daemon.swap(*loaded, names)
    finally:
        stop.cancel()
