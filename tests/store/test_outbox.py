"""The outbox part of SqliteStore: claiming with a lease, settling with the events caused, recovery, dead letters."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from automator.model import Decision, Effect, EntityRef, Event
from automator.store.base import Settlement
from automator.store.codec import utc
from automator.store.sqlite import SqliteStore

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
LEASE = timedelta(minutes=5)


def effect(key: str, *, connector: str = "crm", delivery: str = "at_least_once", at: datetime = NOW,
           action: str = "deal.move", depth: int = 0, rule: str = "rule-a") -> Effect:
    return Effect(key=key, run_id=f"run-{key}", rule_id=rule, action=action, connector=connector,
                  params={"deal": "5", "stage": "won"}, delivery=delivery, at=at, entity=EntityRef("deal", "5"),
                  depth=depth)


def insert(store: SqliteStore, *effects: Effect) -> None:
    trigger = Event(id="trigger", type="x.y", at=NOW)
    store.apply(Decision(event=trigger, entity_before=None, entity_after=None, effects=effects))


def row(store: SqliteStore, key: str) -> dict:
    rows = list(store.db.query("select * from effects where key = ?", [key]))
    assert rows, key
    return rows[0]


# ---- claiming ----------------------------------------------------------------------------------------------------

def test_claim_marks_running_with_attempts_and_a_lease(store: SqliteStore) -> None:
    insert(store, effect("e1"), effect("e2"))
    claimed = store.claim_effects("W", NOW, 10, LEASE)
    assert [(c.effect.key, c.attempts) for c in claimed] == [("e1", 1), ("e2", 1)]
    assert claimed[0].effect == effect("e1")
    r = row(store, "e1")
    assert (r["status"], r["attempts"], r["claimed_by"], r["claimed_until"]) == \
        ("running", 1, "W", utc(NOW + LEASE))
    # Running effects are not handed out again, to the same or another worker.
    assert store.claim_effects("W", NOW + timedelta(hours=1), 10, LEASE) == []
    assert store.claim_effects("V", NOW + timedelta(hours=1), 10, LEASE) == []


def test_claim_respects_next_try_at_order_and_limit(store: SqliteStore) -> None:
    insert(store, effect("later", at=NOW + timedelta(minutes=1)), effect("first", at=NOW - timedelta(minutes=2)),
           effect("second", at=NOW - timedelta(minutes=1)))
    assert [c.effect.key for c in store.claim_effects("W", NOW, 1, LEASE)] == ["first"]
    assert [c.effect.key for c in store.claim_effects("W", NOW, 10, LEASE)] == ["second"]
    assert store.next_effect_due() == NOW + timedelta(minutes=1)
    assert [c.effect.key for c in store.claim_effects("W", NOW + timedelta(minutes=1), 10, LEASE)] == ["later"]
    assert store.next_effect_due() is None


def test_claim_filters_by_connector(store: SqliteStore) -> None:
    insert(store, effect("crm-1"), effect("sms-1", connector="sms"), effect("tg-1", connector="tg"))
    assert store.claim_effects("W", NOW, 10, LEASE, connectors=[]) == []
    assert [c.effect.key for c in store.claim_effects("W", NOW, 10, LEASE, connectors=["sms", "tg"])] == \
        ["sms-1", "tg-1"]
    assert [c.effect.key for c in store.claim_effects("W", NOW, 10, LEASE, connectors=None)] == ["crm-1"]


def test_engine_effects_are_recorded_done_and_never_claimed(store: SqliteStore) -> None:
    insert(store, effect("seg", connector="engine", action="segment.recompute"))
    assert row(store, "seg")["status"] == "done"
    assert store.claim_effects("W", NOW, 10, LEASE) == []


# ---- settling ----------------------------------------------------------------------------------------------------

def test_settle_done_journals_the_events_caused_with_depth_cause_and_echo(store: SqliteStore) -> None:
    insert(store, effect("e1", depth=2))
    (claimed,) = store.claim_effects("W", NOW, 1, LEASE)
    reply = Event(id="e1>deal.updated", type="deal.updated", at=NOW, entity=EntityRef("deal", "5"),
                  data={"stage": "won"}, source="crm")
    later = NOW + timedelta(seconds=3)
    fresh = store.settle(claimed.effect, Settlement("done", result={"id": "5"}, events=(reply,)), later)
    assert [(e.id, e.depth, e.caused_by, e.echo_of) for e in fresh] == [("e1>deal.updated", 3, "e1", "rule-a")]
    r = row(store, "e1")
    assert (r["status"], r["result"], r["error"], r["claimed_by"], r["claimed_until"], r["updated_at"]) == \
        ("done", '{"id":"5"}', None, None, None, utc(later))
    body = store.journal_event("e1>deal.updated")["body"]
    assert (body["depth"], body["caused_by"], body["echo_of"]) == (3, "e1", "rule-a")
    # The CRM's webhook reporting the same change later is known as the echo of rule-a's effect.
    webhook = Event(id="hook-1", type="deal.updated", at=later, entity=EntityRef("deal", "5"),
                    data={"stage": "won"}, source="crm")
    store.append([webhook], later + timedelta(minutes=1))
    assert store.journal_event("hook-1")["body"]["echo_of"] == "rule-a"
    # Settling twice (a replayed settlement) journals the events once.
    assert store.settle(claimed.effect, Settlement("done", events=(reply,)), later) == []
    assert store.count("journal") == 2


def test_settle_retry_sets_the_next_try(store: SqliteStore) -> None:
    insert(store, effect("e1"))
    (claimed,) = store.claim_effects("W", NOW, 1, LEASE)
    retry_at = NOW + timedelta(seconds=120)
    assert store.settle(claimed.effect, Settlement("retry", error="HTTP 503", next_try_at=retry_at,
                                                   events=(Event(id="ignored", type="a.b", at=NOW),)), NOW) == []
    r = row(store, "e1")
    assert (r["status"], r["error"], r["next_try_at"], r["claimed_by"]) == ("retry", "HTTP 503", utc(retry_at), None)
    assert store.count("journal") == 0  # only a done effect's events are journaled
    assert store.claim_effects("W", retry_at - timedelta(microseconds=1), 1, LEASE) == []
    (again,) = store.claim_effects("W", retry_at, 1, LEASE)
    assert again.attempts == 2 and row(store, "e1")["attempts"] == 2


@pytest.mark.parametrize("status", ["dead", "uncertain"])
def test_settle_dead_or_uncertain_parks_the_effect(store: SqliteStore, status: str) -> None:
    insert(store, effect("e1"), effect("e2"))
    (claimed, _) = store.claim_effects("W", NOW, 2, LEASE)
    store.settle(claimed.effect, Settlement(status, error="why"), NOW)
    assert (row(store, "e1")["status"], row(store, "e1")["error"]) == (status, "why")
    assert [d["key"] for d in store.dead_letters()] == ["e1"]
    assert store.dead_letters()[0]["params"] == {"deal": "5", "stage": "won"}
    assert store.claim_effects("W", NOW + timedelta(days=1), 10, LEASE) == []


# ---- recovery ----------------------------------------------------------------------------------------------------

STARTED = lambda effect: True  # noqa: E731  (every claimed call begins at once)


def test_release_dead_effects_by_delivery_policy(store: SqliteStore) -> None:
    insert(store, effect("alo", delivery="at_least_once"), effect("amo", delivery="at_most_once"),
           effect("amo-dedup", delivery="at_most_once", connector="local"),
           effect("alive", delivery="at_most_once"))
    store.claim_effects("dead-worker", NOW, 3, LEASE, start=STARTED)
    store.claim_effects("live-worker", NOW, 1, LEASE, start=STARTED)
    later = NOW + timedelta(seconds=10)  # within every lease: only the owner's death frees them
    released = store.release_dead_effects("me", later, frozenset({"local"}),
                                          gone=lambda owner, me: owner == "dead-worker")
    assert released == (2, 1, 0)
    alo, amo, dedup, alive = (row(store, k) for k in ("alo", "amo", "amo-dedup", "alive"))
    assert (alo["status"], alo["next_try_at"], alo["claimed_by"], alo["interrupted"]) == ("retry", utc(later), None, 1)
    assert (dedup["status"], dedup["next_try_at"]) == ("retry", utc(later))
    assert amo["status"] == "uncertain" and "may or may not have been performed" in amo["error"]
    assert f"begun at {utc(NOW)}" in amo["error"] and amo["started_at"] == utc(NOW)
    assert amo["claimed_by"] is None
    assert (alive["status"], alive["claimed_by"]) == ("running", "live-worker")
    assert [d["key"] for d in store.dead_letters()] == ["amo"]
    again = {c.effect.key: c for c in store.claim_effects("me", later, 10, LEASE)}
    assert set(again) == {"alo", "amo-dedup"}
    assert again["alo"].interrupted and again["amo-dedup"].interrupted  # they look first for what was made


def test_release_dead_effects_after_the_lease_even_when_the_owner_seems_alive(store: SqliteStore) -> None:
    insert(store, effect("alo"), effect("amo", delivery="at_most_once"))
    store.claim_effects("other-host:1:x", NOW, 2, LEASE, start=STARTED)
    never_gone = lambda owner, me: False  # noqa: E731
    assert store.release_dead_effects("me", NOW + LEASE, gone=never_gone) == (0, 0, 0)
    assert store.release_dead_effects("me", NOW + LEASE + timedelta(seconds=1), gone=never_gone) == (1, 1, 0)
    assert (row(store, "alo")["status"], row(store, "amo")["status"]) == ("retry", "uncertain")


def test_claimed_but_never_called_effects_are_performed_after_a_crash_not_parked(store: SqliteStore) -> None:
    """Issue 10 item 11: an effect is uncertain only if its call may have begun."""
    insert(store, effect("sent", delivery="at_most_once"), effect("waiting", delivery="at_most_once"),
           effect("late", delivery="at_most_once"), effect("alo-waiting"))
    asked: list[str] = []

    def only_the_first(e: Effect) -> bool:
        asked.append(e.key)
        return e.key == "sent"

    claimed = {c.effect.key: c for c in store.claim_effects("dead-worker", NOW, 10, LEASE, start=only_the_first)}
    assert asked == ["sent", "waiting", "late", "alo-waiting"]  # in claim order
    assert [k for k, c in claimed.items() if c.started] == ["sent"]
    assert row(store, "sent")["started_at"] == utc(NOW) and row(store, "waiting")["started_at"] is None
    store.mark_started(["late"], NOW + timedelta(seconds=1))  # its call began after a wait for its token
    later = NOW + timedelta(seconds=10)
    released = store.release_dead_effects("me", later, gone=lambda owner, me: owner == "dead-worker")
    assert (released.retried, released.parked, released.unstarted) == (0, 2, 2)
    assert [(d["key"], d["status"]) for d in store.dead_letters()] == [("late", "uncertain"), ("sent", "uncertain")]
    for key in ("waiting", "alo-waiting"):
        r = row(store, key)
        assert (r["status"], r["attempts"], r["claimed_by"], r["error"], r["interrupted"]) == \
            ("pending", 0, None, None, 0)
    # Operators and tests tell them apart by the stored state: parked effects were started, the others not.
    assert store.count("effects", "status = 'uncertain' and started_at is null") == 0
    again = {c.effect.key: c for c in store.claim_effects("me", later, 10, LEASE)}
    assert set(again) == {"waiting", "alo-waiting"}
    assert again["waiting"].attempts == 1 and not again["waiting"].interrupted  # as if never tried


def test_a_retry_that_was_never_called_keeps_its_count_and_state(store: SqliteStore) -> None:
    insert(store, effect("e"))
    (first,) = store.claim_effects("W", NOW, 1, LEASE, start=STARTED)
    store.settle(first.effect, Settlement("retry", error="503", next_try_at=NOW), NOW)
    store.claim_effects("dead-worker", NOW, 1, LEASE)  # the second try, claimed but never called
    store.release_dead_effects("me", NOW, gone=lambda owner, me: owner == "dead-worker")
    assert (row(store, "e")["status"], row(store, "e")["attempts"]) == ("retry", 1)


# ---- dead letters ------------------------------------------------------------------------------------------------

def test_dead_letters_replay_and_drop(store: SqliteStore) -> None:
    insert(store, effect("a"), effect("b"), effect("c"), effect("ok"))
    claimed = {c.effect.key: c for c in store.claim_effects("W", NOW, 10, LEASE)}
    store.settle(claimed["b"].effect, Settlement("uncertain", error="timeout"), NOW)
    store.settle(claimed["a"].effect, Settlement("dead", error="gave up"), NOW + timedelta(seconds=1))
    store.settle(claimed["c"].effect, Settlement("retry", error="503", next_try_at=NOW), NOW)
    store.settle(claimed["ok"].effect, Settlement("done"), NOW)
    assert [(d["key"], d["status"]) for d in store.dead_letters()] == [("b", "uncertain"), ("a", "dead")]

    later = NOW + timedelta(hours=1)
    assert store.replay("a", later) is True
    r = row(store, "a")
    assert (r["status"], r["attempts"], r["next_try_at"], r["error"]) == ("pending", 0, utc(later), None)
    assert store.replay("a", later) is False  # no longer parked
    assert store.replay("c", later) is False and store.replay("ok", later) is False
    assert store.replay("nope", later) is False
    (again,) = [c for c in store.claim_effects("W", later, 10, LEASE) if c.effect.key == "a"]
    assert again.attempts == 1  # fresh attempts

    assert store.drop("b", later) is True
    assert (row(store, "b")["status"], row(store, "b")["updated_at"]) == ("dropped", utc(later))
    assert store.drop("b", later) is False and store.drop("ok", later) is False
    assert store.dead_letters() == []


def test_effects_claimed_before_the_upgrade_count_as_started(tmp_path: Path) -> None:
    """A database from before `started_at` (and so before numbered migrations): its running effects may have been
    mid-call, so they stay in doubt."""
    old = SqliteStore(tmp_path / "old.db", synchronous="NORMAL")
    insert(old, effect("amo", delivery="at_most_once"), effect("waiting"))
    old.claim_effects("dead-worker", NOW, 1, LEASE)
    old.db.conn.execute("alter table effects drop column started_at")
    old.db.conn.execute("drop table _sqlite_migrations")
    old.close()
    store = SqliteStore(tmp_path / "old.db", synchronous="NORMAL")
    try:
        assert row(store, "amo")["started_at"] == row(store, "amo")["updated_at"]
        assert row(store, "waiting")["started_at"] is None
        assert store.release_dead_effects("me", NOW, gone=lambda owner, me: True) == (0, 1, 0)
    finally:
        store.close()
