"""Gift certificates and abonements on the ledger, unit by unit: partial spending down to zero and not a kopeck
more, the last day of a certificate, an abonement used by the service it pays for and not by another, freezes
moving the last day within their limits, the "ending" notices once each, a refund giving a visit back."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from automator.clock import parse_duration
from automator.loyalty import abonements, certificates, instruments
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome, Staged
from automator.loyalty.instrument_types import (AbonementType, CertificateType, FreezeLimits, InstrumentError,
                                                given_last_day, lapse_moment, made_up_number)
from automator.loyalty.ledger import Entry, balance
from automator.model import Entity, EntityRef, Event, Visit

MSK = ZoneInfo("Europe/Moscow")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)  # 12:00 in Moscow, 1 March 2026
DAY = timedelta(days=1)
GIFT = CertificateType("gift_3000", "Сертификат на 3000 ₽", 300000, parse_duration("365d"))
WHOLE = CertificateType("spa_once", "СПА-сертификат", 500000, None, partial=False)
MASSAGE = AbonementType("massage_10", "Массаж спины, 10 сеансов", 10, services=("Массаж спины",),
                        expires=parse_duration("90d"), freeze=FreezeLimits(max_days=30, times=2))


class Book:
    """A Reading over rows and entities held in memory."""

    def __init__(self, rows: list[Entry] | None = None, entities: dict[EntityRef, Entity] | None = None,
                 visits: list[Visit] | None = None) -> None:
        self.rows = list(rows or [])
        self.entities = dict(entities or {})
        self.visits = list(visits or [])

    def entity(self, ref: EntityRef) -> Entity | None:
        return self.entities.get(ref)

    def ledger_of(self, client: str) -> list[Entry]:
        return sorted((e for e in self.rows if e.client == client), key=lambda e: (e.at, e.id))

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        return [v for v in self.visits if v.client == client]

    def client_of(self, system: str, ext_id: str) -> str | None:
        return None


def certificate(number: str = "GC-1", ctype: CertificateType = GIFT, client: str = "anna") -> Entry:
    last = given_last_day(None, T0, ctype.expires, MSK)
    return certificates.issue_row(ctype, client=client, number=number, nominal=ctype.nominal or 0,
                                  expires_at=lapse_moment(last, MSK), at=T0, row_id=f"issue/{number}")


def holder_entity(number: str, client: str) -> dict[EntityRef, Entity]:
    ref = EntityRef("certificate", number)
    return {ref: Entity(ref, {"client": client, "number": number}, T0)}


# ---- certificates ---------------------------------------------------------------------------------------------

def test_a_certificate_is_spent_in_parts_down_to_zero_and_not_a_kopeck_more() -> None:
    book = Book([certificate()])
    for index, amount in enumerate((120000, 99999, 80001)):
        book.rows.append(certificates.spend_row(book, "GC-1", amount, presenter="anna", at=T0 + (index + 1) * DAY,
                                                row_id=f"s{index}"))
    assert balance(book.rows, "certificate:GC-1").total == 0  # 3000.00 − 1200.00 − 999.99 − 800.01
    with pytest.raises(InstrumentError, match=r"GC-1: 0.01 asked, 0.00 left"):
        certificates.spend_row(book, "GC-1", 1, presenter="anna", at=T0 + 5 * DAY, row_id="s9")


def test_spending_more_than_is_left_is_refused_saying_what_is_left() -> None:
    book = Book([certificate()])
    book.rows.append(certificates.spend_row(book, "GC-1", 250000, presenter="anna", at=T0 + DAY, row_id="s1"))
    with pytest.raises(InstrumentError, match=r"certificate GC-1: 500.01 asked, 500.00 left"):
        certificates.spend_row(book, "GC-1", 50001, presenter="anna", at=T0 + 2 * DAY, row_id="s2")


def test_a_certificate_is_good_through_its_last_day_and_lapses_at_the_midnight_that_ends_it() -> None:
    # Issued 1 March 2026 for 365 days: good through 1 March 2027, lapsing at 00:00 on 2 March in Moscow.
    issued = certificate()
    assert issued.expires_at == datetime(2027, 3, 1, 21, 0, tzinfo=timezone.utc)
    book = Book([issued])
    last_minute = datetime(2027, 3, 1, 20, 59, 59, tzinfo=timezone.utc)
    assert certificates.spend_row(book, "GC-1", 300000, presenter="anna", at=last_minute, row_id="s").amount == -300000
    with pytest.raises(InstrumentError, match="lapsed at 2027-03-01T21:00:00"):
        certificates.spend_row(book, "GC-1", 100, presenter="anna", at=issued.expires_at, row_id="s")


def test_anyone_presenting_the_number_pays_from_the_holders_certificate() -> None:
    book = Book([certificate()], holder_entity("GC-1", "anna"))
    row = certificates.spend_row(book, "GC-1", 100000, presenter="boris", at=T0 + DAY, row_id="s")
    assert (row.client, row.account, row.amount, row.detail["by"]) == ("anna", "certificate:GC-1", -100000, "boris")
    with pytest.raises(InstrumentError, match="GC-2 is not known"):
        certificates.spend_row(book, "GC-2", 100, presenter="boris", at=T0 + DAY, row_id="s")


def test_a_visit_begun_before_the_certificate_was_sold_pays_at_the_sale() -> None:
    book = Book([certificate()])
    row = certificates.spend_row(book, "GC-1", 100000, presenter="anna", at=T0 - timedelta(hours=1), row_id="s")
    assert row.at == T0
    book.rows.append(row)
    assert balance(book.rows, "certificate:GC-1").total == 200000


def test_a_certificate_not_spent_in_parts_is_taken_whole_by_its_first_payment() -> None:
    book = Book([certificate("SPA-1", WHOLE)])
    row = certificates.spend_row(book, "SPA-1", 420000, presenter="anna", at=T0 + DAY, row_id="s")
    assert row.amount == -500000 and row.detail == {"number": "SPA-1", "paid": "4200.00", "lost": "800.00"}


def test_a_number_held_already_is_refused_and_made_up_numbers_are_the_same_for_the_same_key() -> None:
    book = Book([certificate()], holder_entity("GC-1", "anna"))
    with pytest.raises(InstrumentError, match="GC-1 already exists"):
        certificates.check_unused(book, "GC-1", "boris")
    assert made_up_number("run/do/0", "GC-") == made_up_number("run/do/0", "GC-")
    assert made_up_number("run/do/0", "GC-") != made_up_number("run/do/1", "GC-")
    assert len(made_up_number("k", "")) == 10


def test_the_nominal_is_the_types_or_given_for_a_type_of_any_nominal() -> None:
    free = CertificateType("gift_any", "Любой", None, None)
    assert certificates.nominal_of(free, "4999.99") == 499999
    with pytest.raises(InstrumentError, match="give `nominal:`"):
        certificates.nominal_of(free, None)
    with pytest.raises(InstrumentError, match="worth 3000.00, not 2000.00"):
        certificates.nominal_of(GIFT, "2000")
    with pytest.raises(InstrumentError, match="float"):
        certificates.nominal_of(free, 10.5)


# ---- abonements -----------------------------------------------------------------------------------------------

def abonement(number: str = "AB-1", visits: int = 10, at: datetime = T0) -> Entry:
    return abonements.issue_row(MASSAGE, client="anna", number=number, visits=visits, services=MASSAGE.services,
                                categories=(), last=given_last_day(None, at, MASSAGE.expires, MSK), at=at,
                                row_id=f"issue/{number}")


def visit(ident: str, at: datetime, *services: str, category: str | None = None, amount: int = 0) -> Visit:
    return Visit(id=f"yc:{ident}", client="anna", at=at, kind="visit", services=services, category=category,
                 amount=amount)


def visit_event(ident: str, at: datetime, **data: object) -> Event:
    return Event(id=f"ev-{ident}", type="visit.completed", at=at, entity=EntityRef("client", "anna"),
                 source="yc", data={"visit": ident, **data})


def decide_visit(book: Book, v: Visit, **data: object) -> Outcome:
    event = visit_event(v.id.split(":", 1)[1], v.at, **data)
    outcome = instruments.on_event(LoyaltyConfig(), Staged(book), Happening(event, None, (v,), v.at, MSK))
    book.rows.extend(outcome.entries)
    return outcome


def test_a_visit_of_a_service_the_abonement_pays_for_uses_one_visit_and_another_service_none() -> None:
    book = Book([abonement()])
    used = decide_visit(book, visit("1", T0 + DAY, "массаж  СПИНЫ", "Консультация"))
    assert [(e.id, e.account, e.amount, e.visit) for e in used.entries] == [
        ("ev-1/AB-1/use", "abonement:AB-1", -1, "yc:1")]
    assert decide_visit(book, visit("2", T0 + 2 * DAY, "Маникюр")).entries == ()
    assert abonements.fold(book.rows, "AB-1").left == 9  # type: ignore[union-attr]


def test_the_abonement_lapsing_first_is_used_first_and_never_one_lapsed_or_issued_after() -> None:
    book = Book([abonement("AB-late", at=T0 + 10 * DAY), abonement("AB-early")])
    assert [e.account for e in decide_visit(book, visit("1", T0 + 11 * DAY, "Массаж спины")).entries] == [
        "abonement:AB-early"]
    assert [e.account for e in decide_visit(book, visit("2", T0 + 5 * DAY, "Массаж спины")).entries] == [
        "abonement:AB-early"]  # AB-late was not issued yet
    # AB-early is good through 30 May (1 March + 90 days); on 31 May only AB-late pays.
    may31 = datetime(2026, 5, 31, 8, tzinfo=timezone.utc)
    assert [e.account for e in decide_visit(book, visit("3", may31, "Массаж спины")).entries] == ["abonement:AB-late"]


def test_one_visit_left_and_used_up_are_told_once_each_even_after_a_visit_is_given_back() -> None:
    book = Book([abonement(visits=3)])
    assert decide_visit(book, visit("1", T0 + DAY, "Массаж спины")).events == ()
    last = decide_visit(book, visit("2", T0 + 2 * DAY, "Массаж спины")).events
    assert [(e.type, e.data["reason"], e.data["visits_left"], e.entity) for e in last] == [
        ("abonement.ending", "last_visit", 1, EntityRef("client", "anna"))]
    refund = Event(id="rf-2", type="visit.refunded", at=T0 + 3 * DAY, entity=EntityRef("client", "anna"),
                   source="yc", data={"visit": "2"})
    back = instruments.on_event(LoyaltyConfig(), Staged(book), Happening(refund, None, (), T0 + 3 * DAY, MSK))
    book.rows.extend(back.entries)
    assert abonements.fold(book.rows, "AB-1").left == 2  # type: ignore[union-attr]
    assert decide_visit(book, visit("3", T0 + 4 * DAY, "Массаж спины")).events == ()  # 1 left again: told already
    done = decide_visit(book, visit("4", T0 + 5 * DAY, "Массаж спины")).events
    assert [e.data["reason"] for e in done] == ["used_up"]
    assert decide_visit(book, visit("5", T0 + 6 * DAY, "Массаж спины")).entries == ()  # nothing left to use


def test_a_refund_gives_the_abonement_visit_back_once_and_a_partial_refund_does_not() -> None:
    book = Book([abonement()], visits=[visit("1", T0 + DAY, "Массаж спины", amount=150000)])
    decide_visit(book, visit("1", T0 + DAY, "Массаж спины", amount=150000))

    def refund(ident: str, **data: object) -> tuple[Entry, ...]:
        event = Event(id=ident, type="visit.refunded", at=T0 + 2 * DAY, entity=EntityRef("client", "anna"),
                      source="yc", data={"visit": "1", **data})
        found = instruments.on_event(LoyaltyConfig(), Staged(book), Happening(event, None, (), T0 + 2 * DAY, MSK))
        book.rows.extend(found.entries)
        return found.entries

    assert refund("rf-part", amount="500.00") == ()
    assert [(e.id, e.kind, e.amount) for e in refund("rf-1")] == [("reverse/ev-1/AB-1/use", "reverse", 1)]
    assert refund("rf-again") == ()
    assert abonements.fold(book.rows, "AB-1").left == 10  # type: ignore[union-attr]


def test_a_freeze_moves_the_last_day_by_the_days_frozen_and_a_frozen_day_uses_nothing() -> None:
    book = Book([abonement()])
    ab = abonements.fold(book.rows, "AB-1")
    assert ab is not None and ab.last_day == date(2026, 5, 30)
    # Frozen on 10 March through 19 March: ten days.
    book.rows.append(abonements.freeze_row(ab, date(2026, 3, 19), at=datetime(2026, 3, 10, 7, tzinfo=timezone.utc),
                                           tz=MSK, row_id="f1"))
    frozen = abonements.fold(book.rows, "AB-1")
    assert frozen is not None and frozen.last_day == date(2026, 6, 9)
    assert decide_visit(book, visit("1", datetime(2026, 3, 19, 18, tzinfo=timezone.utc), "Массаж спины")).entries \
        == ()  # 21:00 on 19 March in Moscow: still frozen
    assert len(decide_visit(book, visit("2", datetime(2026, 3, 19, 21, tzinfo=timezone.utc),
                                        "Массаж спины")).entries) == 1  # 00:00 on 20 March: a day of use
    assert frozen.lapses_at(MSK) == datetime(2026, 6, 9, 21, tzinfo=timezone.utc)


def test_lifting_a_freeze_early_gives_back_the_days_not_frozen() -> None:
    book = Book([abonement()])
    ab = abonements.fold(book.rows, "AB-1")
    assert ab is not None
    book.rows.append(abonements.freeze_row(ab, date(2026, 3, 30), at=datetime(2026, 3, 10, 7, tzinfo=timezone.utc),
                                           tz=MSK, row_id="f1"))
    frozen = abonements.fold(book.rows, "AB-1")
    assert frozen is not None and frozen.last_day == date(2026, 6, 20)  # 21 days asked
    book.rows.append(abonements.unfreeze_row(frozen, at=datetime(2026, 3, 15, 7, tzinfo=timezone.utc), tz=MSK,
                                             row_id="u1"))
    lifted = abonements.fold(book.rows, "AB-1")
    assert lifted is not None and lifted.last_day == date(2026, 6, 4)  # 10–14 March frozen: five days
    assert lifted.freeze_on(date(2026, 3, 15)) is None and lifted.freeze_on(date(2026, 3, 14)) is not None
    assert frozen.describe(datetime(2026, 3, 12, 7, tzinfo=timezone.utc), MSK) == {
        "number": "AB-1", "type": "massage_10", "title": "Массаж спины, 10 сеансов", "visits": 10, "left": 10,
        "services": ["Массаж спины"], "categories": [], "last_day": "2026-06-20",
        "expires_at": "2026-06-21T00:00:00+03:00", "expired": False, "frozen_until": "2026-03-30", "days_frozen": 21}
    assert lifted.describe(datetime(2026, 6, 5, 7, tzinfo=timezone.utc), MSK)["expired"] is True
    with pytest.raises(InstrumentError, match="is not frozen today"):
        abonements.unfreeze_row(lifted, at=datetime(2026, 3, 16, 7, tzinfo=timezone.utc), tz=MSK, row_id="u2")


def test_freezes_stay_within_their_types_days_and_times() -> None:
    book = Book([abonement()])

    def freeze(row_id: str, on: date, until: date) -> Entry:
        ab = abonements.fold(book.rows, "AB-1")
        assert ab is not None
        at = datetime(on.year, on.month, on.day, 7, tzinfo=timezone.utc)
        row = abonements.freeze_row(ab, until, at=at, tz=MSK, row_id=row_id)
        book.rows.append(row)
        return row

    with pytest.raises(InstrumentError, match="31 day\\(s\\) asked, 30 of 30 left"):
        freeze("f0", date(2026, 3, 2), date(2026, 4, 1))
    assert freeze("f1", date(2026, 3, 2), date(2026, 3, 21)).detail["days"] == 20
    with pytest.raises(InstrumentError, match="frozen already, through 2026-03-21"):
        freeze("fx", date(2026, 3, 5), date(2026, 3, 6))
    with pytest.raises(InstrumentError, match="11 day\\(s\\) asked, 10 of 30 left"):
        freeze("f2", date(2026, 3, 25), date(2026, 4, 4))
    freeze("f2", date(2026, 3, 25), date(2026, 4, 3))
    with pytest.raises(InstrumentError, match="frozen 2 time\\(s\\): its type allows 2"):
        freeze("f3", date(2026, 4, 10), date(2026, 4, 10))
    with pytest.raises(InstrumentError, match="before today"):
        freeze("f4", date(2026, 4, 10), date(2026, 4, 9))
    no_freeze = AbonementType("nails_5", "Маникюр ×5", 5, services=("Маникюр",))
    plain = abonements.issue_row(no_freeze, client="anna", number="N-1", visits=5, services=("Маникюр",),
                                 categories=(), last=None, at=T0, row_id="n")
    ab = abonements.fold([plain], "N-1")
    assert ab is not None
    with pytest.raises(InstrumentError, match="cannot be frozen"):
        abonements.freeze_row(ab, date(2026, 3, 5), at=T0 + DAY, tz=MSK, row_id="f")


def test_a_lapsed_abonement_writes_off_its_visits_left_once_on_its_timer_and_tells_before() -> None:
    book = Book([abonement()])
    decide_visit(book, visit("1", T0 + DAY, "Массаж спины"))
    ab = abonements.fold(book.rows, "AB-1")
    assert ab is not None
    expire, notice = abonements.timers(ab, now=T0 + DAY, notice=timedelta(days=7), tz=MSK)
    lapses = datetime(2026, 5, 30, 21, tzinfo=timezone.utc)
    # Told at noon (Moscow) of 24 May: the day 7 days before the day it lapses (31 May, 00:00).
    assert (expire.due_at, notice.due_at) == (lapses, datetime(2026, 5, 24, 9, tzinfo=timezone.utc))
    assert expire.id == "loyalty/anna/abonement:AB-1/abonement_expire/2026-05-30"

    def fire(timer_payload: dict[str, object], at: datetime) -> Outcome:
        event = Event(id=f"t@{at.isoformat()}", type="timer.fired", at=at, entity=EntityRef("client", "anna"),
                      source="timer", data={"kind": "loyalty", "payload": timer_payload})
        found = instruments.on_timer(LoyaltyConfig(), Staged(book), Happening(event, None, (), at, MSK))
        book.rows.extend(found.entries)
        return found

    told = fire(dict(notice.payload), notice.due_at)
    assert [(e.type, e.data["reason"], e.data["visits_left"], e.data["last_day"]) for e in told.events] == [
        ("abonement.ending", "expiring", 9, "2026-05-30")]
    # The last day: still usable at 23:59 Moscow time.
    assert len(decide_visit(book, visit("2", lapses - timedelta(minutes=1), "Массаж спины")).entries) == 1
    written = fire(dict(expire.payload), lapses)
    assert [(e.id, e.kind, e.amount, e.at, dict(e.detail)) for e in written.entries] == [
        ("expire/issue/AB-1", "expire", -8, lapses, {"lot": "issue/AB-1"})]
    assert fire(dict(expire.payload), lapses + DAY).entries == ()
    assert balance(book.rows, "abonement:AB-1").total == 0


def test_a_notice_for_a_day_a_freeze_moved_says_nothing() -> None:
    book = Book([abonement()])
    ab = abonements.fold(book.rows, "AB-1")
    assert ab is not None
    _, notice = abonements.timers(ab, now=T0, notice=timedelta(days=7), tz=MSK)
    book.rows.append(abonements.freeze_row(ab, date(2026, 3, 12), at=T0 + DAY, tz=MSK, row_id="f"))
    event = Event(id="t", type="timer.fired", at=notice.due_at, entity=EntityRef("client", "anna"), source="timer",
                  data={"kind": "loyalty", "payload": dict(notice.payload)})
    assert not instruments.on_timer(LoyaltyConfig(), Staged(book), Happening(event, None, (), notice.due_at, MSK))


# ---- a visit paid by certificate, and its refund --------------------------------------------------------------

def test_a_visit_paid_by_certificate_spends_it_and_one_asking_too_much_is_refused_with_an_event() -> None:
    book = Book([certificate()], visits=[visit("1", T0 + DAY, "Стрижка", amount=450000)])
    paid = decide_visit(book, visit("1", T0 + DAY, "Стрижка", amount=450000), certificate="GC-1",
                        certificate_amount="1999.99")
    assert [(e.id, e.amount, e.visit) for e in paid.entries] == [("ev-1/certificate/GC-1/spend", -199999, "yc:1")]
    refused = decide_visit(book, visit("2", T0 + 2 * DAY, "Стрижка", amount=120001), certificate="GC-1")
    assert refused.entries == ()
    assert [(e.type, e.data["amount"], e.data["reason"]) for e in refused.events] == [
        ("certificate.refused", "1200.01", "certificate GC-1: 1200.01 asked, 1000.01 left")]
    # The first visit refunded in part: 500.00 goes back to the certificate (it paid 1999.99 of it).
    event = Event(id="rf", type="visit.refunded", at=T0 + 3 * DAY, entity=EntityRef("client", "anna"), source="yc",
                  data={"visit": "1", "amount": "500.00"})
    back = instruments.on_event(LoyaltyConfig(), Staged(book), Happening(event, None, (), T0 + 3 * DAY, MSK))
    assert [(e.id, e.amount, e.expires_at) for e in back.entries] == [
        ("reverse/ev-1/certificate/GC-1/spend", 50000, datetime(2027, 3, 1, 21, tzinfo=timezone.utc))]
    book.rows.extend(back.entries)
    assert balance(book.rows, "certificate:GC-1").total == 150001
