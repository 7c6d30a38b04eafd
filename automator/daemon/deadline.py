"""The stop deadline: once a daemon that owns its process stops, the process ends within a bound whatever hangs."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class StopDeadline:
    """Armed once the stop begins; `seconds` later a stuck thread, task or call (or an interpreter exit joining a
    stuck thread) is named in the log and abandoned: `last_words()` runs (the engine process is killed), then the
    process exits 1."""

    def __init__(self, last_words: Callable[[], None]) -> None:
        self.last_words = last_words
        self.timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        """Start counting (once: arming again changes nothing); called on the event loop's thread."""
        if self.timer is not None:
            return
        loop = asyncio.get_running_loop()
        self.timer = threading.Timer(seconds, self._abandon, (loop, seconds))
        self.timer.daemon = True  # it never keeps the process alive itself
        self.timer.start()

    def _abandon(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """The deadline passed (on the timer's thread): say what still runs, and end the process now."""
        try:
            tasks = sorted(t.get_name() for t in asyncio.all_tasks(loop) if not t.done())
        except RuntimeError:  # the loop is already gone
            tasks = []
        threads = sorted(t.name for t in threading.enumerate() if t not in (threading.current_thread(),
                                                                               threading.main_thread()))
        log.critical("not stopped %g s after the stop began: abandoning tasks [%s] and threads [%s]; exiting 1",
                     seconds, ", ".join(tasks), ", ".join(threads))
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        self.last_words()
        os._exit(1)
