"""The interface of a trigger kind (TriggerKind), and what the core offers a trigger while it decides one event
(Deciding) or arms a timer for state already known (Arming). Declared here, below the core, so that a trigger
module reacts to events and timers without importing the core that calls it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from automator.clock import BusinessHours
from automator.config.context import CompileContext
from automator.expr import Expr
from automator.model import Entity, EntityRef, Event, Rule, Timer, Trigger, same


class Arming(Protocol):
    """What computing a timer's due time reads: the clock, business hours and the entity's own scope."""

    now: datetime

    @property
    def timezone(self) -> ZoneInfo:
        """The project's timezone."""

    def hours(self, branch: str | None, fields: Mapping[str, Any]) -> BusinessHours | None:
        """Business hours of the named branch, else of the entity's (or its booking's) branch, else the default."""

    def moment(self, expr: Expr, ref: EntityRef, fields: Mapping[str, Any]) -> datetime | None:
        """The moment an expression about one entity names; None when it fails or names no moment."""


class Deciding(Arming, Protocol):
    """One call of `decide`, as a trigger sees it: the event, the entity's fields before and after it, and what
    a trigger may do about a rule: say why it does not start, start it, arm or cancel a timer."""

    event: Event
    fields_before: Mapping[str, Any] | None
    fields_after: Mapping[str, Any] | None

    def why_not(self, rule_id: str, reason: str) -> None:
        """Record that a candidate rule did not fire, and why."""

    def start(self, rule: Rule, ref: EntityRef | None, fields: Mapping[str, Any] | None) -> None:
        """Start a run of the rule for this entity (its conditions are checked there); for a rule with `for_each`,
        one run for every record it selects, `items:` evaluated in this entity's scope."""

    def evaluate(self, expr: Expr, fields: Mapping[str, Any]) -> Any:
        """An expression's value in the event's scope (EvalError when it fails)."""

    def set_timer(self, timer: Timer) -> None:
        """Arm (or re-arm) a timer."""

    def cancel_timer(self, timer_id: str) -> None:
        """Cancel a timer."""


@dataclass(frozen=True, slots=True)
class TriggerKind:
    """One kind of trigger: its key under `when:`, its model type and what it does at each moment of a rule's life.

    `routes` gives the routing keys an event must carry to reach the rule; `routed` reacts to such an event
    (start the rule, say why not, arm or cancel a timer); `fired` reacts to the trigger's own timer coming due;
    `armed` gives the timer that state already known arms (a test's `given:`); `per_entity` says its timers are
    kept per entity (the timer's key names it, and its firing is about it). A kind that is only woken by its
    timers has no `routed`, and its `routes` must give no keys (the router refuses a rule otherwise)."""

    key: str
    model: type
    compile: Callable[[Mapping[str, Any], Sequence[str | int], CompileContext], Trigger | None]
    routes: Callable[[Any], list[str]]
    describe: Callable[[Any], str]
    routed: Callable[[Rule, Deciding], None] | None
    fired: Callable[[Rule, Deciding], None] | None = None
    armed: Callable[[Rule, Entity, Arming], Timer | None] | None = None
    per_entity: bool = False

    def __post_init__(self) -> None:
        # Refused here, at import: a kind that cannot react to anything would make its rules silently dead.
        if self.routed is None and self.fired is None:
            raise TypeError(f"trigger kind {self.key!r} reacts to nothing: give it `routed` or `fired`")
        if getattr(self.model, "KIND", None) != self.key:
            raise TypeError(f"trigger kind {self.key!r}: its model {self.model.__name__} has KIND "
                            f"{getattr(self.model, 'KIND', None)!r}")


def outside_pipeline(pipeline: str | None, fields: Mapping[str, Any] | None) -> str | None:
    """Why an entity is not in the trigger's `pipeline:` narrowing; None when it is (or there is none)."""
    found = fields.get("pipeline") if fields else None
    if pipeline and not same(found, pipeline):
        return f"the deal is in pipeline {found!r}, rule wants {pipeline!r}"
    return None
