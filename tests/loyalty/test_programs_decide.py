"""The programs through decide() on a real project folder: a paid visit's rows travel in Decision.ledger, the same
event decided again makes the same ids (the store keeps them once), and a refund reverses them."""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from programs_support import RULES

from automator.config.load import load_project
from automator.config.project import Project
from automator.core.decide import decide
from automator.model import Entity, EntityRef, Event, Visit
from automator.store.sqlite import SqliteStore

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=MSK)
SEGMENTS = """
    rfm: {recency: [14, 30, 60, 120], frequency: [8, 5, 3, 2], monetary: [50000, 20000, 10000, 5000]}
    segments:
      champions: {when: "r >= 4 and f >= 4", loyalty: gold}
      others: {when: "true"}
    """
LOYALTY = """
    programs:
      gold:
        points: {percent: 7, expires: 365d}
        tiers: {by: visits, window: 365d, levels: {gold: {from: 1, discount: 10, category: Золото}}}
      base:
        default: true
        points: {percent: 3, expires: 365d}
    """


def project(make_project: Callable[..., Path]) -> Project:
    root = make_project(RULES, segments=SEGMENTS)
    (root / "loyalty.yaml").write_text(textwrap.dedent(LOYALTY))
    loaded, problems = load_project(root)
    assert loaded is not None, problems
    return loaded


def paid(visit: str, amount: str) -> Event:
    return Event(id=f"yc-{visit}", type="visit.completed", at=NOW, entity=EntityRef("client", "77"),
                 data={"visit": visit, "amount": amount, "at": NOW.isoformat()}, source="yclients")


def test_a_paid_visit_yields_the_programs_rows_in_the_decision_and_the_same_ids_again(make_project) -> None:  # type: ignore[no-untyped-def]
    found = project(make_project)
    store = SqliteStore()
    store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна", "segment": "champions"}, NOW))
    # Five visits this month: the visit rescores her (segments.yaml) and she stays a champion.
    store.put_visits([Visit(id=f"import:{i}", client="77", at=NOW - timedelta(days=4 * i), amount=100000)
                      for i in range(1, 6)])
    first = decide(found, store, paid("4001", "1999.99"), NOW)
    rows = {(e.id, e.account, e.kind, e.amount) for e in first.ledger}
    # The champions' program (segments.yaml names gold): 7 % of 1 999,99 = 139,9993 → 140,00; the first tier.
    assert rows == {("yc-4001/gold/points", "points:gold", "accrue", 14000),
                    ("yc-4001/gold/tier", "tier:gold", "tier", 0)}
    assert [e.type for e in first.events] == ["loyalty.tier_changed"]
    # The tier's review, and the points' expiry (the midnight ending 2 March 2027, Moscow) with its notice a week
    # before (the ledger's, for any lot that lapses).
    assert sorted(t.id for t in first.timers) == ["loyalty/77/points:gold/expire/2027-03-02T21:00:00Z",
                                                  "loyalty/77/points:gold/notice/2027-03-02T21:00:00Z",
                                                  "loyalty/77/tier:gold/tier_review/next"]
    again = decide(found, store, paid("4001", "1999.99"), NOW)
    assert [e.id for e in again.ledger] == [e.id for e in first.ledger]
    store.apply(first)
    store.apply(again)  # as if the webhook were decided twice: the ledger keeps each row once
    assert sorted(e.id for e in store.ledger_of("77")) == ["yc-4001/gold/points", "yc-4001/gold/tier"]
    # Once the visit is stored, the webhook repeated is no new visit: nothing more is earned.
    assert decide(found, store, paid("4001", "1999.99"), NOW).ledger == ()


def test_a_client_without_a_segment_program_earns_in_the_default_and_a_refund_reverses_it(make_project) -> None:  # type: ignore[no-untyped-def]
    found = project(make_project)
    store = SqliteStore()
    store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна"}, NOW))
    decision = decide(found, store, paid("4002", "1000.00"), NOW)
    assert [(e.id, e.amount) for e in decision.ledger] == [("yc-4002/base/points", 3000)]
    store.apply(decision)
    refund = Event(id="yc-r-4002", type="visit.refunded", at=NOW, entity=EntityRef("client", "77"),
                   data={"visit": "4002"}, source="yclients")
    undone = decide(found, store, refund, NOW)
    assert [(e.id, e.kind, e.amount) for e in undone.ledger] == [("reverse/yc-4002/base/points", "reverse", -3000)]


GRANTING = """
    rules:
      - id: thanks-for-ten
        when: {event: nps.received, where: "event.score >= 9"}
        do:
          - loyalty.grant_discount: {client: "{{ client.id }}", percent: 10, for: 7d, reason: nps}
    """


def test_a_rule_grants_a_discount_for_a_while_once_per_effect(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(GRANTING, segments=SEGMENTS)
    (root / "loyalty.yaml").write_text(textwrap.dedent(LOYALTY))
    found, problems = load_project(root)
    assert found is not None, problems
    store = SqliteStore()
    store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна"}, NOW))
    rated = Event(id="nps-1", type="nps.received", at=NOW, entity=EntityRef("client", "77"), data={"score": 10},
                  source="forms")
    decision = decide(found, store, rated, NOW)
    [grant] = decision.ledger
    [effect] = decision.effects
    # Anna's program is the default (base); 7 days from 2 March: all of 9 March, to its midnight in Moscow.
    assert (grant.id, grant.account, grant.kind, grant.amount) == (effect.key, "discount:base", "grant", 0)
    assert dict(grant.detail) == {"percent": "10", "until": "2026-03-09T21:00:00.000000+00:00", "why": "nps"}
    [news] = [e for e in decision.events if e.type == "loyalty.discount_granted"]
    assert news.data["until"] == "2026-03-09T21:00:00.000000+00:00" and news.data["program"] == "base"
    assert [e.id for e in decide(found, store, rated, NOW).ledger] == [grant.id]  # decided again: the same id
