"""What expressions see: the event, the entity and its related client (also as `contact`), booking and deal (which
read each other across their link), settings and variables."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from automator import history
from automator.catalogue import Catalogue
from automator.config.project import Project
from automator.config.settings import Config
from automator.config.reads import ACROSS
from automator.expr import EvalContext, Linked, Record, Template
from automator.model import Entity, EntityRef, Event, Rule, Visit
from automator.store.base import Snapshot
from automator.store.order import sort_key, start_key, starting_within
from automator.triggers import kind_of

# Fields that link an entity to another one, and the kind they point to.
LINKS = (("client", "client"), ("contact", "client"), ("booking", "booking"), ("deal", "deal"))


def event_view(event: Event, catalogue: Catalogue | None = None, tz: ZoneInfo | None = None) -> dict[str, Any]:
    """`event.score` reads the data; `event.type`, `event.id`, `event.at`, `event.source`, `event.entity` and
    `event.data` always the envelope: a data field of one of those names is read only as `event.data.<name>`,
    so a name never means the data on one event and the envelope on another.

    With the project's catalogue and timezone, the data fields it types `datetime` or `date` are datetimes
    (dates), as the entity's are (see `typed`); `event.at` is the moment in the project's timezone."""
    data = dict(event.data)
    if catalogue is not None and tz is not None:
        data = _typed(data, _temporal(catalogue).events.get(event.type, ()), tz)
    if event.type in history.VISIT_EVENTS and "amount" in data:
        data["amount"] = history.shown_amount(data["amount"])  # money is a Decimal in expressions
    view: dict[str, Any] = dict(data)
    view.update({"id": event.id, "type": event.type, "at": event.at.astimezone(tz) if tz else event.at,
                 "source": event.source, "data": data,
                 "entity": {"kind": event.entity.kind, "id": event.entity.id} if event.entity is not None else None})
    return view


@dataclass(frozen=True, slots=True)
class _Temporal:
    """The fields a catalogue types `datetime`, `date` or `money`, per entity kind and per event type."""

    kinds: Mapping[str, tuple[tuple[str, str], ...]]
    events: Mapping[str, tuple[tuple[str, str], ...]]


_TEMPORAL: dict[int, tuple[Catalogue, _Temporal]] = {}


def _temporal(catalogue: Catalogue) -> _Temporal:
    # Worked out once per catalogue (a project keeps one for its life); keyed by identity, the catalogue kept
    # alive beside its entry so that the id is never reused for another one.
    found = _TEMPORAL.get(id(catalogue))
    if found is not None and found[0] is catalogue:
        return found[1]

    def pick(fields: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        return tuple((name, spec.type) for name, spec in fields.items()
                     if spec.type in ("datetime", "date", "money"))

    temporal = _Temporal({kind: pick(fields) for kind, fields in catalogue.entities.items()},
                         {type_: pick(catalogue.event_fields(type_)) for type_ in catalogue.events})
    if len(_TEMPORAL) > 64:
        _TEMPORAL.clear()
    _TEMPORAL[id(catalogue)] = (catalogue, temporal)
    return temporal


def typed(kind: str, fields: Mapping[str, Any], catalogue: Catalogue, tz: ZoneInfo) -> dict[str, Any]:
    """An entity's fields as expressions see them: those the catalogue types `datetime` are aware datetimes in
    the project's timezone and `date` ones dates, whatever text (ISO 8601) the system or the store held, and
    `money` ones given as decimal text exact Decimals (a deal's amount, as history's are); a value that is not a
    date or an amount at all is left as it is, for the expression to report."""
    return _typed(dict(fields), _temporal(catalogue).kinds.get(kind, ()), tz)


def _typed(fields: dict[str, Any], temporal: tuple[tuple[str, str], ...], tz: ZoneInfo) -> dict[str, Any]:
    for name, type_ in temporal:
        value = fields.get(name)
        if type_ == "money":
            # Decimal text (what connectors send money as) is exact money; a number written in a test or sent by
            # a system as one is left as it is (an int is exact already, a float is never taken for money).
            if value.__class__ is str and value:
                fields[name] = history.shown_amount(value)
        elif value is not None and not (type_ == "date" and value.__class__ is date):
            converted = as_date(value, tz) if type_ == "date" else to_datetime(value, tz)
            if converted is not None:
                fields[name] = converted.astimezone(tz) if isinstance(converted, datetime) else converted
    return fields


def sendable(value: Any, tz: tzinfo) -> Any:
    """Rendered params or event data as they leave the engine: a date-time (a lone `{{ booking.starts_at }}`
    keeps its type) becomes ISO 8601 text with its offset in the project's timezone, a date ISO text, so
    connectors, schemas and the store see the same text the system sent."""
    cls = value.__class__
    if cls is str or cls is int:  # what params mostly are: nothing to do
        return value
    if cls is Linked:  # `{{ deal.booking }}` alone: the id it is
        return str(value)
    if isinstance(value, datetime):
        return (value.astimezone(tz) if value.tzinfo is not None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):  # money leaves as exact decimal text, never a float
        return format(value, "f")
    if isinstance(value, dict):
        return {k: sendable(v, tz) for k, v in value.items()}
    if isinstance(value, list):
        return [sendable(v, tz) for v in value]
    return value


def as_date(value: Any, tz: ZoneInfo) -> date | None:
    """A date, an ISO date text, or the local date of a date-time (text or datetime)."""
    if isinstance(value, datetime):
        return (value.astimezone(tz) if value.tzinfo else value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    moment = to_datetime(value, tz)
    return moment.astimezone(tz).date() if moment is not None else None


def _typed_view(ref: EntityRef, fields: Mapping[str, Any], config: Config, now: datetime | None) -> dict[str, Any]:
    """A stored entity as expressions see it: typed (`typed`), with its id, and a client's history figures shown."""
    own = typed(ref.kind, fields, config.catalogue, config.timezone)  # a new dict already: no second copy
    own["id"] = ref.id
    if ref.kind == "client":
        history.shown(own, now, config.timezone)  # money as Decimal, days_since_last_visit from now
    return own


def build(project: Project, snapshot: Snapshot, event: Event, ref: EntityRef | None, fields: Mapping[str, Any] | None,
          before: Mapping[str, Any] | None, vars_: Mapping[str, Any] | None = None,
          view: dict[str, Any] | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The scope of one run: the entity under its kind's name, and the entities it links to.

    `view` is the event's view when the caller already built it (expressions only read it, so runs share it);
    `now` is the moment of deciding (a client's `days_since_last_visit` counts to it; the event's time without it).
    """
    now = now or event.at
    config = project.config
    prev = typed(ref.kind, before, config.catalogue, config.timezone) if ref is not None and before else {}
    scope: dict[str, Any] = {"event": view if view is not None else event_view(event, config.catalogue,
                                                                               config.timezone),
                             "settings": config.settings, "vars": dict(vars_ or {}), "prev": prev}
    if ref is not None and fields is not None:
        own = _typed_view(ref, fields, config, now)
        scope["entity"] = own
        scope[ref.kind] = own
        _follow_links(project, snapshot, own, scope, now)
    elif ref is not None:
        scope["entity"] = {"id": ref.id}
    linked = {k: v for k, v in event.data.items() if k in ("client", "booking", "deal")}
    if linked:
        _follow_links(project, snapshot, linked, scope, now)
    _across(scope)
    if "client" in scope:
        scope["contact"] = scope["client"]  # the person as a CRM calls them: `contact.name`, `contact.ids.crm`
    return scope


def _across(scope: dict[str, Any]) -> None:
    """Make each of the scope's deal and booking that names the other in it open onto it (an `expr.Linked`): the
    views are this scope's own, so they are changed in place."""
    for kind, field in ACROSS:  # `deal.booking.status`, `booking.deal.stage`
        own, other = scope.get(kind), scope.get(field)
        if not isinstance(own, dict) or not isinstance(other, Mapping):
            continue
        ident = own.get(field)
        if ident not in (None, "") and not isinstance(ident, (Linked, Mapping)) and str(ident) == str(other.get("id")):
            own[field] = Linked(str(ident), other)


def learn(scope: dict[str, Any], events: list[Event], project: Project) -> None:
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
        data = typed(ref.kind, {k: v for k, v in event.data.items() if k != "id"}, project.config.catalogue,
                     project.config.timezone)
        learned = {**view, **data}
        if scope.get("entity") is view:
            scope["entity"] = learned
        if scope.get("contact") is view:
            scope["contact"] = learned
        scope[ref.kind] = learned


def _follow_links(project: Project, snapshot: Snapshot, fields: Mapping[str, Any], scope: dict[str, Any],
                  now: datetime | None) -> None:
    for name, kind in LINKS:
        if kind in scope or fields.get(name) in (None, ""):
            continue
        value = fields[name]
        if isinstance(value, Mapping):
            continue
        linked = snapshot.entity(EntityRef(kind, str(value)))
        if linked is not None:
            scope[kind] = _typed_view(linked.ref, linked.fields, project.config, now)
            if kind == "booking" or kind == "deal":  # a booking's or deal's client is in scope too
                _follow_links(project, snapshot, scope[kind], scope, now)


class StoreLookups:
    """The snapshot as the library's lookups read it (`automator.expr.Lookups`): each record typed as the scope's
    entities are, through the store's indexes on links, the `client` field and the client's `phone` field, and
    never more rows than the lookup's budget (the store cuts its read at the limit). The event's own entity is
    read as the event leaves it (`current`), as the scope shows it."""

    def __init__(self, config: Config, snapshot: Snapshot, now: datetime, current: Entity | None = None) -> None:
        self.config, self.snapshot, self.current, self.now = config, snapshot, current, now

    def client_by_phone(self, phone: str) -> Record | None:
        """The person with this E.164 phone, typed: by the identity's phone link, else by a stored client's
        `phone` field (the oldest such client not deleted); None when nobody has it."""
        # The phone link is the identity's: every system's report of the person, matched and normalised when it
        # was journaled. A person no system reported (a test's `given:`, a `local` form) has no link, only the
        # `phone` field of their stored record: the second way, kept so such people are found too.
        person = self.snapshot.client_of("phone", phone)
        if person is not None:
            ref = EntityRef("client", person)
            entity = self.snapshot.entity(ref)
            return Record("client", _typed_view(ref, entity.fields if entity else {"phone": phone}, self.config,
                                                self.now))
        found = [e for e in self.snapshot.clients_with_phone(phone) if not e.fields.get("deleted")]
        return Record("client", _typed_view(found[0].ref, found[0].fields, self.config, self.now)) if found else None

    def records(self, kind: str, client: str, limit: int) -> list[Record]:
        """Up to `limit` of the person's records of a kind (bookings, deals, tasks), in the store's order
        (`store.order`), typed, as the event leaves them; deleted ones left out after they are counted (they were
        read)."""
        found = self._as_left(kind, lambda n: self.snapshot.related(kind, client, n),
                              lambda e: str(e.fields.get("client")) == client, sort_key, limit)
        return [Record(kind, _typed_view(e.ref, e.fields, self.config, self.now)) for e in found
                if not e.fields.get("deleted")]

    def bookings_starting(self, after: datetime, before: datetime, limit: int) -> list[Record]:
        """Up to `limit` of the bookings that start in [after, before) (as the store reads a start), earliest
        first, typed, as the event leaves them; deleted ones left out after they are counted."""
        found = self._as_left("booking", lambda n: self.snapshot.bookings_starting(after, before, n),
                              starting_within(after, before), start_key, limit)
        return [Record("booking", _typed_view(e.ref, e.fields, self.config, self.now)) for e in found
                if not e.fields.get("deleted")]

    def _as_left(self, kind: str, read: Callable[[int], list[Entity]], belongs: Callable[[Entity], bool],
                 key: Callable[[Entity], Any], limit: int) -> list[Entity]:
        """What `read` finds (given how many to read), with the event's own record in the state the event leaves
        it in: moved in or out of the list by its new fields (`belongs`), placed where `key`, the store's order,
        puts it."""
        current = self.current
        if current is None or current.ref.kind != kind:
            return read(limit)
        # The event's record may be among those read, in its old state: one more is read so that leaving it out
        # still leaves `limit`.
        found = [e for e in read(limit + 1) if e.ref != current.ref]
        if belongs(current):
            found = sorted((*found, current), key=key)
        return found[:limit]

    def visits(self, client: str, since: datetime | None, limit: int) -> list[Record]:
        """Up to `limit` of the person's visits and purchases, oldest first, since a moment when given, as
        expressions read them (`visit_view`)."""
        return [visit_view(v, self.config.timezone) for v in self.snapshot.visits_of(client, since, limit)]


def visit_view(visit: Visit, tz: ZoneInfo) -> Record:
    """A visit as expressions read it: `at` in the project's timezone, `amount` exact money (a Decimal)."""
    return Record("visit", {"id": visit.id, "client": visit.client, "at": visit.at.astimezone(tz), "kind": visit.kind,
                            "branch": visit.branch, "services": list(visit.services), "category": visit.category,
                            "staff": visit.staff, "amount": Decimal(visit.amount).scaleb(-2),
                            "currency": visit.currency, "booking": visit.booking})


def eval_context(project: Project, snapshot: Snapshot, now: datetime, current: Entity | None = None) -> EvalContext:
    """The function library's view of the world: the clock, the timezone, segments, business hours and the
    snapshot's records (the lookups), with `current`, the event's entity as the event leaves it, laid over them."""
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
                       end_of_day=anchor(end_of_day), start_of_day=anchor(start_of_day),
                       lookups=StoreLookups(project.config, snapshot, now, current))


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
    key = (rule.id, rule.version)
    if key not in _DESCRIBED:
        _DESCRIBED[key] = kind_of(rule.trigger).describe(rule.trigger)
    return _DESCRIBED[key]
