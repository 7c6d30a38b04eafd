"""Gift certificates and abonements as pure mechanics of one event: a visit paid by certificate spends it, a visit
of a service an abonement pays for uses one of its visits, a refunded visit gives both back, and an abonement's
own timers write off what is left when it lapses and tell the client before (certificates.py, abonements.py)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from automator.history import VISIT_EVENTS, HistoryError, minor_units, money_text
from automator.loyalty import abonements, certificates
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome, Reading
from automator.loyalty.instrument_types import ABONEMENT, InstrumentError
from automator.loyalty.ledger import Entry, account_kind
from automator.model import EntityRef, Event, Visit

REFUND_EVENT = "visit.refunded"


def on_event(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """What certificates and abonements make of one event: a new visit's payment by certificate and its
    abonement visits, or a refund's give-back."""
    event = happening.event
    if event.entity is None or event.entity.kind != "client":
        return Outcome()
    if event.type in VISIT_EVENTS:
        total = Outcome()
        for visit in happening.visits:
            total = total + _visit(reading, happening, visit)
        return total
    if event.type == REFUND_EVENT:
        return _refund(reading, happening)
    return Outcome()


def _visit(reading: Reading, happening: Happening, visit: Visit) -> Outcome:
    event, tz = happening.event, happening.tz
    entries: list[Entry] = []
    events: list[Event] = []
    try:
        paid = certificates.paid_by_visit(event.data, visit.amount)
    except InstrumentError as exc:
        paid = None
        events.append(_refused(event, visit, str(event.data.get("certificate")), None, str(exc), happening.now))
    if paid is not None:
        number, amount = paid
        try:
            spent = certificates.spend_row(reading, number, amount, presenter=visit.client, at=visit.at,
                                           row_id=f"{event.id}/certificate/{number}/spend", event=event.id,
                                           visit=visit.id)
            entries += [row for row in (spent, certificates.presented_row(spent)) if row is not None]
        except InstrumentError as exc:
            events.append(_refused(event, visit, number, amount, str(exc), happening.now))
    if visit.kind == "visit":  # a purchase without a visit uses no abonement
        for use, before in abonements.use_rows(reading.ledger_of(visit.client), visit, event=event.id, tz=tz):
            entries.append(use)
            reason = abonements.ending_reason(before)
            if reason is not None:
                events.append(abonements.ending_event(event, before, reason, before.left - 1, happening.now, tz))
    return Outcome(entries=tuple(entries), events=tuple(events))


def _refused(cause: Event, visit: Visit, number: str, amount: int | None, why: str, now: datetime) -> Event:
    """`certificate.refused`: the visit said a certificate paid for it, and it could not (rules tell an admin)."""
    data: dict[str, Any] = {"number": number, "amount": money_text(amount) if amount is not None else None,
                            "visit": visit.id, "reason": why}
    return Event(id=f"{cause.id}>certificate.refused", type="certificate.refused", at=now,
                 entity=EntityRef("client", visit.client), source="engine", depth=cause.depth + 1,
                 caused_by=cause.id, data=data)


def _refund(reading: Reading, happening: Happening) -> Outcome:
    """A refunded visit: what it paid by certificate goes back to the certificate (a partial refund: up to the
    amount refunded), and, refunded whole, the abonement visit it used is given back."""
    event = happening.event
    assert event.entity is not None
    client = event.entity.id
    ident = event.data.get("visit")
    if ident in (None, "") or isinstance(ident, (Mapping, list, bool)):
        return Outcome()
    visit = f"{event.source}:{ident}"
    try:
        refunded = minor_units(event.data["amount"], "amount") if event.data.get("amount") not in (None, "") \
            else None
    except HistoryError:
        return Outcome()  # an amount that is no amount: nothing is given back on a guess
    kept = next((v for v in reading.visits_of(client) if v.id == visit), None)
    whole = refunded is None or (kept is not None and refunded >= kept.amount)
    entries = certificates.refund_rows(reading, client, visit, None if whole else refunded, at=happening.now,
                                       event=event.id)
    if whole:
        entries += abonements.refund_rows(reading.ledger_of(client), visit, at=happening.now, tz=happening.tz,
                                          event=event.id)
    return Outcome(entries=tuple(entries))


def on_timer(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """An abonement's own timer: at the moment it lapses its visits left are written off; `notice` before, its
    client is told (`abonement.ending`, reason `expiring`) unless it has no visits left or a freeze moved the day."""
    event = happening.event
    payload = event.data.get("payload") or {}
    what = payload.get("what")
    if what not in (abonements.EXPIRE, abonements.NOTICE) or event.entity is None \
            or account_kind(str(payload.get("account", ""))) != ABONEMENT:
        return Outcome()
    rows = reading.ledger_of(event.entity.id)
    ab = abonements.fold(rows, str(payload.get("number")))
    if ab is None:
        return Outcome()
    if what == abonements.EXPIRE:
        return Outcome(entries=tuple(abonements.expiry_rows(rows, ab, happening.now, happening.tz, event=event.id)))
    lapses = ab.lapses_at(happening.tz)
    if ab.left <= 0 or ab.last_day is None or ab.last_day.isoformat() != payload.get("last_day") \
            or lapses is None or happening.now >= lapses:
        return Outcome()
    return Outcome(events=(abonements.ending_event(event, ab, abonements.EXPIRING, ab.left, happening.now,
                                                   happening.tz),))
