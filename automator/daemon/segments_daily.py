"""The daily rescoring of every client (segments.yaml's `rescore:`, 04:00 in the project's time zone by default):
recency ages with time, so once a day the whole population is rescored off the hot path and each client whose
scores changed is handed to the engine as a `segment.rescore` event.

The read and the scoring (automator.rescoring, seconds at a million clients) run in a child process at a report's
priority over a read-only snapshot; the engine's store thread only journals the events, a batch per transaction, so deciding goes
on between batches. The engine rescores each client as it decides their event (a visit decided in between is not
overwritten by the older read) and emits `segment.changed` for a move.

Once a day, whatever the restarts: the day done is kept in the store's meta with the last batch, and the events'
ids name the day and the client (`rescore:<day>:<client>`), so a rescoring cut short by a crash is done again at the
start without doubling a move; a day missed while the daemon was down is caught up at its start. A segments.yaml
rescored for the first time, or changed since (its digest), is rescored at once and written without events, as
`automator segments compute` does: an edit of the file is not news about the clients.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from automator.clock import localize
from automator.config.project import Project
from automator.daemon.storethread import StoreThread
from automator.rescoring import Rescoring, batches, keep_cuts, rescore_events, write_batch
from automator.segments import SegmentsConfig, cuts_of
from automator.store.base import Store

log = logging.getLogger(__name__)
DONE_META = "segments.rescored"  # {"day": "2026-12-06", "digest": …}: the last daily rescoring done


@dataclass(frozen=True, slots=True)
class Due:
    """A rescoring to do now: the day it is for, and whether it is written without events (a new configuration)."""

    day: str
    silent: bool


@dataclass
class DailyReport:
    """What one daily rescoring did."""

    day: str
    silent: bool
    rescoring: Rescoring
    journaled: int = 0  # segment.rescore events journaled (not counting those journaled before a restart)
    seconds: dict[str, float] = field(default_factory=dict)


def due_day(config: SegmentsConfig, now: datetime, tz: ZoneInfo) -> date:
    """The day of the latest rescoring moment at or before `now`."""
    local = now.astimezone(tz)
    today = localize(datetime.combine(local.date(), config.rescore_at), tz)
    return local.date() if now >= today else local.date() - timedelta(days=1)


def next_run(config: SegmentsConfig, now: datetime, tz: ZoneInfo) -> datetime:
    """The first rescoring moment after `now`."""
    day = due_day(config, now, tz) + timedelta(days=1)
    return localize(datetime.combine(day, config.rescore_at), tz)


def due(store: Store, config: SegmentsConfig, now: datetime, tz: ZoneInfo) -> Due | None:
    """The rescoring due now, if one is: never done for this configuration (silent), or not done for today's."""
    day = due_day(config, now, tz).isoformat()
    kept = store.segment_cuts()
    if kept is None or kept.get("digest") != config.digest:
        return Due(day, silent=True)
    text = store.get_meta(DONE_META)
    done = json.loads(text) if text else {}
    if done.get("digest") == config.digest and str(done.get("day") or "") >= day:
        return None
    return Due(day, silent=False)


def _done(store: Store, config: SegmentsConfig, day: str) -> None:
    store.set_meta(DONE_META, json.dumps({"day": day, "digest": config.digest}))


async def rescore_daily(store: StoreThread, project: Project, now: datetime, when: Due) -> DailyReport:
    """Rescore every client as of `now` and hand the changes to the engine (or write them, `when.silent`)."""
    config = project.segments
    assert config is not None
    path = await store.call(lambda s: s.path)
    if path is None:
        raise RuntimeError("the daily rescoring reads the store's file: this store has none")
    if await store.call(_has_visits):
        found = await rescore_in_child(path, project, now)
    else:  # nobody to score (a new store): no child to start, the cut points of no one
        found = Rescoring(cuts=cuts_of(config, {}), population=0, clients=0, sizes={})
    report = DailyReport(when.day, when.silent, found, seconds=dict(found.seconds))
    if when.silent:
        for part in batches(found.changes):  # a call each: the engine decides between them
            await store.call(write_batch, part)
        await store.call(keep_cuts, found, config, now)
        await store.call(lambda s: _atomic(s, lambda: _done(s, config, when.day)))
        log.info("segments: %s rescored for segments.yaml as it is now (no events: a new configuration), %d changed",
                 when.day, len(found.changes), extra={"changed": len(found.changes)})
        return report
    await store.call(keep_cuts, found, config, now)  # the engine rescores each client with the same cut points
    parts = list(batches(found.changes))
    for index, part in enumerate(parts):
        def journal(s: Store, part: Any = part, last: bool = index == len(parts) - 1) -> int:
            with s.atomic():
                added = sum(s.append(rescore_events(part, when.day, now), now))
                if last:
                    _done(s, config, when.day)
            return added
        report.journaled += await store.call(journal)
    if not parts:
        await store.call(lambda s: _atomic(s, lambda: _done(s, config, when.day)))
    log.info("segments: %s rescored, %d clients' scores changed, %d moved", when.day, len(found.changes),
             sum(found.moves().values()), extra={"changed": len(found.changes)})
    return report


async def rescore_in_child(path: Path, project: Project, now: datetime) -> Rescoring:
    """`rescore_all` in a child process at a report's priority (automator.rescoring's `main`): the engine's process
    keeps neither its memory nor its threads. A RuntimeError when it fails (tried again at the next look)."""
    config = project.segments
    assert config is not None
    with tempfile.TemporaryDirectory(prefix="automator-rescoring-") as folder:
        out = Path(folder) / "rescoring.json"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "automator.rescoring", f"--db={path}", f"--root={project.root}",
            f"--at={now.isoformat()}", f"--digest={config.digest}", f"--out={out}", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, stderr = await child.communicate()
        except asyncio.CancelledError:  # the daemon is stopping: no orphan keeps reading
            if child.returncode is None:
                child.kill()
                await child.wait()
            raise
        if child.returncode != 0:
            said = stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"the rescoring's process failed (exit {child.returncode}): "
                               f"{said[-1] if said else 'no message'}")
        return Rescoring.from_json(json.loads(out.read_text(encoding="utf-8")))


def _has_visits(store: Store) -> bool:
    return store.db.conn.execute("select 1 from visits limit 1").fetchone() is not None


def _atomic(store: Store, fn: Any) -> None:
    with store.atomic():
        fn()

