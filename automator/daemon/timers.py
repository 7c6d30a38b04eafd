"""Durable timers: due waits, `held` timers and schedule ticks moved into the journal, in one transaction each."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from automator.config.project import Project
from automator.daemon import crashpoints
from automator.core.wakeup import catch_up, next_tick, schedule_spec, tick_event, timer_event
from automator.model import Event, ScheduleTrigger, Timer
from automator.store.base import Store
from automator.triggers.schedule import timer_id as schedule_timer_id

log = logging.getLogger(__name__)


@dataclass
class FireReport:
    """What one pass of the timer loop fired."""

    events: list[Event] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    catch_ups: list[tuple[str, str, int]] = field(default_factory=list)  # (rule, policy, missed ticks)
    next_due: datetime | None = None  # when nothing was due: when the earliest timer is (None: there is none)


def sync_schedules(store: Store, project: Project, now: datetime) -> int:
    """Give every schedule rule its timer (the next tick), reset timers whose schedule changed, drop orphans.

    A timer kept from before a restart keeps its due time, so the ticks missed while the daemon was down are
    caught up by `fire_due` under the rule's policy. Returns how many timers were set or reset.
    """
    changed = 0
    wanted: dict[str, tuple[str, ScheduleTrigger]] = {}
    for rule in project.router.schedules:
        assert isinstance(rule.trigger, ScheduleTrigger)
        wanted[schedule_timer_id(rule.id)] = (rule.id, rule.trigger)
    with store.atomic():
        stored = {r["id"]: r["payload"] for r in store.db.query("select id, payload from timers where kind = 'schedule'")}
        for timer_id in stored.keys() - wanted.keys():
            store.delete_timer(timer_id)
        for timer_id, (rule_id, trigger) in wanted.items():
            spec = schedule_spec(trigger)
            if timer_id in stored and f'"{spec}"' in (stored[timer_id] or ""):
                continue
            due = next_tick(trigger, now, project.config)
            if due is not None:
                store.put_timer(Timer(id=timer_id, due_at=due, kind="schedule", rule_id=rule_id,
                                      payload={"spec": spec}))
                changed += 1
    return changed


def fire_due(store: Store, project: Project, now: datetime, *, limit: int = 500) -> FireReport:
    """Move timers due by `now` into the journal as `timer.fired` events: fired once, never lost.

    Waits and `held` timers are deleted as their event is journaled, in the same transaction. A schedule timer
    is moved to its next tick, and the ticks it missed are fired as its catch-up policy says (and logged).
    """
    report = FireReport()
    # Looked at first without the write lock: most looks find nothing due (the loop sleeps until the next one).
    report.next_due = store.next_due()
    if report.next_due is None or report.next_due > now:
        return report
    report.next_due = None
    with store.atomic():
        for timer in store.due_timers(now, limit):
            report.by_kind[timer.kind] = report.by_kind.get(timer.kind, 0) + 1
            if timer.kind != "schedule":
                store.delete_timer(timer.id)
                report.events.append(timer_event(timer))
                continue
            rule = project.rule(timer.rule_id)
            if rule is None or not isinstance(rule.trigger, ScheduleTrigger):
                store.delete_timer(timer.id)
                continue
            plan = catch_up(rule.trigger, timer.due_at, now, project.config)
            if plan.missed:
                report.catch_ups.append((rule.id, rule.trigger.catch_up, plan.missed))
                log.warning("schedule %s: %d tick(s) missed while down, catch_up %s fires %d", rule.id, plan.missed,
                            rule.trigger.catch_up, len(plan.fire),
                            extra={"rule": rule.id, "missed": plan.missed, "policy": rule.trigger.catch_up})
            report.events.extend(tick_event(rule.id, tick, project.config, missed=plan.missed)
                                 for tick in plan.fire)
            if plan.next_due is None:
                store.delete_timer(timer.id)
            else:
                store.put_timer(Timer(id=timer.id, due_at=plan.next_due, kind="schedule", rule_id=rule.id,
                                      payload=timer.payload))
        if report.events:
            store.append(report.events, now)
            crashpoints.reached("timers.before_commit")
    if report.events:
        crashpoints.after_commit(store, "timers.after_commit")
    return report
