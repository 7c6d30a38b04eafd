"""The programs' mechanics, each figure against a hand computation: tiers up and down, points per category and the
kopeck's rounding, expiry on the last day, the spend cap, cashback, first visit, joining, every Nth free, the
referral once per pair, and refunds reversing what is left."""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from programs_support import MSK, Clinic, at, compiled, loaded

from automator.loyalty.ledger import Entry
from automator.loyalty.programs import program_of
from automator.loyalty.terms import share, spend_limit
from automator.model import Entity, EntityRef, Event

TIERS_BY_VISITS = """
    programs:
      club:
        default: true
        tiers:
          by: visits
          window: 30d
          levels:
            silver: {from: 2, discount: 5, category: Серебро}
            gold: {from: 3, discount: 10, category: Золото}
    """


@pytest.fixture
def load(make_project: Callable[..., Path]) -> Callable[..., Clinic]:
    def make(text: str, clients: dict[str, dict[str, object]] | None = None,
             phones: dict[str, str] | None = None) -> Clinic:
        config, problems = compiled(make_project, text)
        assert config is not None, problems
        return Clinic(config, clients, phones)
    return make


def test_tiers_go_up_exactly_at_the_threshold_and_down_when_the_window_drops_a_visit(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load(TIERS_BY_VISITS)
    first = clinic.visit("anna", "2026-03-01 10:00", 100000, ident="1")
    assert not first.events and not first.entries  # one visit: below silver (from 2)
    assert not first.timers  # no tier to lose
    second = clinic.visit("anna", "2026-03-05 10:00", 100000, ident="2")
    [moved] = second.events
    assert moved.type == "loyalty.tier_changed"
    assert dict(moved.data) == {"program": "club", "from": None, "to": "silver", "direction": "up", "discount": "5",
                                "category": "Серебро"}
    assert moved.id == "ev-2>loyalty.tier_changed" and moved.entity is not None and moved.entity.id == "anna"
    [row] = second.entries
    assert (row.id, row.account, row.kind, row.amount) == ("ev-2/club/tier", "tier:club", "tier", 0)
    assert row.detail["tier"] == "silver" and row.detail["from"] is None and row.detail["category"] == "Серебро"
    # Silver holds while two visits count: the first leaves the window 30 days after it, 31 March 10:00.
    [timer] = second.timers
    assert timer.due_at == at("2026-03-31 10:00") and timer.id == "loyalty/anna/tier:club/tier_review/next"
    third = clinic.visit("anna", "2026-03-20 10:00", 100000, ident="3")
    assert [e.data["to"] for e in third.events] == ["gold"] and third.events[0].data["from"] == "silver"
    # Gold needs all three: it falls when the first leaves, 31 March (the timer moved there, same id).
    assert [t.due_at for t in third.timers] == [at("2026-03-31 10:00")]
    assert clinic.timer(third, "2026-03-31 09:59").events == ()  # a minute early: nothing has left yet
    down = clinic.timer(third)
    assert [(e.data["from"], e.data["to"], e.data["direction"]) for e in down.events] == [("gold", "silver", "down")]
    assert down.events[0].data["discount"] == "5"
    # Silver now falls when the second visit leaves, 4 April; then nothing is held and no timer is left.
    assert [t.due_at for t in down.timers] == [at("2026-04-04 10:00")]
    last = clinic.timer(down)
    assert [(e.data["from"], e.data["to"]) for e in last.events] == [("silver", None)]
    assert not last.timers and last.cancel_timers == ("loyalty/anna/tier:club/tier_review/next",)


def test_tiers_by_spend_count_money_and_a_visit_exactly_at_the_threshold_reaches_it(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load("""
        programs:
          club:
            default: true
            tiers:
              by: spend
              levels:
                bronze: {from: 0, discount: 0}
                silver: {from: "30000.00", discount: 5}
        """)
    assert [e.data["to"] for e in clinic.visit("anna", "2026-03-01 10:00", 2999999, ident="1").events] == ["bronze"]
    assert clinic.visit("anna", "2026-03-02 10:00", 1, ident="2").events[0].data["to"] == "silver"  # 30 000,00 ₽
    assert not clinic.outcomes[-1].timers  # no window: a tier is never lost


POINTS = """
    programs:
      club:
        default: true
        points: {percent: 5, categories: {Косметология: 7.5}, expires: 365d}
        spend_cap: 30
    """


def test_points_per_payment_and_category_rounded_half_up_to_the_kopeck(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load(POINTS)
    [row] = clinic.visit("anna", "2026-03-02 10:00", 199999, ident="1").entries  # 1 999,99 ₽ × 5 % = 99,9995
    assert (row.id, row.account, row.kind, row.amount) == ("ev-1/club/points", "points:club", "accrue", 10000)
    assert row.visit == "yclients:1" and row.detail["base"] == "1999.99" and row.detail["percent"] == "5"
    [cosmetic] = clinic.visit("anna", "2026-03-03 10:00", 133333, ident="2", category="Косметология").entries
    assert cosmetic.amount == 10000  # 1 333,33 × 7,5 % = 99,999 75 → 100,00
    [odd] = clinic.visit("anna", "2026-03-04 10:00", 10010, ident="3").entries
    assert odd.amount == 501  # 100,10 × 5 % = 5,005 → half up: 5,01
    assert share(10, Decimal(5)) == 1 and share(9, Decimal(5)) == 0  # 0,5 kopeck up, 0,45 down


def test_points_are_spendable_all_of_their_last_day_and_lapse_at_its_midnight(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load(POINTS)
    [row] = clinic.visit("anna", "2026-03-02 23:30", 100000, ident="1").entries
    assert row.expires_at == at("2027-03-03 00:00")  # the end of 2 March 2027, Moscow
    assert clinic.points("anna", "club", "2027-03-02 23:59") == 5000
    assert clinic.points("anna", "club", "2027-03-03 00:00") == 0


def test_spend_cap_is_a_share_of_the_check_rounded_down_and_never_more_than_the_balance(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load(POINTS)
    program = clinic.config.programs["club"]
    assert spend_limit(program, 333333, 1_000_000) == 99999  # 30 % of 3 333,33 = 999,999 → 999,99
    assert spend_limit(program, 333333, 5000) == 5000
    assert spend_limit(program, 0, 5000) == 0


def test_cashback_is_points_with_its_own_expiry(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load("""
        programs:
          club:
            default: true
            points: {percent: 5, expires: 365d}
            cashback: {percent: 2, expires: 30d}
        """)
    rows = clinic.visit("anna", "2026-03-02 10:00", 150000, ident="1").entries
    assert [(r.id, r.amount, r.expires_at) for r in rows] == [
        ("ev-1/club/points", 7500, at("2027-03-03 00:00")), ("ev-1/club/cashback", 3000, at("2026-04-02 00:00"))]
    assert clinic.points("anna", "club", "2026-04-01 12:00") == 10500
    assert clinic.points("anna", "club", "2026-04-02 00:00") == 7500


def test_first_visit_and_joining_discounts_are_granted_once(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load("""
        programs:
          club:
            default: true
            first_visit: 15
            join_discount: {percent: 20, for: 14d}
        """)
    first = clinic.visit("anna", "2026-03-02 10:00", 300000, ident="1")
    grants = {e.id: dict(e.detail) for e in first.entries}
    assert grants == {
        # 14 days from 2 March: all of 16 March, to its midnight in Moscow (21:00 UTC).
        "join/club/anna": {"percent": "20", "until": "2026-03-16T21:00:00.000000+00:00", "why": "join"},
        "ev-1/club/first_visit": {"percent": "15", "until": "2026-03-02T07:00:00.000000+00:00",
                                  "why": "first_visit"}}
    assert all(e.account == "discount:club" and e.kind == "grant" and e.amount == 0 for e in first.entries)
    assert [e.type for e in first.events] == ["loyalty.discount_granted"]
    second = clinic.visit("anna", "2026-03-05 10:00", 300000, ident="2")
    assert not second.entries and not second.events


EVERY_THIRD = """
    programs:
      club:
        default: true
        every_nth: {every: 3, services: [Массаж, Маникюр]}
    """


def test_every_nth_paid_visit_of_a_service_earns_a_free_one_used_by_the_next(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load(EVERY_THIRD)
    for number, day in enumerate(("01", "02"), 1):
        clinic.visit("anna", f"2026-03-{day} 10:00", 200000, ident=str(number), services=("Массаж", "Осмотр"))
    assert [e.amount for e in clinic.rows("anna", "nth:club:Массаж")] == [1, 1]
    assert clinic.rows("anna", "nth:club:Осмотр") == []  # not a counted service
    third = clinic.visit("anna", "2026-03-03 10:00", 200000, ident="3", services=("Массаж",))
    assert [e.type for e in third.events] == ["loyalty.free_visit_earned"]
    assert dict(third.events[0].data) == {"program": "club", "service": "Массаж", "every": 3}
    assert sum(e.amount for e in clinic.rows("anna", "nth:club:Массаж")) == 0  # the count starts again
    assert [e.amount for e in clinic.rows("anna", "free:club:Массаж")] == [1]
    # A manicure is counted on its own; the next massage (free: amount 0) uses the free one and is not counted.
    clinic.visit("anna", "2026-03-04 10:00", 150000, ident="4", services=("Маникюр",))
    free = clinic.visit("anna", "2026-03-05 10:00", 0, ident="5", services=("Массаж",))
    assert [(e.id, e.kind, e.amount) for e in free.entries] == [("ev-5/club/free/Массаж", "use", -1)]
    assert sum(e.amount for e in clinic.rows("anna", "free:club:Массаж")) == 0
    assert sum(e.amount for e in clinic.rows("anna", "nth:club:Маникюр")) == 1
    # The next paid massage counts from zero again.
    clinic.visit("anna", "2026-03-06 10:00", 200000, ident="6", services=("Массаж",))
    assert sum(e.amount for e in clinic.rows("anna", "nth:club:Массаж")) == 1


REFERRAL = """
    programs:
      club:
        default: true
        referral: {referrer: "500.00", referred: "300.00", expires: 180d}
    """


def test_referral_pays_both_once_per_pair_on_the_first_paid_visit(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load(REFERRAL, clients={"olga": {"name": "Ольга"}, "boris": {"referrer": "+79161234567"},
                                     "vera": {"referrer": "olga"}, "self": {"referrer": "self"}},
                  phones={"+79161234567": "olga"})
    first = clinic.visit("boris", "2026-03-02 10:00", 100000, ident="1")  # named by phone
    assert sorted((e.id, e.client, e.amount) for e in first.entries) == [
        ("referral/olga/boris", "olga", 50000), ("referral/olga/boris/referred", "boris", 30000)]
    assert all(e.expires_at == at("2026-08-30 00:00") and e.visit == "yclients:1" for e in first.entries)
    [news] = first.events
    assert news.type == "loyalty.referral_rewarded" and news.entity is not None and news.entity.id == "olga"
    assert news.data["referred"] == "boris" and news.data["amount"] == "500.00"
    assert not clinic.visit("boris", "2026-03-10 10:00", 100000, ident="2").entries  # a second visit: nothing
    clinic.visit("vera", "2026-03-11 10:00", 100000, ident="3")  # named by id: a second client brought
    assert sorted(e.id for e in clinic.rows("olga")) == ["referral/olga/boris", "referral/olga/vera"]
    assert clinic.points("olga", "club", "2026-03-12 10:00") == 100000  # paid twice, once per pair
    assert not clinic.visit("self", "2026-03-12 10:00", 100000, ident="4").entries  # naming oneself: nothing


def test_an_unpaid_first_visit_does_not_pay_the_referral_the_first_paid_one_does(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load(REFERRAL, clients={"olga": {}, "boris": {"referrer": "olga"}})
    assert not clinic.visit("boris", "2026-03-02 10:00", 0, ident="1").entries
    assert [e.id for e in clinic.visit("boris", "2026-03-03 10:00", 100000, ident="2").entries] == [
        "referral/olga/boris", "referral/olga/boris/referred"]


def test_a_refund_reverses_the_visits_points_and_referral(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load("""
        programs:
          club:
            default: true
            points: {percent: 10}
            referral: {referrer: "500.00", referred: "300.00"}
        """, clients={"olga": {}, "boris": {"referrer": "olga"}})
    clinic.visit("boris", "2026-03-02 10:00", 250000, ident="1")
    undone = clinic.refund("boris", "2026-03-03 10:00", "1")
    assert sorted((e.id, e.client, e.amount) for e in undone.entries) == [
        ("reverse/ev-1/club/points", "boris", -25000),
        ("reverse/referral/olga/boris", "olga", -50000),
        ("reverse/referral/olga/boris/referred", "boris", -30000)]
    assert clinic.points("boris", "club", "2026-03-04 10:00") == 0 and clinic.points("olga", "club",
                                                                                      "2026-03-04 10:00") == 0
    assert not clinic.refund("boris", "2026-03-04 10:00", "1").entries  # the same refund again: nothing left


def test_a_partial_refund_reverses_in_proportion_and_a_spent_balance_is_not_taken_below_zero(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load("""
        programs:
          club:
            default: true
            points: {percent: 10}
        """)
    clinic.visit("anna", "2026-03-02 10:00", 300000, ident="1")  # 300,00 points
    [part] = clinic.refund("anna", "2026-03-03 10:00", "1", amount="1000.00").entries
    assert (part.id, part.amount) == ("reverse/ev-1/club/points/refund-1-2026-03-03 10:00", -10000)  # a third
    # The client spends 150,00 of the 200,00 left; then the whole visit is refunded: 200,00 is asked, 50,00 left.
    clinic.history.keep([Entry(id="spend-1", client="anna", account="points:club", kind="spend", amount=-15000,
                               at=at("2026-03-04 10:00"))])
    [rest] = clinic.refund("anna", "2026-03-05 10:00", "1").entries
    assert (rest.id, rest.amount) == ("reverse/ev-1/club/points", -5000)
    assert rest.detail["asked"] == "200.00" and rest.detail["short"] == "150.00"
    assert clinic.points("anna", "club", "2026-03-05 11:00") == 0


def test_program_of_a_client_follows_their_segment_then_a_listing_then_the_default(make_project) -> None:  # type: ignore[no-untyped-def]
    project, problems = loaded(make_project, """
        programs:
          gold: {points: {percent: 7}}
          silver: {segments: [loyal], points: {percent: 5}}
          base: {default: true, points: {percent: 3}}
        """, segments="""
        rfm: {recency: [14, 30, 60, 120], frequency: [8, 5, 3, 2], monetary: [50000, 20000, 10000, 5000]}
        segments:
          champions: {when: "r >= 4", loyalty: gold}
          loyal: {when: "f >= 3"}
          others: {when: "true"}
        """)
    assert project is not None and project.loyalty is not None, problems

    def of(segment: str | None) -> str | None:
        client = Entity(EntityRef("client", "1"), {"segment": segment} if segment else {})
        found = program_of(project.loyalty, project.segments, client)
        return found.name if found else None

    assert [of("champions"), of("loyal"), of("others"), of(None)] == ["gold", "silver", "base", "base"]


def test_a_segment_move_into_a_program_grants_its_joining_discount_once(load) -> None:  # type: ignore[no-untyped-def]
    from automator.loyalty import programs
    from automator.loyalty.decision import Happening

    clinic = load("""
        programs:
          gold: {join_discount: {percent: 20, for: 14d}}
          base: {default: true}
        """)
    moved = Event(id="seg-1>segment.changed", type="segment.changed", at=at("2026-03-02 10:00"),
                  entity=EntityRef("client", "anna"), source="engine",
                  data={"from": "loyal", "to": "champions", "loyalty": "gold"})
    anna = Entity(EntityRef("client", "anna"), {"segment": "loyal"})
    found = programs.on_event(clinic.config, clinic.history, Happening(moved, anna, (), moved.at, MSK))
    assert [(e.id, e.account) for e in found.entries] == [("join/gold/anna", "discount:gold")]
    assert [e.data["until"] for e in found.events] == ["2026-03-16T21:00:00.000000+00:00"]
    clinic.history.keep(found.entries)
    again = programs.on_event(clinic.config, clinic.history, Happening(moved, anna, (), moved.at, MSK))
    assert not again.entries and not again.events


def test_a_window_of_months_is_calendar_months_a_visit_on_the_31st_counts_to_the_28th(load) -> None:  # type: ignore[no-untyped-def]
    clinic = load("""
        programs:
          club:
            default: true
            tiers: {by: visits, window: 1mo, levels: {silver: {from: 1, discount: 5}}}
        """)
    up = clinic.visit("anna", "2026-01-31 10:00", 100000, ident="1")
    assert [t.due_at for t in up.timers] == [at("2026-02-28 10:00")]  # one month from 31 January: 28 February
    assert clinic.timer(up, "2026-02-28 09:59").events == ()
    assert [(e.data["from"], e.data["to"]) for e in clinic.timer(up).events] == [("silver", None)]
