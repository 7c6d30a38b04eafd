"""Catch-up polling: what a system changed while its webhooks were lost, fed through the same journal."""
from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING, Any

from automator.clock import parse_duration
from automator.connector import Connector
from automator.errors import ConnectorError
from automator.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from automator.daemon.process import Daemon

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


def _save_cursor(store: SqliteStore, name: str, cursor: str) -> None:
    with store.atomic():
        store.set_meta(f"poll:{name}", cursor)


async def poll_once(daemon: Daemon, name: str, connector: Connector) -> int:
    """One poll: the changes since the stored cursor are journaled (duplicates of webhooks already journaled are
    dropped by their delivery ids), then the cursor moves on. Returns how many events were new."""
    cursor = await daemon.journal.call(SqliteStore.get_meta, f"poll:{name}")
    events, new_cursor = await connector.poll(cursor)
    fresh: list[Any] = []
    if events:
        fresh = await daemon.journal_append([(e, None) for e in events])
    if new_cursor is not None and new_cursor != cursor:
        await daemon.journal.call(_save_cursor, name, new_cursor)
    if any(fresh):
        log.warning("catch-up: %d change(s) from %s that no webhook brought", sum(fresh), name,
                    extra={"connector": name})
    return sum(fresh)


async def poll_forever(daemon: Daemon, name: str, every: float) -> None:
    """Poll at start-up, then every `every` seconds, until the daemon stops; a failing poll is logged and retried
    at the next interval (the cursor has not moved, so nothing is skipped)."""
    # In --sandbox the emulators are served by the daemon itself: poll once it answers.
    while not getattr(getattr(daemon, "server", None), "started", False) and not daemon.stopping.is_set():
        await asyncio.sleep(0.05)
    while not daemon.stopping.is_set():
        connector = daemon.connectors.get(name)
        if connector is None:
            return
        try:
            await poll_once(daemon, name, connector)
        except (ConnectorError, OSError) as exc:  # its text may quote a URL that holds a key: redacted
            log.warning("catch-up poll of %s failed: %s", name, connector.redact(str(exc)), extra={"connector": name})
        except Exception:  # a connector bug must not end the loop; its traceback as text, redacted as above
            log.error("catch-up poll of %s failed\n%s", name, connector.redact(traceback.format_exc()),
                      extra={"connector": name})
        try:
            await asyncio.wait_for(daemon.stopping.wait(), timeout=every)
        except TimeoutError:
            pass
