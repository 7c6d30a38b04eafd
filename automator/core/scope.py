"""What expressions see: the event, the entity and its related client/booking/deal, settings and variables."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from automator.expr import EvalContext, Template
from automator.model import EntityRef, Event, Rule, iso
from automator.store.base import Snapshot

# Fields that link an entity to another one, and the kind they point to.
LINKS = (("client", "client"), ("contact", "client"), ("booking", "booking"), ("deal", "deal"))


def event_view(event: Event) -> dict[str, Any]:
    """`event.score` reads the data; `event.type`, `event.id` and `event.at` the envelope."""
    view: dict[str, Any] = dict(event.data)
    view.update({"id": event.id, "type": event.type, "at": iso(event.at), "source": event.source,
                 "data": dict(event.data)})
    if event.entity is not None:
        view["entity"] = {"kind": event.entity.kind, "id": event.entity.id}
    return view


def _fields(ref: EntityRef, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {**fields, "id": ref.id}


def build(project: Any, snapshot: Snapshot, event: Event, ref: EntityRef | None, fields: Mapping[str, Any] | None,
          before: Mapping[str, Any] | None, vars_: Mapping[str, Any] | None = None,
          view: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scope of one run: the entity under its kind's name, and the entities it links to.

    `view` is the event's view when the caller already built it (expressions only read it, so runs share it).
    """
    scope: dict[str, Any] = {"event": view if view is not None else event_view(event),
                             "settings": project.config.settings,
                             "vars": dict(vars_ or {}), "prev": dict(before or {})}
    if ref is not None and fields is not None:
        own = _fields(ref, fields)
        scope["entity"] = own
        scope[ref.kind] = own
        _follow_links(snapshot, own, scope)
    elif ref is not None:
        scope["entity"] = {"id": ref.id}
    linked = {k: v for k, v in event.data.items() if k in ("client", "booking", "deal")}
    if linked:
        _follow_links(snapshot, linked, scope)
    return scope


def learn(scope: dict[str, Any], events: list[Event]) -> None:
    """The run's scope after events the run itself caused inside the core (`segment.recompute`'s
    `client.updated`): an entity the scope shows takes the event's fields, as the store will when the decision
    commits, so the run's later steps read the new values (`segment_of(client)`, `segment_avg_recency(client)`).

    The entity's view is replaced, never changed in place: runs of the same event share the views they start with.
    """
    for event in events:
        ref = event.entity
        if ref is None or event.kind != ref.kind or event.verb not in ("created", "updated", "changed"):
            continue
        view = scope.get(ref.kind)
        if not isinstance(view, Mapping) or str(view.get("id")) != ref.id:
            continue
        learned = {**view, **{k: v for k, v in event.data.items() if k != "id"}}
        if scope.get("entity") is view:
            scope["entity"] = learned
        scope[ref.kind] = learned


def _follow_links(snapshot: Snapshot, fields: Mapping[str, Any], scope: dict[str, Any]) -> None:
    for name, kind in LINKS:
        if kind in scope or fields.get(name) in (None, ""):
            continue
        value = fields[name]
        if isinstance(value, Mapping):
            continue
        linked = snapshot.entity(EntityRef(kind, str(value)))
        if linked is not None:
            scope[kind] = _fields(linked.ref, linked.fields)
            if kind == "booking" or kind == "deal":  # a booking's or deal's client is in scope too
                _follow_links(snapshot, scope[kind], scope)


def eval_context(project: Any, snapshot: Snapshot, now: datetime) -> EvalContext:
    """The function library's view of the world: the clock, the timezone, segments and business hours."""
    from automator.clock import end_of_day, start_of_day

    tz: ZoneInfo = project.config.timezone
    recency = None

    def segment_of(client: Mapping[str, Any]) -> str | None:
        value = client.get("segment") if isinstance(client, Mapping) else None
        return str(value) if value else None

    def avg_recency(client: Mapping[str, Any]) -> timedelta | None:
        nonlocal recency
        if recency is None:
            recency = dict(snapshot.segment_recency())
        name = segment_of(client)
        if name and name in recency:
            return recency[name]
        return project.segments.default_recency if project.segments else None

    def anchor(fn: Any) -> Any:
        def at(moment: datetime, branch: str | None = None) -> datetime:
            hours = project.config.branch(branch)
            if hours is None:
                raise ValueError("no business hours are configured")
            return fn(moment, hours)
        return at

    return EvalContext(now=now.astimezone(tz), tz=tz, segment_of=segment_of, segment_avg_recency=avg_recency,
                       end_of_day=anchor(end_of_day), start_of_day=anchor(start_of_day))


def per_key(rule: Rule, scope: Mapping[str, Any], ref: EntityRef | None, ectx: EvalContext) -> str:
    """The key that `mode` works on: the event's entity by default, or the `per:` kind or template."""
    if isinstance(rule.per, Template):
        return f"{rule.id}:{rule.per.render(scope, ectx)}"
    if isinstance(rule.per, str) and rule.per != "entity":
        linked = scope.get(rule.per)
        if isinstance(linked, Mapping) and linked.get("id") is not None:
            return f"{rule.per}:{linked['id']}"
    return str(ref) if ref is not None else rule.id


def branch_of(snapshot: Snapshot, fields: Mapping[str, Any]) -> str | None:
    """The branch an entity belongs to: its own `branch`, or its booking's."""
    if fields.get("branch"):
        return str(fields["branch"])
    booking = fields.get("booking")
    if booking:
        linked = snapshot.entity(EntityRef("booking", str(booking)))
        if linked is not None and linked.fields.get("branch"):
            return str(linked.fields["branch"])
    return None


def to_datetime(value: Any, tz: ZoneInfo) -> datetime | None:
    """A datetime, date or ISO text as a tz-aware datetime."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=tz)
    return None


_DESCRIBED: dict[tuple[str, str], str] = {}


def describe(rule: Rule) -> str:
    """The rule's trigger in one line (worked out once per rule version)."""
    from automator.core.router import trigger_kind
    from automator.triggers import TRIGGERS

    key = (rule.id, rule.version)
    if key not in _DESCRIBED:
        _DESCRIBED[key] = TRIGGERS[trigger_kind(rule)].describe(rule.trigger)
    return _DESCRIBED[key]
