"""The worker's step: claim journaled events, decide each with the one core, commit each decision atomically."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from automator.config.project import Project
from automator.core.decide import decide
from automator.daemon import crashpoints
from automator.model import Decision, EntityRef, Event
from automator.store.base import Store, Writes
from automator.store.codec import writes_of
from automator.store.staged import Staged

log = logging.getLogger(__name__)
LINKED = ("client", "booking", "deal")  # the data fields decide() follows to another entity (core/scope.py)
LEASE = timedelta(seconds=60)


@dataclass
class BatchReport:
    """What one batch did, for the loops' wake-ups, the metrics and the logs."""

    events: int = 0
    failed: int = 0
    decisions: list[Decision] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)
    earliest_timer: datetime | None = None
    more: bool = False  # events were left pending (the batch was cut short, or a decision could not be written)


def prefetch(store: Store, events: list[Event]) -> dict[str, Any]:
    """What deciding these events will read, in one query each instead of a few per event: their entities and
    the entities their data links to (client, booking, deal), and the active runs keyed by their entities."""
    refs = {e.entity for e in events if e.entity is not None}
    refs |= {EntityRef(kind, str(e.data[kind])) for e in events for kind in LINKED
             if isinstance(e.data.get(kind), (str, int)) and not isinstance(e.data.get(kind), bool)
             and str(e.data[kind])}
    return {"entities": store.entities_of(refs), "runs": store.active_runs_of(str(r) for r in refs)}


def process_batch(store: Store, project: Project, worker: str, now: datetime, *, limit: int = 128,
                  budget: float = 0.010) -> BatchReport:
    """Decide up to `limit` pending events, stopping early after `budget` seconds, then commit the decisions in
    one transaction (group commit: one fsync for the batch).

    The deciding is done without the write lock, over the store with the batch's earlier decisions staged
    (automator/store/staged.py): the lock is held only while the decisions are written, so webhooks being
    journaled and effects being settled, by this process or the other one of the daemon, are not kept waiting while
    rules are evaluated. Each event is taken in the transaction that commits its decision, and only if it is
    still pending (an event another worker decided meanwhile is left to it). A crash before the commit leaves
    every event of the batch pending: they are decided again.

    An event the engine cannot decide is parked as `failed` with its error, and the others go on.
    """
    report = BatchReport()
    started = time.perf_counter()
    events = store.pending_events(worker, now, limit)
    staged = Staged(store, **prefetch(store, events))
    decided: list[tuple[Event, Decision, Writes]] = []
    failed: list[tuple[Event, str]] = []
    for index, event in enumerate(events):
        if index and time.perf_counter() - started > budget:
            report.more = True
            break  # the rest stay pending and come first in the next batch
        try:
            decision = decide(project, staged, event, now)
        except Exception as exc:  # a bug in a rule or the engine: park the event, keep the daemon up
            log.exception("event could not be decided", extra={"event_id": event.id})
            failed.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        staged.stage(decision)
        decided.append((event, decision, writes_of(decision)))  # the rows, built before the lock is taken
    if not events:
        return report
    report.more = report.more or len(events) == limit
    try:
        _commit(store, report, decided, failed, now, worker, together=True)
    except _RowsRefused:
        # A row of the batch could not be written (a bug) and its transaction was undone whole: the decisions are
        # written one by one instead, each in a savepoint of its own, so that the one that fails is parked alone.
        _commit(store, report, decided, failed, now, worker, together=False)
    return report


class _RowsRefused(Exception):
    """The batch's rows could not all be written in one go."""


def _commit(store: Store, report: BatchReport, decided: list[tuple[Event, Decision, Writes]],
            failed: list[tuple[Event, str]], now: datetime, worker: str, *, together: bool) -> None:
    """Write the batch's decisions, marking their events done, and park the failed events, in one transaction:
    all at once when `together` (the usual case; _RowsRefused, with the transaction undone, when a row cannot be
    written), else one by one."""
    with store.atomic():
        emitted_all = None
        if together and decided:
            try:
                # No savepoint around it (see Journal.commit_all_pending): a failure undoes the whole transaction.
                emitted_all = store.commit_all_pending(decided, now, worker)
            except Exception as exc:
                raise _RowsRefused() from exc
        if emitted_all is not None:  # the usual case: every event was still pending, all written at once
            report.emitted.extend(emitted_all)
            report.events = len(decided)
            report.decisions.extend(decision for _, decision, _ in decided)
            report.earliest_timer = min((t.due_at for _, d, _ in decided for t in d.timers), default=None)
        for event, decision, writes in decided if emitted_all is None else ():
            try:
                with store.atomic():
                    emitted = store.commit_pending(event, decision, now, worker, writes)
            except Exception as exc:
                # Writing failed (a bug): the events after it were decided as if it had been written, so
                # they wait for the next batch, to be decided again on what the store really holds.
                log.exception("a decision could not be written", extra={"event_id": event.id})
                failed.append((event, f"{type(exc).__name__}: {exc}"))
                report.more = True
                break
            if emitted is None:
                continue  # decided by another worker meanwhile
            report.emitted.extend(emitted)
            report.events += 1
            report.decisions.append(decision)
            for timer in decision.timers:
                if report.earliest_timer is None or timer.due_at < report.earliest_timer:
                    report.earliest_timer = timer.due_at
        for event, error in failed:
            store.fail_event(event, error, now)
            report.failed += 1
        crashpoints.reached("decide.before_commit")
    crashpoints.after_commit(store, "decide.after_commit")
