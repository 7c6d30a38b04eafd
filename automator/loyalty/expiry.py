"""Expiry of any lot that carries `expires_at` (pure): the timers a decision's rows set, and what those timers do
when they fire — write off what is left (`expire` rows) and tell the client beforehand ("expiring" events).

Two timers per expiry moment of an account: one at the moment itself, one `notice` before it (loyalty.yaml's
`notice:`, 7 days by default) when that is still ahead. Lots of one account that lapse at the same moment (a
program that lets points lapse at midnight) share their timers. A timer fires whatever happened since: the expiry
writes off only what is left (a lot spent before its moment leaves a timer that writes nothing), and a notice names
only lots still alive, so a client is never told about points already spent or gone.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from automator.history import money_text
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import TIMER_KIND, Happening, Outcome, Reading
from automator.loyalty.ledger import Entry, account_kind, balance, expiry_rows
from automator.model import ENGINE, EntityRef, Event, Timer

EXPIRE = "expire"
NOTICE = "notice"
# The event a notice is, by the kind of account whose lots are about to lapse.
# (An abonement's lots carry no expiry: a freeze moves its last day, so abonements keep their own timers.)
NOTICE_EVENTS = {"points": "loyalty.points_expiring", "certificate": "certificate.expiring"}
# What an expiry row says, by the kind of account.
EXPIRY_REASONS = {"points": "Списание просроченных баллов", "certificate": "Срок действия сертификата истёк"}


def timer_id(client: str, account: str, what: str, moment: datetime) -> str:
    """`loyalty/<client>/<account>/<what>/<expiry moment, UTC>`: the same lots make the same ids."""
    return f"loyalty/{client}/{account}/{what}/{_stamp(moment)}"


def timers_for(config: LoyaltyConfig, entries: Iterable[Entry], now: datetime) -> list[Timer]:
    """The expiry and notice timers of every lot the rows open (a positive row with `expires_at`); a notice only
    when its moment is still ahead of `now`, and only for an account kind that has a notice event."""
    timers: dict[str, Timer] = {}
    for entry in entries:
        if entry.amount <= 0 or entry.expires_at is None:
            continue
        payload = {"account": entry.account, "expires_at": entry.expires_at.isoformat()}
        expire = timer_id(entry.client, entry.account, EXPIRE, entry.expires_at)
        timers[expire] = Timer(id=expire, due_at=entry.expires_at, kind=TIMER_KIND, rule_id="",
                               key=f"client:{entry.client}", payload={"what": EXPIRE, **payload})
        notice_at = entry.expires_at - config.notice
        if notice_at > now and account_kind(entry.account) in NOTICE_EVENTS:
            notice = timer_id(entry.client, entry.account, NOTICE, entry.expires_at)
            timers[notice] = Timer(id=notice, due_at=notice_at, kind=TIMER_KIND, rule_id="",
                                   key=f"client:{entry.client}", payload={"what": NOTICE, **payload})
    return list(timers.values())


def on_timer(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """An expiry timer: the `expire` rows of the account's lots lapsed by now. A notice timer: the account's
    "expiring" event, when lots lapsing at the timer's moment still have something left. Other timers (a
    program's own) are not expiry's: nothing."""
    event = happening.event
    payload: Mapping[str, Any] = event.data.get("payload") or {}
    what, account_name = payload.get("what"), payload.get("account")
    if what not in (EXPIRE, NOTICE) or not isinstance(account_name, str) or event.entity is None:
        return Outcome()
    client = event.entity.id
    rows = reading.ledger_of(client)
    if what == EXPIRE:
        reason = EXPIRY_REASONS.get(account_kind(account_name), "Срок действия истёк")
        return Outcome(entries=tuple(expiry_rows(rows, account_name, client, happening.now, event=event.id,
                                                 reason=reason)))
    moment = datetime.fromisoformat(str(payload.get("expires_at")))
    notice = notice_event(rows, account_name, client, moment, happening.now, event, happening.tz)
    return Outcome(events=(notice,)) if notice is not None else Outcome()


def notice_event(rows: list[Entry], account_name: str, client: str, moment: datetime, now: datetime, cause: Event,
                 tz: Any) -> Event | None:
    """The "expiring" event of an account whose lots lapse at `moment`: what is left, at `now`, of its lots that
    lapse by then (those lapsing earlier included: they go too). None when the lots of that moment are spent or
    gone, or the account's kind has no notice event."""
    kind = account_kind(account_name)
    event_type = NOTICE_EVENTS.get(kind)
    if event_type is None:
        return None
    lots = [lot for lot in balance(rows, account_name).lots if lot.alive(now) and lot.expires_at is not None
            and lot.expires_at <= moment]
    if not any(lot.expires_at == moment for lot in lots):
        return None
    left = sum(lot.left for lot in lots)
    name = account_name.split(":", 1)[1]
    until = moment.astimezone(tz).isoformat()
    data: dict[str, Any]
    if kind == "points":
        data = {"program": name, "amount": money_text(left), "expires_at": until}
    else:  # a certificate
        data = {"number": name, "balance": money_text(left), "expires_at": until}
    return Event(id=f"{cause.id}>{event_type}", type=event_type, at=now, entity=EntityRef("client", client),
                 source=ENGINE, depth=cause.depth + 1, caused_by=cause.id, data=data)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
