"""The engine process seen from the daemon: started with a pipe each way, told what happened, heard back, and
watched: the two processes are one daemon, so an engine process that crashes takes the daemon down with it."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from automator.daemon import protocol
from automator.daemon.engine_process import START
from automator.daemon.metrics import Metrics

log = logging.getLogger(__name__)


class EngineChild:
    """Starts `automator.daemon.engine_process` and speaks `automator.daemon.protocol` with it.

    What it hears is handed on: `on_decided(n)` for each batch decided, `on_effects()` when effects were
    committed; counters go straight into `metrics`.
    """

    def __init__(self, metrics: Metrics, *, on_decided: Callable[[int], None],
                 on_effects: Callable[[], None]) -> None:
        self.metrics = metrics
        self.on_decided = on_decided
        self.on_effects = on_effects
        self.process: subprocess.Popen[bytes] | None = None
        self._lines = protocol.Lines()

    def start(self, settings: Mapping[str, Any]) -> None:
        """Start the process with `settings` (see engine_process.serve) and listen to its replies."""
        commands_r, self._commands = os.pipe()
        replies, replies_w = os.pipe()
        self.process = subprocess.Popen([sys.executable, "-c", START, str(os.getpid()), json.dumps(dict(settings)),
                                         str(commands_r), str(replies_w)], pass_fds=(commands_r, replies_w))
        os.close(commands_r)
        os.close(replies_w)
        os.set_blocking(self._commands, False)
        self._replies = replies
        asyncio.get_running_loop().add_reader(replies, self._readable)
        log.info("rules are decided by process %d", self.process.pid)

    def tell(self, command: protocol.Command) -> None:
        """Send a command; dropped when the pipe is full (the commands unread in it wake the process as well) or
        the process is gone (`watch` acts on that)."""
        if self.process is not None:
            protocol.send(self._commands, command)

    def _readable(self) -> None:
        data = os.read(self._replies, 65536)
        if not data:
            asyncio.get_running_loop().remove_reader(self._replies)
            if self._lines.torn:
                log.error("the engine process ended in the middle of a line: %r", self._lines.torn[:80])
            return
        for reply in self._lines.messages(data, protocol.decode_reply):
            if reply is protocol.EFFECTS_COMMITTED:
                self.on_effects()
            elif isinstance(reply, protocol.Decided):
                self.on_decided(reply.count)
            elif isinstance(reply, protocol.Counters):
                for name, labels, amount in reply.counts:
                    getattr(self.metrics, name).labels(*labels).inc(amount)

    async def watch(self, stopping: asyncio.Event, stop: Callable[[], None]) -> None:
        """Wait for the process to end: after the daemon's stop, or first on its own (then `stop()` the daemon
        too); a crash ends the daemon's process at once, so that its supervisor restarts both whole."""
        assert self.process is not None
        code = await asyncio.to_thread(self.process.wait)
        if code == 0 and not stopping.is_set():
            stop()  # it was stopped first (a supervisor signals every process of the daemon): follow it
        elif not stopping.is_set():
            # A crash: the daemon is one unit to its supervisor, so it goes down whole and comes back whole.
            log.critical("the engine process died (exit %s): stopping at once, to be restarted whole", code)
            os.kill(os.getpid(), signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(self._commands)

    def terminate(self) -> None:
        """Ask the process to stop: it finishes the batch it is deciding and writes it."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """End the process now (the daemon is abandoning its stop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
