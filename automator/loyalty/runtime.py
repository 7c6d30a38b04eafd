"""What the engine decides of loyalty for one event (pure): each mechanic in turn (the programs, then the
certificates and abonements, then expiry on its own timers), each seeing the rows the ones before it made, combined
into one Outcome; and, once the decision's rules have run too, what its new rows need besides being written
(`settle`: their expiry and notice timers, their mirror in the booking system)."""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from automator.loyalty import expiry, instruments, mirror, programs
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome, Reading, Staged
from automator.loyalty.ledger import Entry
from automator.model import Entity, Event, Visit

if TYPE_CHECKING:
    from automator.segments import SegmentsConfig

Mechanic = Callable[[LoyaltyConfig, Reading, Happening], Outcome]
# In this order: a visit's points are accrued before an abonement or a certificate pays for it.
ON_EVENT: tuple[Mechanic, ...] = (programs.on_event, instruments.on_event)
ON_TIMER: tuple[Mechanic, ...] = (programs.on_timer, instruments.on_timer, expiry.on_timer)


def on_event(config: LoyaltyConfig, reading: Reading, event: Event, client: Entity | None,
             visits: tuple[Visit, ...], now: datetime, tz: ZoneInfo,
             segments: SegmentsConfig | None = None) -> Outcome:
    """What loyalty makes of one event: a paid visit's accruals and tier moves, a refund's reversals, …"""
    return _each(ON_EVENT, config, reading, Happening(event, client, visits, now, tz, segments))


def on_timer(config: LoyaltyConfig, reading: Reading, event: Event, now: datetime, tz: ZoneInfo,
             segments: SegmentsConfig | None = None) -> Outcome:
    """What loyalty makes of one of its timers firing (`timer.fired` of kind `loyalty`): expiry, notices."""
    client = reading.entity(event.entity) if event.entity is not None else None
    return _each(ON_TIMER, config, reading, Happening(event, client, (), now, tz, segments))


def _each(mechanics: Iterable[Mechanic], config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    staged = Staged(reading)
    total = Outcome()
    for mechanic in mechanics:
        found = mechanic(config, staged, happening)
        staged.keep(found.entries)
        total = total + found
    return total


class Stored(Protocol):
    """What `settle` asks the store: which of a decision's rows it has already (a Snapshot is one)."""

    def stored_ledger_ids(self, ids: Collection[str]) -> set[str]:
        """Which of these ledger row ids are stored."""


def settle(config: LoyaltyConfig, people: mirror.People, stored: Stored, entries: Sequence[Entry],
           connectors: Mapping[str, Any], now: datetime, depth: int,
           runs: Mapping[str, str] | None = None) -> tuple[Outcome, list[str]]:
    """What a decision's ledger rows (the mechanics' and the actions') need besides being written: the timers of
    the lots they open (`expiry`), and their mirror to loyalty.yaml's `sync:` connector (of automator.yaml's
    `connectors`) for the actions it performs (a row an action made: with its run, `runs` mapping the decision's
    effect keys to their runs); with why any could not be mirrored. Rows the store has already
    (the same event decided again) need nothing: their timers and effects were made the first time."""
    known = stored.stored_ledger_ids([e.id for e in entries])
    fresh = [e for e in entries if e.id not in known]
    declared, own_ids = mirror.declared_actions(connectors, config.sync)
    effects, problems = mirror.effects_for(fresh, config.sync, declared, people, now, depth, own_ids=own_ids,
                                           runs=runs)
    return Outcome(timers=tuple(expiry.timers_for(config, fresh, now)), effects=tuple(effects)), problems
