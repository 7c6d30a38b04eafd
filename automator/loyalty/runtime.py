"""What the engine decides of loyalty for one event (pure): each mechanic in turn (the programs, then the
certificates and abonements), each seeing the rows the ones before it made, combined into one Outcome."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from automator.loyalty import instruments, programs
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome, Reading, Staged
from automator.model import Entity, Event, Visit

if TYPE_CHECKING:
    from automator.segments import SegmentsConfig

Mechanic = Callable[[LoyaltyConfig, Reading, Happening], Outcome]
# In this order: a visit's points are accrued before an abonement or a certificate pays for it.
ON_EVENT: tuple[Mechanic, ...] = (programs.on_event, instruments.on_event)
ON_TIMER: tuple[Mechanic, ...] = (programs.on_timer, instruments.on_timer)


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

