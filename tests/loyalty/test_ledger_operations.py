"""The ledger's operations through decide() and the store, as the daemon makes them: the engine's loyalty actions
(kopecks rounded half up, spending refused with the balance named), the same event decided twice adding nothing,
expiry and its notice on timers fired at their moment (the last day is spendable to its end), and the mirror of
each new row to loyalty.yaml's `sync:` connector (none without it)."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from automator.config.load import load_project
from automator.config.project import Project
from automator.core.decide import decide
from automator.core.wakeup import timer_event
from automator.loyalty.ledger import balance
from automator.loyalty.mirror import action_of
from automator.model import Decision, Entity, EntityRef, Event
from automator.store.sqlite import SqliteStore

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MSK)
ANNA = EntityRef("client", "7")
RULES = """
    rules:
      - id: bonus
        when: {event: visit.completed}
        do:
          - loyalty.accrue: {amount: "{{ event.amount * 0.05 }}", reason: "Бонусы за визит", expires: "2026-03-31"}
      - id: pay
        when: {event: payment.received}
        do:
          - if: "has(event, 'check')"
            then:
              - loyalty.spend: {amount: "{{ event.amount }}", check: "{{ event.check }}", reason: "Оплата баллами"}
            else:
              - loyalty.spend: {amount: "{{ event.amount }}", reason: "Оплата баллами"}
      - id: tier
        when: {event: nps.logged}
        do:
          - loyalty.set_tier: {tier: "{{ 'gold' if event.score >= 9 else 'silver' }}"}
      - id: expiring
        when: {event: loyalty.points_expiring}
        do:
          - sms.send: {to: "{{ client.phone }}", text: "{{ event.amount }} бонусов сгорят {{ fmt_date(event.expires_at) }}"}
    """
LOYALTY = """
notice: 7d
programs:
  bonus:
    default: true
    tiers: {by: visits, levels: {silver: {from: 100, discount: 5}, gold: {from: 200, discount: 10, category: Золото}}}
"""


def project_with(make_project: Callable[..., Path], loyalty: str) -> Project:
    root = make_project(RULES)
    (root / "loyalty.yaml").write_text(loyalty)
    project, problems = load_project(root)
    assert project is not None, problems
    return project


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Project:
    return project_with(make_project, LOYALTY)


@pytest.fixture
def store() -> SqliteStore:
    store = SqliteStore()
    store.put_entity(Entity(ANNA, {"name": "Анна", "phone": "+79161234567"}, NOW))
    return store


def visit(ident: str, amount: str, at: datetime = NOW) -> Event:
    return Event(id=f"visit-{ident}", type="visit.completed", at=at, entity=ANNA, source="forms",
                 data={"visit": ident, "amount": amount, "currency": "RUB"})


def paid(ident: str, amount: str, at: datetime) -> Event:
    return Event(id=f"pay-{ident}", type="payment.received", at=at, entity=ANNA, source="forms",
                 data={"amount": amount})


def settle(project: Project, store: SqliteStore, event: Event, now: datetime) -> Decision:
    decision = decide(project, store, event, now)
    store.commit(event, decision, now)
    return decision


def points(store: SqliteStore, at: datetime) -> int:
    return balance(store.ledger_of("7"), "points:bonus").available(at)


def fire_due(project: Project, store: SqliteStore, until: datetime) -> list[Decision]:
    """Fire every timer due by `until`, in time order, each at its own moment (as the daemon's timer loop)."""
    decisions = []
    while (timer := store.next_timer(until)) is not None:
        store.delete_timer(timer.id)
        decisions.append(settle(project, store, timer_event(timer), timer.due_at))
    return decisions


def test_an_accrual_is_rounded_half_up_to_the_kopeck(project: Project, store: SqliteStore) -> None:
    # 2.50 × 5 % = 0.125 → 0.13 (half up; half to even would give 0.12); 1234.50 × 5 % = 61.725 → 61.73.
    settle(project, store, visit("1", "2.50"), NOW)
    decision = settle(project, store, visit("2", "1234.50"), NOW + timedelta(minutes=1))
    assert [e.params["amount"] for e in decision.effects if e.action == "loyalty.accrue"] == ["61.73"]
    rows = store.ledger_of("7")
    assert [(r.kind, r.amount, r.reason, r.rule, r.visit) for r in rows] == [
        ("accrue", 13, "Бонусы за визит", "bonus", "forms:1"), ("accrue", 6173, "Бонусы за визит", "bonus", "forms:2")]
    assert rows[0].id == decide(project, store, visit("1", "2.50"), NOW).effects[0].key  # the effect's key
    assert points(store, NOW + timedelta(days=1)) == 6186


def test_the_same_event_decided_twice_adds_nothing(project: Project, store: SqliteStore) -> None:
    first = settle(project, store, visit("1", "1000.00"), NOW)
    again = settle(project, store, visit("1", "1000.00"), NOW)
    assert len(store.ledger_of("7")) == 1 and points(store, NOW) == 5000
    assert first.ledger == again.ledger  # the same row, by the same id: the store kept it once
    assert {t.id for t in first.timers} == {"loyalty/7/points:bonus/expire/2026-03-31T21:00:00Z",
                                            "loyalty/7/points:bonus/notice/2026-03-31T21:00:00Z"}
    assert [t.id for t in again.timers] == []  # the rows were there: their timers were set the first time


def test_points_pay_at_most_the_programs_share_of_a_check(make_project: Callable[..., Path]) -> None:
    capped = project_with(make_project, LOYALTY.replace("    default: true\n", "    default: true\n    spend_cap: 20\n"))
    store = SqliteStore()
    store.put_entity(Entity(ANNA, {"name": "Анна", "phone": "+79161234567"}, NOW))
    settle(capped, store, visit("1", "8000.00"), NOW)  # 400.00 points

    def pay(ident: str, amount: str, check: str) -> Decision:
        at = NOW + timedelta(hours=int(ident))
        return settle(capped, store, Event(id=f"pay-{ident}", type="payment.received", at=at, entity=ANNA,
                                           source="forms", data={"amount": amount, "check": check}), at)

    # 20 % of 1 999.99 is 399.998: rounded down, at most 399.99 (the cap is never exceeded).
    refused = pay("1", "400.00", "1999.99")
    assert refused.runs[0].trace[-1].error == ("loyalty.spend: points pay at most 20 % of a check in program bonus: "
                                               "399.99 of 1999.99, 400.00 asked")
    assert pay("2", "399.99", "1999.99").ledger[0].amount == -39999
    assert points(store, NOW + timedelta(hours=3)) == 1


def test_spending_more_than_the_balance_fails_the_run_and_names_the_balance(project: Project,
                                                                            store: SqliteStore) -> None:
    settle(project, store, visit("1", "2000.00"), NOW)  # 100.00 points
    refused = settle(project, store, paid("1", "100.01", NOW + timedelta(hours=1)), NOW + timedelta(hours=1))
    assert refused.runs[0].status == "failed"
    assert refused.runs[0].trace[-1].error == ("loyalty.spend: client 7 has 100.00 points of program bonus to "
                                               "spend, 100.01 asked")
    assert refused.effects == () and refused.ledger == ()
    spent = settle(project, store, paid("2", "100.00", NOW + timedelta(hours=2)), NOW + timedelta(hours=2))
    assert spent.runs[0].status == "done"
    assert points(store, NOW + timedelta(hours=2)) == 0
    # The spending's event decided again (a crash before its ack) finds its own row: done, nothing more taken.
    again = settle(project, store, paid("2", "100.00", NOW + timedelta(hours=2)), NOW + timedelta(hours=2))
    assert again.runs[0].status == "done" and [r.kind for r in store.ledger_of("7")] == ["accrue", "spend"]


def test_points_are_spendable_through_their_last_day_and_expire_on_the_timer_at_midnight(
        project: Project, store: SqliteStore) -> None:
    settle(project, store, visit("1", "2000.00"), NOW)  # 100.00 points, spendable through 31 March (Moscow)
    settle(project, store, paid("1", "30.00", NOW + timedelta(days=5)), NOW + timedelta(days=5))
    last_second = datetime(2026, 3, 31, 23, 59, 59, tzinfo=MSK)
    assert points(store, last_second) == 7000
    notices = fire_due(project, store, datetime(2026, 3, 31, 23, 0, tzinfo=MSK))
    # The notice a week before: 70.00 left, and the rule's SMS.
    assert [(e.type, dict(e.data)) for d in notices for e in d.events] == [
        ("loyalty.points_expiring", {"program": "bonus", "amount": "70.00", "expires_at": "2026-04-01T00:00:00+03:00"})]
    assert notices[0].event.at == datetime(2026, 3, 25, tzinfo=MSK)
    assert [r.kind for r in store.ledger_of("7")] == ["accrue", "spend"]  # nothing expired before midnight
    expired = fire_due(project, store, datetime(2026, 4, 2, tzinfo=MSK))
    assert [(r.kind, r.amount, r.at) for r in expired[0].ledger] == [("expire", -7000, datetime(2026, 4, 1, tzinfo=MSK))]
    assert points(store, datetime(2026, 4, 1, tzinfo=MSK)) == 0 and balance(store.ledger_of("7"), "points:bonus").total == 0
    assert fire_due(project, store, datetime(2027, 1, 1, tzinfo=MSK)) == []  # nothing left to fire


def test_a_notice_names_no_points_already_spent(project: Project, store: SqliteStore) -> None:
    settle(project, store, visit("1", "2000.00"), NOW)
    settle(project, store, paid("1", "100.00", NOW + timedelta(days=1)), NOW + timedelta(days=1))
    fired = fire_due(project, store, datetime(2026, 4, 2, tzinfo=MSK))
    assert [e.type for d in fired for e in d.events] == []
    assert [r.kind for r in store.ledger_of("7")] == ["accrue", "spend"]  # the expiry timer wrote nothing


def test_set_tier_writes_a_tier_row_and_tells_rules_once(project: Project, store: SqliteStore) -> None:
    def scored(ident: str, score: int, at: datetime) -> Decision:
        return settle(project, store, Event(id=ident, type="nps.logged", at=at, entity=ANNA, source="forms",
                                            data={"score": score}), at)

    up = scored("n1", 9, NOW)
    assert [(e.type, dict(e.data)) for e in up.events] == [("loyalty.tier_changed", {
        "program": "bonus", "from": None, "to": "gold", "direction": "set", "discount": "10", "category": "Золото"})]
    assert scored("n2", 9, NOW + timedelta(days=1)).events == ()  # already gold: nothing changes
    down = scored("n3", 5, NOW + timedelta(days=2))
    assert [dict(e.data)["direction"] for e in down.events] == ["down"]
    rows = [r for r in store.ledger_of("7") if r.account == "tier:bonus"]
    assert [(r.amount, r.detail["tier"], r.detail["from"]) for r in rows] == [(0, "gold", None), (0, "silver", "gold")]


def test_the_mirror_tells_the_sync_connector_each_new_row_and_nothing_without_sync(
        make_project: Callable[..., Path]) -> None:
    synced = project_with(make_project, LOYALTY + "sync: crm\n")
    store = SqliteStore()
    store.put_entity(Entity(ANNA, {"name": "Анна", "phone": "+79161234567"}, NOW))
    accrued = settle(synced, store, visit("1", "2000.00"), NOW)
    mirrored = [e for e in accrued.effects if e.connector == "crm"]
    row = accrued.ledger[0]
    assert [(e.key, e.action, dict(e.params), e.delivery, e.run_id) for e in mirrored] == [
        (f"{row.id}>sync", "loyalty.accrue", {"client": "7", "amount": "100.00", "program": "bonus",
                                              "reason": "Бонусы за визит"}, "at_most_once", accrued.runs[0].id)]
    spent = settle(synced, store, paid("1", "40.00", NOW + timedelta(days=1)), NOW + timedelta(days=1))
    assert [(e.action, e.params["amount"]) for e in spent.effects if e.connector == "crm"] == [("loyalty.spend", "40.00")]
    expired = fire_due(synced, store, datetime(2026, 4, 2, tzinfo=MSK))
    assert [(e.action, e.params["amount"], e.params["reason"], e.run_id) for d in expired for e in d.effects
            if e.connector == "crm"] == [("loyalty.spend", "60.00", "Списание просроченных баллов", "")]  # no run
    again = settle(synced, store, visit("1", "2000.00"), NOW)
    assert [e.connector for e in again.effects] == ["engine"]  # decided again: mirrored once
    alone = project_with(make_project, LOYALTY)
    assert [e.connector for e in decide(alone, store, visit("9", "100.00"), NOW).effects] == ["engine"]


def test_rows_say_what_the_booking_system_is_told() -> None:
    from automator.loyalty.ledger import Entry

    def row(account: str, kind: str, amount: int, **detail: Any) -> Entry:
        return Entry(id="r", client="7", account=account, kind=kind, amount=amount, at=NOW, detail=detail)

    assert action_of(row("points:bonus", "reverse", -1250)) == ("loyalty.spend", {
        "client": "7", "amount": "12.50", "program": "bonus", "reason": "Возврат визита"})
    assert action_of(row("tier:bonus", "tier", 0, tier="gold")) == ("loyalty.set_tier", {
        "client": "7", "tier": "gold", "program": "bonus", "category": "gold"})
    assert action_of(row("certificate:GC-1", "issue", 500000, type="gift")) == ("certificate.issue", {
        "client": "7", "number": "GC-1", "nominal": "5000.00", "type": "gift"})
    assert action_of(row("discount:welcome", "grant", 0, percent=20)) is None
    assert action_of(row("points:bonus", "adjust", 0)) is None


def test_a_mirror_whose_outcome_is_unknown_is_parked_for_an_operator_never_repeated(
        make_project: Callable[..., Path]) -> None:
    from automator.store.base import Settlement

    synced = project_with(make_project, LOYALTY + "sync: crm\n")
    store = SqliteStore()
    store.put_entity(Entity(ANNA, {"name": "Анна", "phone": "+79161234567"}, NOW))
    settle(synced, store, visit("1", "2000.00"), NOW)
    claimed = store.claim_effects("w1", NOW, 10, timedelta(minutes=1), start=lambda effect: True)
    mirror = [c.effect for c in claimed if c.effect.connector == "crm"]
    assert [e.action for e in mirror] == ["loyalty.accrue"]
    # The call began and no answer came (a timeout): a manual card transaction is not repeated, it is parked.
    store.settle(mirror[0], Settlement("uncertain", error="timed out after the request was sent"), NOW)
    parked = store.dead_letters()
    assert [(p["key"], p["status"], p["params"]["amount"]) for p in parked] == [
        (mirror[0].key, "uncertain", "100.00")]
    assert store.claim_effects("w1", NOW + timedelta(hours=1), 10, timedelta(minutes=1)) == []
