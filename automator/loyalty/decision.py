"""What loyalty decides for one event, as plain data (`Outcome`), and what its mechanics may read (`Reading`,
`Happening`): shared by the programs, the certificates and abonements, and the runtime that combines them."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from automator.loyalty.ledger import Entry, ordered
from automator.model import Effect, Entity, EntityRef, Event, Timer, Visit

if TYPE_CHECKING:
    from automator.segments import SegmentsConfig

# The kind of the timers loyalty sets (expiry, "expiring" notices): `timer.fired` of this kind goes to
# `runtime.on_timer`, with the timer's payload in the event's `payload`.
TIMER_KIND = "loyalty"


class Reading(Protocol):
    """What loyalty's mechanics read of the store (the decision's Snapshot is one)."""

    def entity(self, ref: EntityRef) -> Entity | None:
        """The stored state of an entity."""

    def ledger_of(self, client: str) -> list[Entry]:
        """A person's ledger rows, in the ledger's order."""

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        """A person's visits and purchases, oldest first."""

    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's id (or, with system `phone`, a phone) belongs to."""


@dataclass(frozen=True, slots=True)
class Happening:
    """One event as loyalty sees it: the event, its client as the event leaves them (history fields and segment
    included), the visits it adds to their history, the clock, and segments.yaml (a segment names its clients'
    program)."""

    event: Event
    client: Entity | None
    visits: tuple[Visit, ...]
    now: datetime
    tz: ZoneInfo
    segments: SegmentsConfig | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What loyalty adds to one decision: ledger rows, events for rules (`loyalty.tier_changed`, …), timers set
    and cancelled, and effects (the mirror of the ledger in a booking system)."""

    entries: tuple[Entry, ...] = ()
    events: tuple[Event, ...] = ()
    timers: tuple[Timer, ...] = ()
    cancel_timers: tuple[str, ...] = ()
    effects: tuple[Effect, ...] = ()

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(self.entries + other.entries, self.events + other.events, self.timers + other.timers,
                       self.cancel_timers + other.cancel_timers, self.effects + other.effects)

    def __bool__(self) -> bool:
        return bool(self.entries or self.events or self.timers or self.cancel_timers or self.effects)


class Staged:
    """A Reading with rows this decision has made so far laid over it: a later mechanic (or action) in the same
    decision sees the earlier ones' rows."""

    def __init__(self, reading: Reading, entries: Iterable[Entry] = ()) -> None:
        self.reading = reading
        self.entries: list[Entry] = list(entries)

    def keep(self, entries: Iterable[Entry]) -> None:
        """Add rows made in this decision (a row whose id is there already is kept once)."""
        known = {e.id for e in self.entries}
        for entry in entries:
            if entry.id not in known:
                known.add(entry.id)
                self.entries.append(entry)

    def entity(self, ref: EntityRef) -> Entity | None:
        return self.reading.entity(ref)

    def ledger_of(self, client: str) -> list[Entry]:
        stored = self.reading.ledger_of(client)
        mine = [e for e in self.entries if e.client == client]
        if not mine:
            return stored
        known = {e.id for e in stored}
        return ordered([*stored, *(e for e in mine if e.id not in known)])

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        return self.reading.visits_of(client, since, limit)

    def client_of(self, system: str, ext_id: str) -> str | None:
        return self.reading.client_of(system, ext_id)
