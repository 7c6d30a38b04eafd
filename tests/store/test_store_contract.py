"""The Store contract (automator/store/base.py), through the protocol only: every backend in conftest's BACKENDS
must pass it. No SQL and no stored text forms here: what a backend writes is its own affair, what it answers is
the contract."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from automator.model import Decision, Effect, Entity, EntityRef, Event, Run, Timer
from automator.store.backup import BackupError
from automator.store.base import Settlement, Store
from automator.store.codec import visit_row, writes_of

from store_backends import Backend

T0 = datetime(2026, 5, 4, 10, 30, tzinfo=timezone.utc)
LEASE = timedelta(seconds=30)
ANNA = EntityRef("client", "anna")
BORIS = EntityRef("client", "boris")


def hook(ident: str, who: EntityRef | None = ANNA, **more: object) -> Event:
    """A webhook's event from the CRM."""
    return Event(id=ident, type="client.updated", at=T0, entity=who, data={"seen": ident}, source="crm",
                 **more)  # type: ignore[arg-type]


def task(key: str, *, delivery: str = "at_least_once", connector: str = "crm", at: datetime = T0) -> Effect:
    return Effect(key=key, run_id=f"{key}-run", rule_id="greet", action="task.create", connector=connector,
                  params={"title": key}, delivery=delivery, at=at, entity=ANNA)


def decided(event: Event, *, effects: tuple[Effect, ...] = (), timers: tuple[Timer, ...] = (),
            cancel: tuple[str, ...] = (), status: str = "waiting", emits: tuple[Event, ...] = ()) -> Decision:
    """A decision that leaves Anna named after the event, one run, and what is given."""
    run = Run(id=f"run-{event.id}", rule_id="greet", rule_version="1.a", key=str(ANNA), event_id=event.id,
              status=status, cursor=(0,), entity=ANNA, started_at=event.at)
    return Decision(event=event, entity_before=None, entity_after=Entity(ANNA, {"name": event.id}, event.at),
                    runs=(run,), effects=effects, timers=timers, cancel_timers=cancel, events=emits)


def statuses(store: Store, *idents: str) -> list[str | None]:
    found = [store.journal_event(i) for i in idents]
    return [f["status"] if f else None for f in found]


# ---- the journal: append is idempotent ------------------------------------------------------------------------

def test_append_refuses_what_it_already_has(any_store: Store) -> None:
    assert any_store.append([hook("h1", delivery_id="7")], T0) == [True]
    retry = hook("h2", delivery_id="7")  # the sender's retry: new id, same delivery
    same_id = hook("h1")
    assert any_store.append([retry, same_id, hook("h3")], T0) == [False, False, True]
    assert any_store.append([hook("h4")], T0, digests=["body"]) == [True]
    assert any_store.append([hook("h5")], T0 + timedelta(minutes=1), digests=["body"]) == [False]
    assert any_store.append([hook("h6")], T0 + timedelta(hours=1), digests=["body"]) == [True]
    assert any_store.journal_lag(T0 + timedelta(seconds=2)) == (4, 2.0)


def test_journal_events_returns_each_as_journaled(any_store: Store) -> None:
    first, again = any_store.journal_events([hook("h1"), hook("h1")], T0)
    assert first == hook("h1") and again is None


# ---- the journal: claims and leases ---------------------------------------------------------------------------

def test_a_claim_holds_its_key_until_the_lease_ends(any_store: Store) -> None:
    any_store.append([hook("a1"), hook("b1", BORIS), hook("a2")], T0)
    assert [e.id for e in any_store.claim_events("one", T0, 1, LEASE)] == ["a1"]
    assert [e.id for e in any_store.claim_events("two", T0, 5, LEASE)] == ["b1"]  # Anna's key is held
    assert any_store.pending_events("three", T0, 5) == []  # both keys held by live claims
    after = T0 + LEASE + timedelta(milliseconds=1)
    assert [e.id for e in any_store.claim_events("three", after, 5, LEASE)] == ["a1", "b1", "a2"]


def test_dead_owners_claims_are_released(any_store: Store) -> None:
    any_store.append([hook("a1"), hook("b1", BORIS)], T0)
    any_store.claim_events("crashed", T0, 1, LEASE)
    any_store.claim_events("alive", T0, 1, LEASE)
    assert any_store.release_dead_claims("me", lambda owner, me: owner == "crashed") == 1
    assert [e.id for e in any_store.pending_events("me", T0, 5)] == ["a1"]


# ---- decisions are committed atomically ------------------------------------------------------------------------

def test_commit_writes_the_decision_and_journals_what_it_emits(any_store: Store) -> None:
    any_store.append([hook("h1")], T0)
    (event,) = any_store.claim_events("w", T0, 1, LEASE)
    follow = Event(id="h1>greeted", type="client.greeted", at=T0, entity=ANNA, source="engine", depth=1)
    timer = Timer(id="wake-h1", due_at=T0 + timedelta(hours=2), kind="resume", rule_id="greet", key=str(ANNA),
                  run_id="run-h1")
    assert any_store.commit(event, decided(event, effects=(task("fx"),), timers=(timer,), emits=(follow,)), T0) \
        == [follow]
    assert statuses(any_store, "h1", "h1>greeted") == ["done", "pending"]
    assert any_store.entity(ANNA) == Entity(ANNA, {"name": "h1"}, T0)
    assert [r.id for r in any_store.active_runs("greet", str(ANNA))] == ["run-h1"]
    assert [e["key"] for e in any_store.effects("fx-run")] == ["fx"]
    assert any_store.timers() == [timer]


def test_commit_pending_leaves_an_event_held_by_another_worker(any_store: Store) -> None:
    any_store.append([hook("h1")], T0)
    (event,) = any_store.pending_events("mine", T0, 1)
    any_store.claim_events("theirs", T0, 1, LEASE)
    assert any_store.commit_pending(event, decided(event), T0, "mine") is None
    assert any_store.run("run-h1") is None and statuses(any_store, "h1") == ["claimed"]
    assert any_store.commit_pending(event, decided(event), T0 + LEASE * 2, "mine") == []
    assert any_store.run("run-h1") is not None


def test_commit_all_pending_is_all_or_nothing(any_store: Store) -> None:
    any_store.append([hook("a1"), hook("b1", BORIS)], T0)
    a1, b1 = any_store.pending_events("mine", T0, 2)
    items = [(e, decided(e), writes_of(decided(e))) for e in (a1, b1)]
    any_store.claim_events("theirs", T0, 1, LEASE)  # takes a1
    assert any_store.commit_all_pending(items, T0, "mine") is None
    assert statuses(any_store, "a1", "b1") == ["claimed", "pending"] and any_store.runs() == []
    assert any_store.release_dead_claims("mine", lambda owner, me: True) == 1
    assert any_store.commit_all_pending(items, T0, "mine") == []
    assert statuses(any_store, "a1", "b1") == ["done", "done"]


def test_atomic_undoes_everything_on_failure_and_calls_back_only_on_commit(any_store: Store) -> None:
    called: list[str] = []
    with pytest.raises(RuntimeError):
        with any_store.atomic():
            any_store.set_meta("k", "lost")
            any_store.on_commit(lambda: called.append("lost"))
            raise RuntimeError
    with any_store.atomic():
        any_store.set_meta("k", "kept")
        any_store.on_commit(lambda: called.append("kept"))
        assert called == []
    assert (any_store.get_meta("k"), called) == ("kept", ["kept"])


def test_a_failed_event_is_kept_and_never_handed_out(any_store: Store) -> None:
    any_store.append([hook("h1")], T0)
    (event,) = any_store.claim_events("w", T0, 1, LEASE)
    any_store.fail_event(event, "bug", T0)
    assert (any_store.journal_event("h1") or {}).get("error") == "bug"
    assert any_store.claim_events("w", T0 + LEASE * 3, 5, LEASE) == []


# ---- the outbox -------------------------------------------------------------------------------------------------

def test_effects_are_claimed_once_under_a_lease(any_store: Store) -> None:
    any_store.apply(decided(hook("h1"), effects=(task("fx1"), task("fx2", connector="sms"))))
    assert [c.effect.key for c in any_store.claim_effects("w", T0, 5, LEASE, connectors=["sms"])] == ["fx2"]
    (claimed,) = any_store.claim_effects("w", T0, 5, LEASE)
    assert (claimed.effect, claimed.attempts) == (task("fx1"), 1)
    assert any_store.claim_effects("other", T0, 5, LEASE) == []
    assert any_store.next_effect_due() is None


def test_a_settled_effect_journals_what_it_caused_once(any_store: Store) -> None:
    any_store.apply(decided(hook("h1"), effects=(task("fx"),)))
    (claimed,) = any_store.claim_effects("w", T0, 1, LEASE)
    made = Event(id="fx>task", type="task.created", at=T0, entity=EntityRef("task", "1"), data={"title": "fx"},
                 source="crm")
    (caused,) = any_store.settle(claimed.effect, Settlement("done", {"id": "1"}, events=(made,)), T0)
    assert (caused.caused_by, caused.echo_of, caused.depth) == ("fx", "greet", 1)
    assert any_store.settle(claimed.effect, Settlement("done", events=(made,)), T0) == []
    assert any_store.expecting_echoes(T0)


def test_a_retry_waits_for_its_time(any_store: Store) -> None:
    any_store.apply(decided(hook("h1"), effects=(task("fx"),)))
    (claimed,) = any_store.claim_effects("w", T0, 1, LEASE)
    later = T0 + timedelta(minutes=3)
    any_store.settle(claimed.effect, Settlement("retry", error="503", next_try_at=later), T0)
    assert any_store.next_effect_due() == later
    assert any_store.claim_effects("w", later - timedelta(seconds=1), 1, LEASE) == []
    assert [c.attempts for c in any_store.claim_effects("w", later, 1, LEASE)] == [2]


def test_parked_effects_are_replayed_or_dropped(any_store: Store) -> None:
    any_store.apply(decided(hook("h1"), effects=(task("dead"), task("unsure"))))
    for claimed in any_store.claim_effects("w", T0, 5, LEASE):
        status = "dead" if claimed.effect.key == "dead" else "uncertain"
        any_store.settle(claimed.effect, Settlement(status, error="no"), T0)
    assert sorted(d["key"] for d in any_store.dead_letters()) == ["dead", "unsure"]
    assert any_store.replay("dead", T0) and not any_store.replay("dead", T0)
    assert any_store.drop("unsure", T0) and not any_store.replay("unsure", T0)
    assert any_store.dead_letters() == []
    assert [(c.effect.key, c.attempts) for c in any_store.claim_effects("w", T0, 5, LEASE)] == [("dead", 1)]


def test_a_dead_owners_effects_follow_their_delivery_policy(any_store: Store) -> None:
    effects = (task("again"), task("maybe", delivery="at_most_once"), task("never", delivery="at_most_once"))
    any_store.apply(decided(hook("h1"), effects=effects))
    any_store.claim_effects("crashed", T0, 5, LEASE, start=lambda e: e.key != "never")
    released = any_store.release_dead_effects("me", T0, gone=lambda owner, me: owner == "crashed")
    assert (released.retried, released.parked, released.unstarted) == (1, 1, 1)
    assert [d["key"] for d in any_store.dead_letters()] == ["maybe"]
    retried = {c.effect.key: c.interrupted for c in any_store.claim_effects("me", T0, 5, LEASE)}
    assert retried == {"again": True, "never": False}


def test_mark_started_and_interrupted_reach_recovery_and_the_next_try(any_store: Store) -> None:
    any_store.apply(decided(hook("h1"), effects=(task("fx", delivery="at_most_once"), task("slow"))))
    any_store.claim_effects("crashed", T0, 5, LEASE)
    any_store.mark_started(["fx"], T0)
    any_store.mark_interrupted(["slow"])
    assert any_store.release_dead_effects("me", T0, gone=lambda owner, me: True) == (0, 1, 1)
    (slow,) = any_store.claim_effects("me", T0, 5, LEASE)
    assert slow.effect.key == "slow" and slow.interrupted


# ---- timers ----------------------------------------------------------------------------------------------------

def timer(ident: str, hours: int) -> Timer:
    return Timer(id=ident, due_at=T0 + timedelta(hours=hours), kind="resume", rule_id="greet", key=str(ANNA))


def test_timers_come_due_in_order_and_are_cancelled_by_id(any_store: Store) -> None:
    for t in (timer("late", 5), timer("soon", 1), timer("mid", 3)):
        any_store.put_timer(t)
    any_store.put_timer(timer("late", 4))  # moved, not doubled
    assert any_store.next_due() == T0 + timedelta(hours=1)
    assert [t.id for t in any_store.due_timers(T0 + timedelta(hours=4), 2)] == ["soon", "mid"]
    assert any_store.next_timer(T0) is None and any_store.next_timer(T0 + timedelta(hours=9)) == timer("soon", 1)
    any_store.delete_timer("soon")
    any_store.delete_timer("soon")
    any_store.apply(decided(hook("h1"), cancel=("mid",)))
    assert any_store.timers() == [timer("late", 4)] and any_store.timers(limit=0) == [timer("late", 4)]
    any_store.delete_timer("late")
    assert any_store.next_due() is None


# ---- reading back ----------------------------------------------------------------------------------------------

def test_entities_and_runs_read_back(any_store: Store) -> None:
    any_store.put_entity(Entity(BORIS, {"name": "Борис"}, T0))
    any_store.apply(decided(hook("h1")))
    any_store.apply(decided(hook("h2"), status="done", effects=(task("fx"),)))
    assert [e.ref for e in any_store.entities("client")] == [ANNA, BORIS]
    assert any_store.entities_of([BORIS, EntityRef("client", "nobody")]) == {
        BORIS: Entity(BORIS, {"name": "Борис"}, T0), EntityRef("client", "nobody"): None}
    assert [r.id for r in any_store.active_runs(None, str(ANNA))] == ["run-h1"]
    assert {k: [r.id for r in v] for k, v in any_store.active_runs_of([str(ANNA), "none"]).items()} == {
        str(ANNA): ["run-h1"], "none": []}
    assert [r.id for r in any_store.runs("greet", entity=str(ANNA))] == ["run-h1", "run-h2"]
    assert [r.id for r in any_store.runs(event_id="h2")] == ["run-h2"]
    assert any_store.effect_states(["fx-run", "nothing"]) == {"fx-run": {"pending": 1}}
    assert any_store.count("runs") == 2
    assert any_store.segment_recency() == {}


def test_named_values_are_replaced(any_store: Store) -> None:
    assert any_store.get_meta("poll:crm") is None
    any_store.set_meta("poll:crm", "1")
    any_store.set_meta("poll:crm", "2")
    assert any_store.get_meta("poll:crm") == "2"


def test_prune_keeps_what_is_in_progress(any_store: Store) -> None:
    any_store.append([hook("old"), hook("open", BORIS)], T0)
    (event,) = any_store.claim_events("w", T0, 1, LEASE)
    any_store.commit(event, decided(event), T0)
    month = T0 + timedelta(days=31)
    forgotten = any_store.prune(month, timedelta(days=30))
    assert forgotten["journal"] == 1 and forgotten["runs"] == 0  # the waiting run stays
    assert statuses(any_store, "old", "open") == [None, "pending"]


# ---- backup ----------------------------------------------------------------------------------------------------

def test_a_backup_is_the_database_at_one_commit(any_store: Store, backend: Backend, tmp_path: Path) -> None:
    any_store.append([hook("h1")], T0)
    any_store.set_meta("version", "1")
    target = tmp_path / "copy.db"
    report = any_store.backup(target)
    any_store.append([hook("h2")], T0)
    assert report.target == target and report.size > 0
    with pytest.raises(BackupError):
        any_store.backup(target)  # never over an existing file unless forced
    copy = backend.open_backup(target)
    try:
        assert statuses(copy, "h1", "h2") == ["pending", None] and copy.get_meta("version") == "1"
    finally:
        copy.close()
    any_store.backup(target, force=True)


# ---- people across systems and their history ------------------------------------------------------------------

def test_links_name_one_person_by_each_system_id_and_phone(any_store: Store) -> None:
    assert any_store.client_of("crm", "5") is None
    any_store.link("booking", "77", "77", T0)
    any_store.link("crm", "5", "77", T0 + timedelta(seconds=1))
    any_store.link("phone", "+79161234567", "77", T0 + timedelta(seconds=2))
    assert any_store.client_of("crm", "5") == "77" and any_store.client_of("phone", "+79161234567") == "77"
    assert any_store.links_of("77") == [("booking", "77"), ("crm", "5"), ("phone", "+79161234567")]
    any_store.link("crm", "5", "crm:5", T0 + timedelta(seconds=3))  # a link made again moves to its new person
    assert any_store.client_of("crm", "5") == "crm:5"
    assert any_store.links_of("77") == [("booking", "77"), ("phone", "+79161234567")]


def test_a_persons_records_are_found_by_their_client_field(any_store: Store) -> None:
    any_store.put_entity(Entity(EntityRef("booking", "1"), {"client": "77", "status": "confirmed"}, T0))
    any_store.put_entity(Entity(EntityRef("booking", "2"), {"client": 77, "status": "arrived"},  # given: a number
                                T0 + timedelta(minutes=1)))
    any_store.put_entity(Entity(EntityRef("booking", "3"), {"client": "78"}, T0))
    any_store.put_entity(Entity(EntityRef("deal", "9"), {"client": "77"}, T0))
    assert [e.ref.id for e in any_store.related("booking", "77")] == ["1", "2"]
    assert [e.ref.id for e in any_store.related("deal", "77")] == ["9"]
    assert any_store.related("task", "77") == []


def test_a_persons_records_come_in_time_order_and_are_cut_at_a_limit(any_store: Store) -> None:
    # Written in another order than they are listed in, and changed afterwards: the last change does not decide.
    for ident, starts in (("20", "2026-05-12T10:00:00+03:00"), ("3", "2026-05-10T10:00:00+03:00"),
                          ("100", "2026-05-11T10:00:00+03:00")):
        any_store.put_entity(Entity(EntityRef("booking", ident), {"client": "77", "starts_at": starts}, T0))
    any_store.put_entity(Entity(EntityRef("booking", "3"), {"client": "77", "starts_at": "2026-05-10T10:00:00+03:00",
                                                            "status": "arrived"}, T0 + timedelta(hours=1)))
    assert [e.ref.id for e in any_store.related("booking", "77")] == ["3", "100", "20"]  # by when they start
    assert [e.ref.id for e in any_store.related("booking", "77", limit=2)] == ["3", "100"]
    assert any_store.related("booking", "77", limit=0) == []
    # Deals by when they were made: `created_at` where the CRM gives it, else the id, as a number.
    any_store.put_entity(Entity(EntityRef("deal", "10"), {"client": "77"}, T0))
    any_store.put_entity(Entity(EntityRef("deal", "9"), {"client": "77"}, T0 + timedelta(hours=1)))
    assert [e.ref.id for e in any_store.related("deal", "77")] == ["9", "10"]
    any_store.put_entity(Entity(EntityRef("deal", "10"), {"client": "77", "created_at": "2026-05-01T10:00:00+03:00"},
                                T0))
    any_store.put_entity(Entity(EntityRef("deal", "9"), {"client": "77", "created_at": "2026-05-02T10:00:00+03:00"},
                                T0))
    assert [e.ref.id for e in any_store.related("deal", "77", limit=1)] == ["10"]


def test_bookings_are_found_by_the_moment_they_start_whatever_offset_they_were_written_in(any_store: Store) -> None:
    slot = datetime(2026, 3, 3, 12, 0, tzinfo=timezone.utc)  # 15:00 in Moscow
    for ident, starts in (("2", "2026-03-03T15:00:00+03:00"), ("1", "2026-03-03T12:00:00Z"),
                          ("3", "2026-03-03 12:00:00"),  # no offset: the store reads it as UTC
                          ("4", "2026-03-03T15:00:01+03:00"), ("5", "2026-03-04T15:00:00+03:00"), ("6", "soon")):
        any_store.put_entity(Entity(EntityRef("booking", ident), {"client": ident, "starts_at": starts}, T0))
    any_store.put_entity(Entity(EntityRef("deal", "7"), {"starts_at": "2026-03-03T15:00:00+03:00"}, T0))  # no booking
    assert [e.ref.id for e in any_store.bookings_starting(slot, slot + timedelta(seconds=1))] == ["1", "2", "3"]
    assert [e.ref.id for e in any_store.bookings_starting(slot, slot + timedelta(days=2))] == ["1", "2", "3", "4", "5"]
    assert [e.ref.id for e in any_store.bookings_starting(slot, slot + timedelta(days=2), limit=2)] == ["1", "2"]
    assert any_store.bookings_starting(slot - timedelta(days=1), slot) == []


def test_a_client_is_found_by_their_phone_field(any_store: Store) -> None:
    any_store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна", "phone": "+79161234567"}, T0))
    any_store.put_entity(Entity(EntityRef("client", "78"), {"phone": "+79160000000"}, T0))
    any_store.put_entity(Entity(EntityRef("booking", "1"), {"phone": "+79161234567"}, T0))  # not a client
    assert [e.ref.id for e in any_store.clients_with_phone("+79161234567")] == ["77"]
    assert any_store.clients_with_phone("+79990000000") == []


def test_visits_are_kept_once_and_read_back_in_order(any_store: Store) -> None:
    from automator.model import Visit

    first = Visit(id="booking:1", client="77", at=T0, branch="main", services=("Массаж",), category="massage",
                  staff="Ольга", amount=150050, booking="1", source="booking")
    second = Visit(id="booking:2", client="77", at=T0 + timedelta(days=30), amount=2000_00)
    assert any_store.put_visits([second, first]) == 2
    assert any_store.put_visits([Visit(id="booking:1", client="77", at=T0, amount=1)]) == 0  # kept as it was
    assert any_store.visits_of("77") == [first, second]
    assert any_store.visits_of("77", since=T0 + timedelta(days=1)) == [second]
    assert any_store.has_visit("booking:2") and not any_store.has_visit("booking:3")
    assert any_store.visits_of("78") == []
    assert any_store.visits_of("77", limit=1) == [first]  # the oldest, cut by the read
    assert any_store.visits_of("77", since=T0 + timedelta(days=1), limit=5) == [second]


def test_staged_visits_are_stored_once_a_batch_at_a_time_with_their_clients_recomputed(any_store: Store) -> None:
    from automator.model import Visit

    any_store.put_visits([Visit(id="booking:1", client="77", at=T0, amount=500_00)])
    any_store.put_entity(Entity(EntityRef("client", "78"), {"name": "Борис"}, T0))
    staged = [Visit(id=f"booking:{n}", client=client, at=T0 + timedelta(days=n), amount=100_00)
              for n, client in ((1, "77"), (2, "77"), (3, "78"), (4, "79"), (5, "78"))]
    any_store.stage_visits([visit_row(v) for v in staged[:3]])
    any_store.stage_visits([visit_row(v) for v in staged[3:]])
    assert any_store.visits_of("78") == [] and not any_store.has_visit("booking:2")  # staged: not stored yet
    seen: list[tuple[int, int]] = []
    # Batches of about two visits: a client's visits are never split (78's two go together).
    assert any_store.put_staged_visits(T0, batch=2, progress=lambda new, clients: seen.append((new, clients))) \
        == (4, 3)
    assert seen == [(1, 1), (3, 2), (4, 3)]
    assert [v.id for v in any_store.visits_of("77")] == ["booking:1", "booking:2"]  # the stored one kept
    boris = any_store.entity(EntityRef("client", "78"))
    assert boris is not None and boris.fields["name"] == "Борис" and boris.fields["visit_count"] == 2
    assert any_store.entity(EntityRef("client", "77")).fields["total_spent"] == "600.00"  # type: ignore[union-attr]
    assert any_store.put_staged_visits(T0) == (0, 0)  # nothing stays staged


def test_a_persons_ids_are_brought_up_to_their_links(any_store: Store) -> None:
    any_store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна", "ids": {"booking": "77"}}, T0))
    for system, ext in (("booking", "77"), ("phone", "+79161234567"), ("crm", "5"), ("crm", "6")):
        any_store.link(system, ext, "77", T0)
    any_store.link("crm", "9", "nobody", T0)
    any_store.refresh_ids(["77", "nobody"])
    anna = any_store.entity(EntityRef("client", "77"))
    assert anna is not None and anna.fields == {"name": "Анна", "ids": {"booking": "77", "crm": "5"},
                                                "all_ids": {"booking": ["77"], "crm": ["5", "6"]}}
    assert any_store.entity(EntityRef("client", "nobody")) is None  # not stored: left alone


def test_a_record_learns_the_record_made_from_it_unless_it_names_one(any_store: Store) -> None:
    any_store.put_entity(Entity(EntityRef("booking", "1001"), {"client": "77"}, T0))
    any_store.put_entity(Entity(EntityRef("booking", "1002"), {"client": "77", "deal": "8"}, T0))
    for booking, deal in (("1001", "9"), ("1002", "10"), ("1003", "11")):
        made = Event(id=f"crm:deal:{deal}", type="deal.created", at=T0, entity=EntityRef("deal", deal),
                     data={"booking": booking}, source="crm")
        any_store.link_back("deal.create", made)
    assert [any_store.entity(EntityRef("booking", b)).fields.get("deal")  # type: ignore[union-attr]
            for b in ("1001", "1002")] == ["9", "8"]
    assert any_store.entity(EntityRef("booking", "1003")) is None


def test_a_decisions_visits_are_written_with_it_and_never_twice(any_store: Store) -> None:
    from automator.model import Visit

    visit = Visit(id="booking:5", client="anna", at=T0, amount=99)
    event = hook("v1")
    any_store.append([event], T0)
    decision = Decision(event=event, entity_before=None, entity_after=None, visits=(visit,))
    any_store.commit(event, decision, T0)
    again = Decision(event=event, entity_before=None, entity_after=None,
                     visits=(Visit(id="booking:5", client="anna", at=T0, amount=1),))
    any_store.write(writes_of(again))
    assert any_store.visits_of("anna") == [visit]


def test_a_decisions_ledger_rows_are_written_with_it_once_and_read_back_in_order(any_store: Store) -> None:
    from automator.loyalty.ledger import Entry

    first = Entry(id="v1/gold/accrue", client="anna", account="points:gold", kind="accrue", amount=15000,
                  at=T0, expires_at=T0 + timedelta(days=365), reason="5 %", event="v1", rule="program:gold",
                  visit="yclients:77", detail={"percent": "5"})
    spent = Entry(id="run-1/do/0", client="anna", account="points:gold", kind="spend", amount=-5000,
                  at=T0 - timedelta(seconds=1), event="v0")
    other = Entry(id="b1", client="boris", account="points:gold", kind="accrue", amount=1, at=T0)
    event = hook("v1")
    any_store.append([event], T0)
    any_store.commit(event, Decision(event=event, entity_before=None, entity_after=None,
                                     ledger=(first, spent, other)), T0)
    changed = Entry(id="v1/gold/accrue", client="anna", account="points:gold", kind="accrue", amount=1, at=T0)
    any_store.write(writes_of(Decision(event=event, entity_before=None, entity_after=None, ledger=(changed,))))
    assert any_store.ledger_of("anna") == [spent, first]  # by moment; the row written again is kept as it was
    assert any_store.ledger_of("nobody") == []
    assert any_store.stored_ledger_ids(["v1/gold/accrue", "b1", "never"]) == {"v1/gold/accrue", "b1"}
    assert any_store.stored_ledger_ids([]) == set()

def arriving(ident: str, who: str, source: str, **data: object) -> Event:
    """A system's webhook about its own client record `who`."""
    return Event(id=ident, type="client.updated", at=T0, entity=EntityRef("client", who), data=data, source=source)


def body(store: Store, ident: str) -> dict[str, object]:
    found = store.journal_event(ident)
    assert found is not None
    return found["body"]  # type: ignore[no-any-return]


def test_events_of_the_named_systems_are_journaled_naming_persons(any_store: Store) -> None:
    phone = "+79161234567"
    any_store.append([arriving("before", "5", "crm", phone=phone)], T0)  # no systems named yet: as it came
    assert body(any_store, "before")["entity"] == {"kind": "client", "id": "5"} and any_store.links_of("5") == []
    any_store.set_systems(["booking", "crm"])
    journaled = any_store.journal_events([arriving("y", "77", "booking", phone=phone),
                                          arriving("b", "5", "crm", name="Анна", phone=phone)], T0)
    assert [e.entity for e in journaled if e is not None] == [EntityRef("client", "77")] * 2
    assert body(any_store, "b")["data"] == {"name": "Анна", "phone": phone, "ids": {"booking": "77", "crm": "5"},
                                            "all_ids": {"booking": ["77"], "crm": ["5"]}}
    deal = Event(id="d", type="deal.created", at=T0, entity=EntityRef("deal", "9"), data={"contact": "5"},
                 source="crm")
    ours = Event(id="e", type="client.updated", at=T0, entity=EntityRef("client", "5"), data={}, source="engine")
    any_store.append([deal, ours], T0)
    assert body(any_store, "d")["data"] == {"contact": "5", "client": "77"}
    assert body(any_store, "e")["entity"] == {"kind": "client", "id": "5"}  # the engine's events name persons
    assert any_store.resolve(arriving("r", "5", "crm"), T0).entity == EntityRef("client", "77")
    assert any_store.resolve(arriving("l", "5", "forms"), T0).entity == EntityRef("client", "5")  # not named


def test_an_answer_names_the_person_the_effect_sent_by_phone(any_store: Store) -> None:
    phone = "+79161234567"
    any_store.set_systems(["booking", "crm"])
    any_store.append([arriving("y", "77", "booking", phone=phone)], T0)
    any_store.put_entity(Entity(EntityRef("client", "77"), {"phone": phone, "ids": {"booking": "77"}}, T0))
    any_store.put_entity(Entity(EntityRef("booking", "1001"), {"client": "77", "status": "no_show"}, T0))
    effect = Effect(key="run-1/do/0", run_id="run-1", rule_id="deal", action="deal.create", connector="crm",
                    params={"pipeline": "p", "stage": "new", "title": "T", "contact": phone, "booking": "1001"},
                    delivery="at_least_once", at=T0, entity=EntityRef("booking", "1001"))
    any_store.write(writes_of(Decision(event=hook("h"), entity_before=None, entity_after=None, effects=(effect,))))
    answer = Event(id="crm:deal:9", type="deal.created", at=T0, entity=EntityRef("deal", "9"),
                   data={"contact": "31", "stage": "new"}, source="crm")
    [journaled] = any_store.settle(effect, Settlement("done", {"id": "9"}, events=(answer,)), T0)
    # The contact the CRM found (or made) by the phone is the person's; the deal is the booking's.
    assert journaled.data == {"contact": "31", "stage": "new", "booking": "1001", "client": "77"}
    assert any_store.client_of("crm", "31") == "77"
    stored = any_store.entity(EntityRef("client", "77"))
    assert stored is not None and stored.fields == {"phone": phone, "ids": {"booking": "77", "crm": "31"},
                                                    "all_ids": {"booking": ["77"], "crm": ["31"]}}
    booking = any_store.entity(EntityRef("booking", "1001"))
    assert booking is not None and booking.fields == {"client": "77", "status": "no_show", "deal": "9"}
