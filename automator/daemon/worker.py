"""The worker's step: claim journaled events, decide each with the one core, commit each decision atomically."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from automator.config.project import Project
from automator.core.decide import decide
from automator.daemon import crashpoints
from automator.model import Decision, Event
from automator.store.sqlite import SqliteStore

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)


@dataclass
class BatchReport:
    """What one batch did, for the loops' wake-ups, the metrics and the logs."""

    events: int = 0
    failed: int = 0
    decisions: list[Decision] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)
    earliest_timer: datetime | None = None


def process_batch(store: SqliteStore, project: Project, worker: str, now: datetime, *, limit: int = 64,
                  budget: float = 0.005) -> BatchReport:
    """Decide up to `limit` claimed events in one transaction (group commit), stopping early after `budget`
    seconds so that webhook acknowledgements never wait long for the write lock.

    Each event is committed under its own savepoint: one event the engine cannot decide is parked as
    `failed` with its error, and the others go on.
    """
    report = BatchReport()
    started = time.perf_counter()
    # Claiming inside the batch's own transaction: one commit (one fsync) per batch, and a crash rolls the
    # claim back with the decisions, leaving the events pending.
    with store.atomic():
        events = store.claim_events(worker, now, limit, LEASE)
        for index, event in enumerate(events):
            if index and time.perf_counter() - started > budget:
                break  # the rest stay claimed by us and come first in the next batch
            try:
                with store.atomic():
                    decision = decide(project, store, event, now)
                    report.emitted.extend(store.commit(event, decision, now))
            except Exception as exc:  # a bug in a rule or the engine: park the event, keep the daemon up
                log.exception("event could not be decided", extra={"event_id": event.id})
                store.fail_event(event, f"{type(exc).__name__}: {exc}", now)
                report.failed += 1
                continue
            report.events += 1
            report.decisions.append(decision)
            for timer in decision.timers:
                if report.earliest_timer is None or timer.due_at < report.earliest_timer:
                    report.earliest_timer = timer.due_at
        if events:
            crashpoints.reached("decide.before_commit")
    if events:
        crashpoints.reached("decide.after_commit")
    return report
