"""A simulated world on a fake clock: the core decides, the local connector performs, timers fire in time order;
and a test's `given:` (dry-run's `--state`) written into the world's store (`seed`)."""
from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from collections.abc import Iterable, Mapping
from typing import Any

from automator import history
from automator.actions import answered
from automator.config.load import builtin_connectors
from automator.config.project import Project
from automator.core.decide import arm_held, decide
from automator.core.wakeup import tick_event, timer_event
from automator.history import HistoryError
from automator.identity import as_persons
from automator.model import ENGINE, Effect, Entity, EntityRef, Event, ScheduleTrigger, Visit
from automator.run_errors import RunError, run_errors
from automator.store.base import Store
from automator.store.sqlite import SqliteStore
from automator.triggers.schedule import fires_between

MAX_EVENTS_PER_STEP = 10_000  # a runaway chain of rules ends the simulation step, it does not hang it


class SimulationError(Exception):
    """The simulated world could not go on (a runaway loop of rules, a bad event)."""


@dataclass(frozen=True, slots=True)
class Performed:
    """One effect as it happened in the simulation."""

    effect: Effect
    ok: bool
    error: str | None = None


class Simulator:
    """Drives the one core (`decide`) with a SQLite store in memory and every connector played by `local`."""

    def __init__(self, project: Project, now: datetime) -> None:
        self.project = project
        self.now = now
        # A test event from a connector whose ids are its own names that system's records: resolved to persons.
        self.store = SqliteStore(":memory:", systems=project.config.systems)
        self.local = _local_type()("simulated", {}, db=self.store.db, now=lambda: self.now)
        self.performed: list[Performed] = []
        self.events: list[Event] = []
        self.errors: list[RunError] = []  # runs that failed: a test fails on them unless it expects them
        self._serial = 0

    def given(self, entities: Iterable[Mapping[str, Any]]) -> None:
        """Seed known state (records, and visits into the clients' history); `held` values in it start counting
        now."""
        try:
            seeded = seed(self.store, entities, self.now, self.project.config.timezone)
        except HistoryError as exc:
            raise SimulationError(f"a given visit: {exc}") from exc
        for entity in seeded:
            for timer in arm_held(self.project, self.store, entity, self.now):
                self.store.put_timer(timer)

    def event(self, raw: Mapping[str, Any]) -> None:
        """Feed one event written as in a test's `when:` list, and everything it leads to."""
        self._serial += 1
        entity = raw.get("entity")
        at = raw.get("at")
        if at is not None:
            self.advance_to(_parse_time(at, self.project))
        event = Event(id=str(raw.get("id") or f"e{self._serial}"), type=str(raw["event"]), at=self.now,
                      entity=EntityRef(str(entity["kind"]), str(entity["id"])) if entity else None,
                      data=dict(raw.get("data") or {}), source=str(raw.get("source", "test")))
        self.process([self.store.resolve(event, self.now)])

    def process(self, events: list[Event]) -> None:
        """Decide each event, perform its effects, and follow the events those cause, breadth first."""
        queue = deque(events)
        handled = 0
        while queue:
            handled += 1
            if handled > MAX_EVENTS_PER_STEP:
                raise SimulationError(f"more than {MAX_EVENTS_PER_STEP} events from one step: a loop of rules?")
            event = queue.popleft()
            self.events.append(event)
            decision = decide(self.project, self.store, event, self.now)
            self.errors.extend(run_errors(self.project, decision, self.now))
            self.store.apply(decision)
            for effect in decision.effects:
                queue.extend(self._perform(effect))
            queue.extend(decision.events)

    def _perform(self, effect: Effect) -> list[Event]:
        if effect.connector == ENGINE:  # done inside the core already; its events came with the decision
            self.performed.append(Performed(effect, True))
            return []
        try:
            # local plays the system with automator's own ids: the persons the effect named go to it as persons.
            params = as_persons(effect.params, effect.connector, self.store) \
                if effect.connector in self.project.config.systems else effect.params
            result = self.local.perform(effect.action, params, effect.key)
        except Exception as exc:  # a failed effect is a result to show, not a crash of the test run
            self.performed.append(Performed(effect, False, str(exc)))
            self.store.record_effect(effect.key, "failed", {"error": str(exc)})
            return []
        self.performed.append(Performed(effect, True))
        self.store.record_effect(effect.key, "done", result.data)
        events = [answered(effect.action, params, replace(e, depth=effect.depth + 1, caused_by=effect.key,
                                                          echo_of=effect.rule_id)) for e in result.events]
        for event in events:  # as the store's settle does: the booking learns the deal made from it
            self.store.link_back(effect.action, event)
        return events

    def close(self) -> None:
        """Release what the world holds (nothing here; the sandbox's connectors and event loop)."""

    def advance(self, span: timedelta | Any) -> None:
        """Let time pass, firing every timer and schedule that falls due, in time order."""
        from automator.clock import Duration

        target = span.add_to(self.now, self.project.config.timezone) if isinstance(span, Duration) else self.now + span
        self.advance_to(target)

    def advance_to(self, target: datetime) -> None:
        """Move the clock to `target`, firing what falls due on the way."""
        if target < self.now:
            raise SimulationError(f"time cannot go back from {self.now.isoformat()} to {target.isoformat()}")
        # Every tick fires, as the daemon fires a schedule that was never down, with the daemon's own event ids.
        schedules = sorted((at, rule.id) for rule in self.project.router.schedules
                           if isinstance(rule.trigger, ScheduleTrigger)
                           for at in fires_between(rule.trigger, self.now, target, self.project.config))
        while True:
            timer = self.store.next_timer(target)
            tick = schedules[0] if schedules else None
            if timer is None and tick is None:
                break
            if tick is not None and (timer is None or tick[0] <= timer.due_at):
                schedules.pop(0)
                self.now = max(self.now, tick[0])
                self.process([tick_event(tick[1], tick[0], self.project.config)])
            else:
                assert timer is not None
                self.store.delete_timer(timer.id)
                self.now = max(self.now, timer.due_at)
                self.process([timer_event(timer)])
        self.now = target


def seed(store: Store, records: Iterable[Mapping[str, Any]], at: datetime, tz: tzinfo) -> list[Entity]:
    """Write a test's `given:` (or dry-run's `--state`): records as they are, visits into the history with their
    clients' derived fields recomputed as an import does. The entities as they then stand (clients' included)."""
    refs: list[EntityRef] = []
    visits: list[Visit] = []
    for number, raw in enumerate(records):
        if raw.get("kind") in history.GIVEN_KINDS:
            visits.append(history.given_visit(raw, number, tz))
            continue
        ref = EntityRef(str(raw["kind"]), str(raw["id"]))
        store.put_entity(Entity(ref, {k: v for k, v in raw.items() if k not in ("kind", "id")}, at))
        refs.append(ref)
    if visits:
        store.put_visits(visits)
        store.recompute_history({v.client for v in visits}, at)
        refs += [ref for ref in dict.fromkeys(EntityRef("client", v.client) for v in visits) if ref not in refs]
    return [entity for entity in map(store.entity, refs) if entity is not None]


def _parse_time(value: Any, project: Project) -> datetime:
    at = datetime.fromisoformat(str(value))
    return at if at.tzinfo else at.replace(tzinfo=project.config.timezone)


@functools.cache
def _local_type() -> Any:
    """`local` through the connector registry, as every connector is reached (only it takes the store's
    database); looked up once, not for each simulated test: the lookup scans the installed entry points."""
    return builtin_connectors()["local"]


parse_time = _parse_time
