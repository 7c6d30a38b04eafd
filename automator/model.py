"""Frozen data types at the boundaries: events, entities, rules, steps, timers, effects, runs, decisions."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from automator.loyalty.ledger import Entry

if TYPE_CHECKING:
    from automator.clock import Duration
    from automator.expr import Expr, Template

ENTITY_KINDS = ("client", "booking", "deal", "task")
MODES = ("single", "restart", "queued", "parallel")
# The connector name of effects the engine performs itself, inside the core (`segment.recompute`).
ENGINE = "engine"


def same(a: object, b: object) -> bool:
    """Equality as an admin means it: `5` written in YAML equals "5" sent by a CRM."""
    if a == b:
        return True
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    return str(a) == str(b)


def plain(value: Any) -> Any:
    """Values as they can be shown and stored."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


_ISO: dict[tuple[datetime, Any], str] = {}


def iso(at: datetime) -> str:
    """`at.isoformat()`, remembered: a batch stamps the same few moments on every trace step and event it writes.
    Keyed by the moment and its offset: equal moments in different offsets are equal datetimes, not equal texts."""
    key = (at, at.utcoffset())
    text = _ISO.get(key)
    if text is None:
        if len(_ISO) >= 1024:
            _ISO.clear()
        text = _ISO[key] = at.isoformat()
    return text


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written: file, line and column (1-based)."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class EntityRef:
    """A client, booking, deal or task by kind and id; ids are always text."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @staticmethod
    def parse(text: str) -> EntityRef:
        """Parse `kind:id`."""
        kind, _, ident = text.partition(":")
        if not kind or not ident:
            raise ValueError(f"expected KIND:ID, got {text!r}")
        return EntityRef(kind, ident)


@dataclass(frozen=True, slots=True)
class Entity:
    """The last known state of one entity."""

    ref: EntityRef
    fields: Mapping[str, Any]
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Visit:
    """One visit (or purchase) in a person's history. Money is exact: `amount` is in minor units (kopecks)."""

    id: str  # unique across systems: "<connector>:<the system's visit id>", or "import:<…>" for an imported row
    client: str  # the person's id (the `client` entity's id)
    at: datetime
    kind: str = "visit"  # visit | purchase
    branch: str | None = None
    services: tuple[str, ...] = ()
    category: str | None = None  # the service category
    staff: str | None = None
    amount: int = 0
    currency: str = "RUB"
    booking: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened. `depth` counts how many rule effects led to it (the echo guard)."""

    id: str
    type: str
    at: datetime
    entity: EntityRef | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    source: str = "external"
    delivery_id: str | None = None
    depth: int = 0
    caused_by: str | None = None  # the effect key whose performance produced this event
    echo_of: str | None = None  # the rule whose own effect this event reports back (it must not restart it)
    # The id of the event that first reported the same change of the same effect (the action's answer and the
    # system's webhook, or its catch-up poll, each report it; whichever came second repeats the first).
    repeats: str | None = None

    @property
    def kind(self) -> str:
        """The part of the type before the dot: `booking` in `booking.updated`."""
        return self.type.partition(".")[0]

    @property
    def verb(self) -> str:
        """The part of the type after the dot: `updated` in `booking.updated`."""
        return self.type.partition(".")[2]

    def to_json(self) -> dict[str, Any]:
        """Plain data for output and storage."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "at": iso(self.at), "source": self.source}
        if self.entity:
            out["entity"] = {"kind": self.entity.kind, "id": self.entity.id}
        out["data"] = dict(self.data)
        if self.depth:
            out["depth"] = self.depth
        if self.caused_by:
            out["caused_by"] = self.caused_by
        if self.echo_of:
            out["echo_of"] = self.echo_of
        if self.repeats:
            out["repeats"] = self.repeats
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Event:
        """The inverse of `to_json` (plus the journal's `delivery_id`): an event back from its plain form."""
        entity = data.get("entity")
        return Event(id=str(data["id"]), type=str(data["type"]), at=datetime.fromisoformat(str(data["at"])),
                     entity=EntityRef(str(entity["kind"]), str(entity["id"])) if entity else None,
                     data=dict(data.get("data") or {}), source=str(data.get("source", "")),
                     delivery_id=data.get("delivery_id"), depth=int(data.get("depth", 0)),
                     caused_by=data.get("caused_by"), echo_of=data.get("echo_of"), repeats=data.get("repeats"))


# ---- pipelines -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Stage:
    """One funnel stage in business words, mapped to the CRM's own id."""

    name: str
    crm_id: str
    title: str = ""
    requires: tuple[str, ...] = ()
    sla: Duration | None = None
    outcome: str | None = None
    # A lead or deal counts as qualified from the first time it enters this stage or a later one (not a lost one).
    qualified: bool = False


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A named funnel owned by one connector."""

    name: str
    connector: str
    crm_id: str | None
    stages: Mapping[str, Stage]
    title: str = ""
    location: Location | None = None

    def qualifies(self, stage: str | None) -> bool:
        """True when a record at `stage` counts as qualified: the stage is the one marked `qualified: true`, or
        comes after it in the file, or is won. A lost stage never qualifies by its place (a lead lost at the start
        was never qualified)."""
        found = self.stages.get(stage) if stage is not None else None
        if found is None or found.outcome == "lost":
            return False
        if found.outcome == "won":
            return True
        for candidate in self.stages.values():
            if candidate.qualified:
                return True  # the marked stage comes first: every stage from here on qualifies
            if candidate is found:
                return False
        return False


# ---- triggers ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EventTrigger:
    """`when: {event: TYPE, where: EXPR}`."""

    KIND: ClassVar[str] = "event"  # the YAML key under `when:`, and the trigger registry's name for it
    type: str
    where: Expr | None = None
    pipeline: str | None = None


@dataclass(frozen=True, slots=True)
class ChangedTrigger:
    """`when: {changed: KIND.FIELD, from: ..., to: ...}`; None means any value."""

    KIND: ClassVar[str] = "changed"  # the YAML key under `when:`, and the trigger registry's name for it
    kind: str
    field: str
    from_: tuple[Any, ...] | None = None
    to: tuple[Any, ...] | None = None
    pipeline: str | None = None


@dataclass(frozen=True, slots=True)
class HeldTrigger:
    """`when: {held: KIND.FIELD, is: VALUE, for: DURATION | until: TIME}`."""

    KIND: ClassVar[str] = "held"  # the YAML key under `when:`, and the trigger registry's name for it
    kind: str
    field: str
    value: Any
    for_: Duration | None = None
    until: str | Expr | None = None  # "end_of_day" / "start_of_day" or an expression
    branch: str | None = None
    pipeline: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleTrigger:
    """`when: {schedule: CRON | end_of_day | start_of_day}`."""

    KIND: ClassVar[str] = "schedule"  # the YAML key under `when:`, and the trigger registry's name for it
    cron: str | None
    anchor: str | None = None  # "end_of_day" / "start_of_day"
    branch: str | None = None
    catch_up: str = "once"


class Trigger(Protocol):
    """A compiled `when:`: a frozen dataclass naming its kind. A new kind's dataclass lives in its own module
    (`triggers/<kind>.py`); the four above stay here because so much reads them."""

    KIND: ClassVar[str]


# ---- steps ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ActionStep:
    """`<kind>.<verb>: params` — the only step that touches the world, through an Effect."""

    KIND: ClassVar[str] = "action"  # the step registry's name for it
    action: str
    params: Any  # nested dict/list/scalars with Template leaves
    via: str | None = None
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class WaitStep:
    """`wait: 14d | {for: EXPR} | {until: EXPR | end_of_day}`."""

    KIND: ClassVar[str] = "wait"  # the step registry's name for it
    duration: Duration | None = None
    for_: Expr | None = None
    until: str | Expr | None = None
    branch: str | None = None
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class IfStep:
    """`if: EXPR, then: [...], else: [...]`."""

    KIND: ClassVar[str] = "if"  # the step registry's name for it
    conditions: tuple[Expr, ...]
    then: tuple[Step, ...]
    else_: tuple[Step, ...] = ()
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class SetStep:
    """`set: {name: value}` — run variables, read as `vars.name`."""

    KIND: ClassVar[str] = "set"  # the step registry's name for it
    values: Mapping[str, Any]
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class EmitStep:
    """`emit: {event: TYPE, entity: {...}, data: {...}}`."""

    KIND: ClassVar[str] = "emit"  # the step registry's name for it
    type: str
    entity: Any = None
    data: Any = None
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class StopStep:
    """`stop: reason`."""

    KIND: ClassVar[str] = "stop"  # the step registry's name for it
    reason: str = ""
    location: Location | None = None


class Step(Protocol):
    """A compiled `do:` item: a frozen dataclass naming its kind. A new kind's dataclass lives in its own module
    (`steps/<kind>.py`); the six above stay here because so much reads them."""

    KIND: ClassVar[str]


def steps_shape(steps: tuple[Step, ...]) -> str:
    """The structure of a step list (kinds, actions, nesting), without params or texts.

    A run waiting at a cursor may continue on a new version of its rule only if the shape is the same:
    then the cursor still points at the step it was meant to (see `Rule.version`).
    """
    def walk(items: tuple[Step, ...]) -> str:
        parts = []
        for step in items:
            if isinstance(step, ActionStep):
                parts.append(step.action)
            elif isinstance(step, IfStep):
                parts.append(f"if({walk(step.then)}|{walk(step.else_)})")
            else:
                parts.append(type(step).__name__)
        return ",".join(parts)
    import hashlib

    return hashlib.sha256(walk(steps).encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class ForEach:
    """`for_each: {kind: client, where: EXPR}` — one run per stored entity of the kind; with `items: EXPR` (a
    lookup such as `bookings_of(client)`, evaluated in the trigger's scope), one per record it gives instead."""

    kind: str
    where: Expr | None = None
    items: Expr | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """`when` + `if` + `do`, with how concurrent runs of the same key behave."""

    id: str
    trigger: Trigger
    conditions: tuple[Expr, ...]
    steps: tuple[Step, ...]
    per: str | Template | None = None  # an entity kind, or a template rendering the key
    mode: str = "restart"
    for_each: ForEach | None = None
    description: str = ""
    version: str = ""  # "<shape>.<content>": see steps_shape
    location: Location | None = None

    @property
    def shape(self) -> str:
        """The steps' structure part of the version."""
        return self.version.partition(".")[0]


# ---- what the core decides -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Timer:
    """A durable wake-up: a run's wait, a `held` trigger or a schedule tick."""

    id: str
    due_at: datetime
    kind: str  # resume | held | schedule
    rule_id: str
    key: str = ""
    run_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Effect:
    """One action to perform; `key` (run id + step path) is its idempotency key."""

    key: str
    run_id: str
    rule_id: str
    action: str
    connector: str
    params: Mapping[str, Any]
    delivery: str
    at: datetime
    entity: EntityRef | None = None
    depth: int = 0  # the depth of the event that started the run: events this effect causes get depth + 1


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One line of a run's trace, addressed by config path (`do/2/then/0`)."""

    path: str
    kind: str  # trigger | condition | action | wait | if | set | emit | stop | error | cancel
    detail: str = ""
    value: Any = None
    error: str | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data for output and storage."""
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.detail:
            out["detail"] = self.detail
        if self.value is not None:
            out["value"] = self.value
        if self.error:
            out["error"] = self.error
        if self.at:
            out["at"] = iso(self.at)
        return out


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a rule; a waiting run is resumed by its timer."""

    id: str
    rule_id: str
    rule_version: str
    key: str
    event_id: str
    status: str  # waiting | queued | done | failed | stopped | cancelled | skipped
    cursor: tuple[Any, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    entity: EntityRef | None = None
    trace: tuple[TraceStep, ...] = ()
    started_at: datetime | None = None
    depth: int = 0
    origin: Mapping[str, Any] = field(default_factory=dict)  # the triggering event as plain data


@dataclass(frozen=True, slots=True)
class WhyNot:
    """A candidate rule that did not fire for an event, and why."""

    rule_id: str
    reason: str
    conditions: tuple[tuple[str, Any], ...] = ()


# ---- what the reports read (automator/facts.py computes them; migration m005 keeps them) ------
# Named tuples, not dataclasses: a deal, lead or booking event makes several of them in the engine's hot path, and
# a tuple is made several times faster than a frozen dataclass of twenty fields.

class Touch(NamedTuple):
    """Where a record came from, as one event says: a channel of automator.yaml's `channels:`, the campaign, and
    when (seconds since the epoch, UTC)."""

    channel: str
    campaign: str | None
    at: int


class LeadRow(NamedTuple):
    """One lead or deal as one event leaves it (the `leads` table). None is "this event does not say": the stored
    value stays. `first` is a first-touch candidate (kept only when none is stored or it is earlier, unless
    `force_first`), `last` a last-touch one (kept when it is later and names another channel or campaign, unless
    `force_last`); created_at and qualified_at only ever move earlier, closed_at is kept while the outcome stays."""

    id: str  # "deal:<deal id>" or "lead:<connector>:<lead id>"
    kind: str  # deal | lead
    source: str | None  # the connector that reported it (None: a rule's set_source, which keeps the stored one)
    client: str | None = None
    pipeline: str | None = None
    stage: str | None = None
    outcome: str | None = None  # open | won | lost
    responsible: str | None = None
    created_at: int | None = None
    qualified_at: int | None = None
    closed_at: int | None = None
    amount: int | None = None
    currency: str | None = None
    first: Touch | None = None
    last: Touch | None = None
    raw_source: str | None = None
    utm: tuple[str | None, str | None, str | None, str | None, str | None] = (None, None, None, None, None)
    force_first: bool = False  # a rule's set_source corrects the first touch whatever is stored
    force_last: bool = False


class StageMove(NamedTuple):
    """A lead or deal entered a stage (its first included): when, from which, who moved it, who was in charge.
    `from_stage` None for a lead means "the one stored" (a lead has no entity to compare with: the store
    compares, and keeps the move only when the stage differs)."""

    record: str
    pipeline: str | None
    stage: str
    from_stage: str | None
    at: int
    by: str | None  # "rule:<rule id>" for our own effect, else the system's user when the payload says
    responsible: str | None
    event: str


class BookingRow(NamedTuple):
    """One booking as one event leaves it (the `bookings` table); created_at only ever moves earlier."""

    id: str
    source: str
    client: str | None
    staff: str | None
    branch: str | None
    status: str | None
    created_at: int
    starts_at: int | None
    amount: int | None
    channel: str | None
    campaign: str | None = None


class ReviewRow(NamedTuple):
    """One review or NPS answer (the `reviews` table): a score from 0 to 10."""

    id: str
    client: str | None
    at: int
    score: int
    staff: str | None = None
    branch: str | None = None
    booking: str | None = None


class ClientSource(NamedTuple):
    """A rule's set_source on a client: their first channel, whatever their records say."""

    client: str
    channel: str
    campaign: str | None
    at: int


@dataclass(frozen=True, slots=True)
class Facts:
    """The rows one event adds to what the reports read. A person's first channel (`client_channels`) is kept
    by the store from the leads, deals and bookings it writes (the earliest one with a channel)."""

    leads: tuple[LeadRow, ...] = ()
    moves: tuple[StageMove, ...] = ()
    bookings: tuple[BookingRow, ...] = ()
    reviews: tuple[ReviewRow, ...] = ()
    client_sources: tuple[ClientSource, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.leads or self.moves or self.bookings or self.reviews or self.client_sources)


@dataclass(frozen=True, slots=True)
class Decision:
    """The only output of the core: what to store, perform and schedule for one event."""

    event: Event
    entity_before: Entity | None
    entity_after: Entity | None
    runs: tuple[Run, ...] = ()
    effects: tuple[Effect, ...] = ()
    timers: tuple[Timer, ...] = ()
    cancel_timers: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    why_not: tuple[WhyNot, ...] = ()
    visits: tuple[Visit, ...] = ()  # history the event adds (written once: a visit id already stored is kept)
    facts: Facts = Facts()  # what the reports read: leads, stage moves, bookings, reviews (automator/facts.py)
    ledger: tuple[Entry, ...] = ()  # loyalty ledger rows (automator/loyalty): written once, by their ids
