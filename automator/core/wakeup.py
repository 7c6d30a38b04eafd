"""Fired timers as events (the one path every wake-up takes), and a schedule's catch-up after downtime."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from automator.config.settings import Config
from automator.loyalty.decision import TIMER_KIND as LOYALTY_TIMER
from automator.model import EntityRef, Event, ScheduleTrigger, Timer
from automator.triggers import TRIGGERS
from automator.triggers.schedule import MAX_FIRES, fires_between, timer_id as schedule_timer_id

# A tick this late is a missed one: `skip` drops it, `once` folds it with the others.
ON_TIME = timedelta(seconds=60)


def timer_event(timer: Timer) -> Event:
    """A fired timer as an event: the one path every wake-up takes. A timer the engine set for itself (loyalty's
    expiry and notices: no rule's) names its entity by its key and carries its payload."""
    kind = TRIGGERS.get(timer.kind)  # a run's `resume` timer is no trigger's
    own = timer.kind == LOYALTY_TIMER
    entity = EntityRef.parse(timer.key) if timer.key and (own or (kind is not None and kind.per_entity)) else None
    data: dict[str, Any] = {"kind": timer.kind, "rule": timer.rule_id, "run": timer.run_id, "timer": timer.id}
    if own:
        data["payload"] = dict(timer.payload)
    return Event(id=f"{timer.id}@{timer.due_at.isoformat()}", type="timer.fired", at=timer.due_at, entity=entity,
                 data=data, source="timer")


def schedule_spec(trigger: ScheduleTrigger) -> str:
    """What a schedule timer was computed from; when the rule's schedule changes, the timer is reset."""
    return f"{trigger.cron or trigger.anchor}|{trigger.branch or ''}|{trigger.catch_up}"


def next_tick(trigger: ScheduleTrigger, after: datetime, config: Config) -> datetime | None:
    """The first fire time strictly after `after`."""
    horizon = timedelta(days=1)
    for _ in range(9):  # a yearly cron is found within 2**9 days of searching
        fires = fires_between(trigger, after, after + horizon, config)
        if fires:
            return fires[0]
        horizon *= 2
    return None


def tick_event(rule_id: str, tick: datetime, config: Config, *, missed: int = 0) -> Event:
    """One schedule firing. Its id is the rule and the local wall time with its UTC offset, so a tick can be
    journaled only once. The offset keeps apart the two passes of a repeated fall-back hour, which an hourly
    schedule fires both (automator/clock.py: cron_next); a fixed-hour schedule fires each local time once."""
    wall = tick.astimezone(config.timezone).isoformat()
    data: dict[str, Any] = {"kind": "schedule", "rule": rule_id, "timer": schedule_timer_id(rule_id),
                            "tick": tick.isoformat()}
    if missed:
        data["missed"] = missed
    return Event(id=f"schedule/{rule_id}@{wall}", type="timer.fired", at=tick, data=data, source="timer")


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What to do with a schedule timer that came due: the ticks to fire, how many were missed, the next due."""

    fire: tuple[datetime, ...]
    missed: int
    next_due: datetime | None


def catch_up(trigger: ScheduleTrigger, due: datetime, now: datetime, config: Config) -> CatchUp:
    """Apply the schedule's catch-up policy to every tick from `due` up to `now`.

    `once` (default): one run for all the ticks missed; `skip`: late ticks are dropped, an on-time one fires;
    `all`: every tick fires, in order (at most MAX_FIRES).
    """
    ticks = [due, *fires_between(trigger, due, now, config)][:MAX_FIRES]
    late = [t for t in ticks if now - t > ON_TIME]
    on_time = [t for t in ticks if now - t <= ON_TIME]
    following = next_tick(trigger, max(now, ticks[-1]), config)
    if trigger.catch_up == "all":
        return CatchUp(tuple(ticks), len(late), following)
    if trigger.catch_up == "skip":
        return CatchUp(tuple(on_time[-1:]), len(late), following)
    # Missed: the ticks that did not run on time as themselves (folded into the one run, or that one if late).
    return CatchUp((ticks[-1],), len(ticks) - 1 + (1 if now - ticks[-1] > ON_TIME else 0), following)
