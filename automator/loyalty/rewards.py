"""A program's one-off rewards (pure): the discount on joining, the first-visit discount, every Nth visit of a
service free, and the referral reward.

- Joining: the first time a client is decided in a program (a paid visit, or `segment.changed` into it), a `grant`
  row on `discount:<program>` with `percent` and `until` (the end of the last day) and `loyalty.discount_granted`.
  Its id is `join/<program>/<client>`: once per client and program, whatever event brings them.
- First visit: the client's first paid visit is recorded as given `first_visit` percent off (a `grant` row, amount
  0, on `discount:<program>`, `until` the visit itself): the booking system applies the discount, the ledger says
  it was due.
- Every Nth: each paid visit of a counted service adds 1 to `nth:<program>:<service>`; the visit that brings it to
  N takes the N back and grants one free visit (`grant` 1 on `free:<program>:<service>`) with
  `loyalty.free_visit_earned`. The next visit of that service (paid or not) uses it (`use` −1) and does not count.
- Referral: on the referred client's first paid visit, the client field `referrer` (a person's id, or a phone
  resolved to one) gets `referral.referrer` points and the referred client `referral.referred`, each a lot on
  `points:<program>` of the referred client's program; once per pair (`referral/<referrer>/<referred>`), never for
  a client who names themselves.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from automator.history import moment_text, money_text
from automator.identity import PHONE, phone_of
from automator.loyalty import made
from automator.loyalty.decision import Outcome, Reading
from automator.loyalty.ledger import Entry, account, balance
from automator.loyalty.terms import Program, end_of_day_after
from automator.model import Entity, EntityRef, Event, Visit
from automator.phone import Policy, to_e164

DISCOUNT_GRANTED = "loyalty.discount_granted"
FREE_VISIT_EARNED = "loyalty.free_visit_earned"
REFERRAL_REWARDED = "loyalty.referral_rewarded"


def discount_grant(program: str, cause: Event, ident: str, client: str, percent: Decimal, until: datetime,
                   at: datetime, why: str) -> Entry:
    """A discount granted until a moment (`why`: join, first_visit, or a rule's reason): a `grant` row, amount 0,
    on `discount:<program>`, with `percent` and `until` in its detail. A rule's action makes one with its effect
    key as `ident`."""
    ends = moment_text(until)
    return made.row(program, cause, ident, client, account("discount", program), "grant", 0, at,
                    f"Скидка {percent} % до {ends}" if why != "first_visit" else f"Скидка {percent} % на первый визит",
                    detail={"percent": str(percent), "until": ends, "why": why})


def joined(program: Program, ledger: Sequence[Entry], client: str, cause: Event, at: datetime,
           tz: ZoneInfo) -> Outcome:
    """The joining discount, when the program has one and the client has not had it."""
    terms = program.join_discount
    ident = f"join/{program.name}/{client}"
    if terms is None or any(e.id == ident for e in ledger):
        return Outcome()
    until = end_of_day_after(at, terms.lasts, tz)
    grant = discount_grant(program.name, cause, ident, client, terms.percent, until, at, "join")
    news = made.event(cause, DISCOUNT_GRANTED, client, at, {"program": program.name, "percent": str(terms.percent),
                                                             "until": moment_text(until), "why": "join"})
    return Outcome(entries=(grant,), events=(news,))


def first_visit(program: Program, visit: Visit, cause: Event, base: str) -> list[Entry]:
    """The first-visit discount recorded for the client's first paid visit."""
    if program.first_visit is None:
        return []
    return [discount_grant(program.name, cause, f"{base}/first_visit", visit.client, program.first_visit, visit.at,
                           visit.at, "first_visit")]


def every_nth(program: Program, ledger: Sequence[Entry], visit: Visit, cause: Event, base: str) -> Outcome:
    """A visit counted towards a free one, or using the free one waiting (see the module's docstring)."""
    terms = program.every_nth
    if terms is None:
        return Outcome()
    rows: list[Entry] = []
    events = []
    for service in dict.fromkeys(visit.services):
        if not terms.counts(service):
            continue
        name = f"{program.name}:{service}"
        free, counter = account("free", name), account("nth", name)
        if balance([*ledger, *rows], free).available(visit.at) > 0:
            rows.append(made.row(program.name, cause, f"{base}/free/{service}", visit.client, free, "use", -1,
                                 visit.at, f"Бесплатный визит: {service}", visit=visit.id,
                                 detail={"service": service}))
            continue
        if visit.amount <= 0:
            continue
        rows.append(made.row(program.name, cause, f"{base}/nth/{service}", visit.client, counter, "accrue", 1,
                             visit.at, f"Визит {service} засчитан", visit=visit.id, detail={"service": service}))
        if balance([*ledger, *rows], counter).total < terms.every:
            continue
        rows.append(made.row(program.name, cause, f"{base}/nth/{service}/reset", visit.client, counter, "use",
                             -terms.every, visit.at, f"{terms.every} визитов {service}: бесплатный визит",
                             visit=visit.id, detail={"service": service}))
        rows.append(made.row(program.name, cause, f"{base}/free/{service}/earned", visit.client, free, "grant", 1,
                             visit.at, f"Бесплатный визит: {service}", visit=visit.id,
                             detail={"service": service, "every": terms.every}))
        events.append(made.event(cause, FREE_VISIT_EARNED, visit.client, visit.at,
                                 {"program": program.name, "service": service, "every": terms.every},
                                 suffix=f"/{service}"))
    return Outcome(entries=tuple(rows), events=tuple(events))


def referrer_of(reading: Reading, client: Entity) -> str | None:
    """The person the client's `referrer` field names: a person's id, else a phone linked to one; None when it
    names nobody known, or the client themselves."""
    value = client.fields.get("referrer")
    text = str(value).strip() if value not in (None, "") else ""
    if not text:
        return None
    found: str | None = text if reading.entity(EntityRef("client", text)) is not None else None
    if found is None:
        phone = phone_of(text) or to_e164(text, policy=Policy.POSSIBLE)
        found = reading.client_of(PHONE, phone) if phone else None
    return None if found == client.ref.id else found


def referral(program: Program, reading: Reading, client: Entity, visit: Visit, cause: Event,
             tz: ZoneInfo) -> Outcome:
    """The referral reward for both, on the referred client's first paid visit (the caller knows it is)."""
    terms = program.referral
    referrer = referrer_of(reading, client) if terms is not None else None
    if terms is None or referrer is None:
        return Outcome()
    referred = client.ref.id
    ident = f"referral/{referrer}/{referred}"
    if any(e.id == ident for e in reading.ledger_of(referrer)):
        return Outcome()
    expires = end_of_day_after(visit.at, terms.expires, tz) if terms.expires is not None else None
    points = account("points", program.name)
    rows = [made.row(program.name, cause, ident, referrer, points, "accrue", terms.referrer, visit.at,
                     "Бонус за приглашённого клиента", expires_at=expires, visit=visit.id,
                     detail={"mechanic": "referral", "referred": referred}),
            made.row(program.name, cause, f"{ident}/referred", referred, points, "accrue", terms.referred, visit.at,
                     "Бонус за первый визит по приглашению", expires_at=expires, visit=visit.id,
                     detail={"mechanic": "referral", "referrer": referrer})]
    news = made.event(cause, REFERRAL_REWARDED, referrer, visit.at,
                      {"program": program.name, "referred": referred, "amount": money_text(terms.referrer),
                       "referred_amount": money_text(terms.referred)})
    return Outcome(entries=tuple(r for r in rows if r.amount > 0), events=(news,))
