"""Certificates and abonements through decide() on a real project folder (automator.yaml, loyalty.yaml, rules) and
a real store: rules issue them, visits use and spend them, the same event decided twice makes the same rows, and a
refusal fails the run saying what is left."""
from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from automator.config.load import load_project
from automator.config.project import Project
from automator.core.decide import decide
from automator.loyalty.ledger import balance
from automator.model import Decision, Entity, EntityRef, Event
from automator.store.codec import writes_of
from automator.store.sqlite import SqliteStore
from tests.loyalty.instruments_support import CONFIG

T0 = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # 10:00 in Moscow
LOYALTY = """\
certificates:
  gift_any: {title: Подарочный сертификат, nominal: any, expires: 365d, prefix: GC-}
abonements:
  massage_3: {title: Массаж спины ×3, visits: 3, services: [Массаж спины], expires: 30d, freeze: {max: 10d, times: 2}}
"""
RULES = """\
rules:
  - id: sell-package
    when: {event: package.sold}
    do:
      - abonement.issue: {type: massage_3}
  - id: sell-gift
    when: {event: gift.sold}
    do:
      - certificate.issue: {type: gift_any, nominal: "{{ event.amount }}"}
  - id: pay-by-gift
    when: {event: gift.paid}
    do:
      - certificate.redeem: {number: "{{ event.number }}", amount: "{{ event.amount }}"}
  - id: freeze
    when: {event: freeze.asked}
    do:
      - abonement.freeze: {number: "{{ event.number }}", until: "{{ event.until }}"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "automator.yaml").write_text(CONFIG)
    (tmp_path / "loyalty.yaml").write_text(LOYALTY)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "loyalty.yaml").write_text(textwrap.dedent(RULES))
    loaded, problems = load_project(tmp_path)
    assert loaded is not None, problems
    return loaded


@pytest.fixture
def store() -> SqliteStore:
    found = SqliteStore()
    for ident, name in (("77", "Анна"), ("78", "Борис")):
        found.put_entity(Entity(EntityRef("client", ident), {"name": name}, T0))
    return found


def settle(project: Project, store: SqliteStore, event: Event, at: datetime) -> list[Decision]:
    """Decide and write an event, then the events its decision emitted (as the worker does), in order."""
    done, queue = [], [event]
    while queue:
        current = queue.pop(0)
        decision = decide(project, store, current, at)
        store.write(writes_of(decision))
        done.append(decision)
        queue.extend(decision.events)
    return done


def hook(ident: str, kind: str, client: str, at: datetime, source: str = "forms", **data: object) -> Event:
    return Event(id=ident, type=kind, at=at, entity=EntityRef("client", client), source=source, data=data)


def massage(ident: str, at: datetime, service: str = "Массаж спины") -> Event:
    return hook(f"ev-{ident}", "visit.completed", "77", at, source="booking", visit=ident,
                services=[service], amount="0.00")


def test_an_abonement_issued_by_a_rule_is_used_by_its_visits_once_each_and_tells_of_its_last_visit(
        project: Project, store: SqliteStore) -> None:
    [sold] = settle(project, store, hook("sold-1", "package.sold", "77", T0, package="massage"), T0)
    [issue] = sold.ledger
    number = issue.account.split(":", 1)[1]
    assert (issue.kind, issue.amount, issue.client, issue.detail["expires"]) == ("issue", 3, "77", "2026-04-01")
    assert sorted(t.id for t in sold.timers) == [f"loyalty/77/abonement:{number}/abonement_expire/2026-04-01",
                                                  f"loyalty/77/abonement:{number}/abonement_notice/2026-04-01"]
    first = decide(project, store, massage("v1", T0 + timedelta(days=1)), T0 + timedelta(days=1))
    again = decide(project, store, massage("v1", T0 + timedelta(days=1)), T0 + timedelta(days=1))
    assert [e.id for e in first.ledger] == [e.id for e in again.ledger] == [f"ev-v1/{number}/use"]
    settle(project, store, massage("v1", T0 + timedelta(days=1)), T0 + timedelta(days=1))
    # The same webhook with another journal id: the visit is stored, nothing more is used.
    [repeat] = settle(project, store, hook("ev-v1-again", "visit.completed", "77", T0 + timedelta(days=1),
                                           source="booking", visit="v1", services=["Массаж спины"]),
                      T0 + timedelta(days=1))
    assert repeat.ledger == ()
    assert decide(project, store, massage("v2", T0 + timedelta(days=2), "Маникюр"), T0).ledger == ()
    second = settle(project, store, massage("v3", T0 + timedelta(days=3)), T0 + timedelta(days=3))
    assert [(e.type, e.data["reason"], e.data["visits_left"]) for e in second[0].events] == [
        ("abonement.ending", "last_visit", 1)]
    assert balance(store.ledger_of("77"), f"abonement:{number}").total == 1
    # The third visit refunded whole (YCLIENTS's record v3): its abonement visit comes back, once.
    at = T0 + timedelta(days=4)
    [back] = settle(project, store, hook("rf-3", "visit.refunded", "77", at, source="booking", visit="v3"), at)
    assert [(e.id, e.kind, e.amount, e.visit) for e in back.ledger] == [
        (f"reverse/ev-v3/{number}/use", "reverse", 1, "booking:v3")]
    [again] = settle(project, store, hook("rf-3b", "visit.refunded", "77", at, source="booking", visit="v3"), at)
    assert again.ledger == ()
    assert balance(store.ledger_of("77"), f"abonement:{number}").total == 2


def test_a_freeze_by_a_rule_moves_the_last_day_and_a_second_one_past_the_limit_fails_the_run(
        project: Project, store: SqliteStore) -> None:
    [sold] = settle(project, store, hook("sold-1", "package.sold", "77", T0, package="massage"), T0)
    number = sold.ledger[0].account.split(":", 1)[1]
    at = T0 + timedelta(days=5)  # 7 March
    [frozen] = settle(project, store, hook("fr-1", "freeze.asked", "77", at, number=number, until="2026-03-13"), at)
    assert [(e.kind, dict(e.detail)) for e in frozen.ledger] == [
        ("freeze", {"from": "2026-03-07", "until": "2026-03-13", "days": 7})]
    assert f"loyalty/77/abonement:{number}/abonement_expire/2026-04-08" in {t.id for t in frozen.timers}
    later = T0 + timedelta(days=20)
    [refused] = settle(project, store, hook("fr-2", "freeze.asked", "77", later, number=number,
                                            until="2026-03-26"), later)
    [run] = refused.runs
    assert run.status == "failed" and refused.ledger == ()
    assert "abonement.freeze: abonement " + number + ": 5 day(s) asked, 3 of 10 left to freeze" in str(run.trace)


def test_a_certificate_is_found_by_number_spent_in_parts_by_another_client_and_refused_past_its_balance(
        project: Project, store: SqliteStore) -> None:
    sold = settle(project, store, hook("gift-1", "gift.sold", "77", T0, amount="5000.00"), T0)
    created = sold[0].events[0]
    number = created.entity.id if created.entity else ""
    assert created.type == "certificate.created" and number.startswith("GC-") and len(number) == 13
    assert created.data["nominal"] == "5000.00" and created.data["last_day"] == "2027-03-02"
    # Deciding certificate.created stored the certificate: its number finds its holder.
    assert store.entity(EntityRef("certificate", number)).fields["client"] == "77"  # type: ignore[union-attr]
    at = T0 + timedelta(days=3)
    [paid] = settle(project, store, hook("visit-b", "visit.completed", "78", at, source="booking", visit="b1",
                                         services=["Стрижка"], amount="3200.50", certificate=number,
                                         certificate_amount="3200.50"), at)
    assert [(e.client, e.account, e.amount, e.visit, e.detail.get("by")) for e in paid.ledger] == [
        ("77", f"certificate:{number}", -320050, "booking:b1", "78"),
        ("78", f"presented:{number}", 0, "booking:b1", None)]  # Борис's history says he paid with it
    [refused] = settle(project, store, hook("pay-2", "gift.paid", "78", at, number=number, amount="1799.51"), at)
    [run] = refused.runs
    assert run.status == "failed" and refused.ledger == ()
    assert f"certificate {number}: 1799.51 asked, 1799.50 left" in str(run.trace)
    [spent] = settle(project, store, hook("pay-3", "gift.paid", "78", at, number=number, amount="1799.50"), at)
    assert [(e.client, e.kind, e.amount) for e in spent.ledger] == [("77", "spend", -179950), ("78", "spend", 0)]
    assert balance(store.ledger_of("77"), f"certificate:{number}").total == 0
    # Борис's visit refunded in part: 1000.00 goes back to Анна's certificate, lapsing when it does.
    later = at + timedelta(days=1)
    [back] = settle(project, store, hook("rf-b1", "visit.refunded", "78", later, source="booking", visit="b1",
                                         amount="1000.00"), later)
    assert [(e.id, e.client, e.amount, e.expires_at) for e in back.ledger] == [
        ("reverse/visit-b/certificate/" + number + "/spend", "77", 100000, datetime(2027, 3, 2, 21, tzinfo=timezone.utc))]
    assert balance(store.ledger_of("77"), f"certificate:{number}").total == 100000
