"""Catch-up polling: what a system changed while its webhooks were lost, fed through the same journal."""
from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable

from automator.clock import parse_duration
from automator.connector import Connector
from automator.daemon.admission import Item
from automator.daemon.running import Running
from automator.daemon.storethread import StoreThread
from automator.errors import ConnectorError
from automator.store.base import Store

log = logging.getLogger(__name__)


def interval(connector: Connector) -> float | None:
    """Seconds between polls: the connector's `poll_every:` setting, else its type's default; None: no polling."""
    if type(connector).poll is Connector.poll:
        return None
    setting = connector.config.get("poll_every")
    if setting in (False, "off"):
        return None
    if setting is not None:
        return parse_duration(setting).approx().total_seconds()
    return type(connector).poll_every


def _save_cursor(store: Store, name: str, cursor: str) -> None:
    with store.atomic():
        store.set_meta(f"poll:{name}", cursor)


class Pollers:
    """A catch-up poller for each running connector that can poll, feeding `append` (the journal's front door).

    `serving` says when the daemon answers HTTP: in --sandbox the emulators are served by the daemon itself, so
    the first poll waits for it.
    """

    def __init__(self, running: Running, journal: StoreThread, append: Callable[[list[Item]], Awaitable[list[bool]]],
                 stopping: asyncio.Event, serving: Callable[[], bool]) -> None:
        self.running = running
        self.journal = journal
        self.append = append
        self.stopping = stopping
        self.serving = serving
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        """A poller for each connector that can poll and has none running (new ones after a reload)."""
        for name, connector in self.running.connectors.items():
            every = interval(connector)
            running = self.tasks.get(name)
            if every and (running is None or running.done()):
                self.tasks[name] = asyncio.create_task(self.poll_forever(name, every), name=f"poll-{name}")

    async def poll_once(self, name: str, connector: Connector) -> int:
        """One poll: the changes since the stored cursor are journaled (duplicates of webhooks already journaled
        are dropped by their delivery ids), then the cursor moves on. Returns how many events were new."""
        cursor = await self.journal.call(lambda s: s.get_meta(f"poll:{name}"))
        events, new_cursor = await connector.poll(cursor)
        fresh: list[bool] = []
        if events:
            fresh = await self.append([(e, None) for e in events])
        if new_cursor is not None and new_cursor != cursor:
            await self.journal.call(_save_cursor, name, new_cursor)
        if any(fresh):
            log.warning("catch-up: %d change(s) from %s that no webhook brought", sum(fresh), name,
                        extra={"connector": name})
        return sum(fresh)

    async def poll_forever(self, name: str, every: float) -> None:
        """Poll at start-up, then every `every` seconds, until the daemon stops; a failing poll is logged and
        retried at the next interval (the cursor has not moved, so nothing is skipped)."""
        while not self.serving() and not self.stopping.is_set():
            await asyncio.sleep(0.05)
        while not self.stopping.is_set():
            connector = self.running.connectors.get(name)
            if connector is None:
                return
            try:
                await self.poll_once(name, connector)
            except (ConnectorError, OSError) as exc:  # its text may quote a URL that holds a key: redacted
                log.warning("catch-up poll of %s failed: %s", name, connector.redact(str(exc)),
                            extra={"connector": name})
            except Exception:  # a connector bug must not end the loop; its traceback as text, redacted as above
                log.error("catch-up poll of %s failed\n%s", name, connector.redact(traceback.format_exc()),
                          extra={"connector": name})
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=every)
            except TimeoutError:
                pass
