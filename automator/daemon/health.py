"""How the daemon is seen: /healthz, /metrics with the store's gauges, and the status record (the heartbeat)
that `automator status` reads from the store."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from datetime import datetime, timezone
from typing import Any

from automator.clock import Clock
from automator.daemon.engine import sleep_until_woken
from automator.daemon.metrics import LockTime, Metrics
from automator.daemon.running import Running
from automator.daemon.storethread import StoreThread
from automator.store.base import Store

# Seconds between status records that `automator status` reads (it takes a daemon silent for observe.STALE as
# gone). Each is a write transaction in an otherwise idle daemon (every 2 s before; with the file watcher's step,
# bench/idle.py: process 1 idle woke 41.6 times a second and used 0.56 % CPU, now 15.7 and 0.32 %).
HEARTBEAT = 10.0


def gauges(store: Store, now: datetime) -> dict[str, float]:
    """The store's figures that /metrics and `automator status` show."""
    pending, lag = store.journal_lag(now)
    return {"timers_pending": store.count("timers"), "journal_pending": pending, "journal_lag_seconds": lag,
            "effects_pending": store.count("effects", "status in ('pending', 'retry', 'running')"),
            "dead_letters": store.count("effects", "status in ('dead', 'uncertain')")}


def write_status(store: Store, record: dict[str, Any]) -> None:
    """Store the daemon's status record (one row, replaced at each heartbeat)."""
    with store.atomic():
        store.set_meta("daemon", json.dumps(record, ensure_ascii=False))


class Health:
    """The daemon's health as /healthz, /metrics and the status record show it.

    `writer` writes the status record; `reader` counts the gauges, never inside a (grouped) write transaction:
    counting rows is slow with a million timers.
    """

    def __init__(self, running: Running, stopping: asyncio.Event, metrics: Metrics, clock: Clock, *,
                 writer: StoreThread, reader: StoreThread, lock_time: LockTime, address: str,
                 sandbox: bool) -> None:
        self.running = running
        self.stopping = stopping
        self.metrics = metrics
        self.clock = clock
        self.writer, self.reader = writer, reader
        self.lock_time = lock_time  # this process's turns at the write lock
        self.address = address
        self.sandbox = sandbox
        self.started_at = clock.now()

    def healthz(self) -> dict[str, Any]:
        """What /healthz answers."""
        project = self.running.project
        return {"status": "stopping" if self.stopping.is_set() else "ok", "rules": len(project.rules),
                "version": project.version, "load_errors": len(self.running.load_errors)}

    async def render_metrics(self) -> tuple[bytes, str]:
        """/metrics, with the gauges read from the store at the moment of the scrape."""
        figures = await self.reader.call(gauges, self.clock.now())
        self.metrics.set_gauges(**figures, rule_load_errors=len(self.running.load_errors),
                                rules_loaded=len(self.running.project.rules))
        self.lock_time.feed(self.metrics)
        return self.metrics.render()

    async def heartbeat(self, *, stopped: bool = False) -> None:
        """Write the status record now (`stopped`: the daemon's last one)."""
        running = self.running
        record = {"pid": os.getpid(), "host": socket.gethostname(), "address": self.address,
                  "started_at": self.started_at.isoformat(), "heartbeat": datetime.now(timezone.utc).isoformat(),
                  "state": "stopped" if stopped else ("stopping" if self.stopping.is_set() else "running"),
                  "sandbox": self.sandbox, "version": running.project.version, "rules": len(running.project.rules),
                  "connectors": {n: c.type for n, c in running.connectors.items()},
                  "load_errors": [p.format() for p in running.load_errors]}
        await self.writer.call(write_status, record)

    async def beat(self) -> None:
        """A status record every HEARTBEAT seconds until the daemon stops."""
        while not self.stopping.is_set():
            await sleep_until_woken(self.stopping, self.stopping, HEARTBEAT)  # or until the daemon stops
            with contextlib.suppress(Exception):  # a status record is not worth stopping for
                await self.heartbeat()
