"""Staged: the store as a batch's decisions, not yet written, leave it (the worker decides without the write lock)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from automator.model import Decision, Entity, EntityRef, Event, Run
from automator.store.sqlite import SqliteStore
from automator.store.staged import Staged

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def run(ident: str, key: str, status: str, rule: str = "r") -> Run:
    return Run(id=ident, rule_id=rule, rule_version="1", key=key, event_id="e", status=status, started_at=NOW)


def decision(event_id: str, after: Entity | None = None, runs: tuple[Run, ...] = ()) -> Decision:
    return Decision(event=Event(id=event_id, type="client.updated", at=NOW), entity_before=None, entity_after=after,
                    runs=runs)


def test_staged_states_are_read_before_the_stored_ones() -> None:
    store = SqliteStore()
    anna, boris = EntityRef("client", "1"), EntityRef("client", "2")
    store.put_entity(Entity(anna, {"name": "Anna"}, NOW))
    store.put_entity(Entity(boris, {"name": "Boris"}, NOW))
    staged = Staged(store)
    staged.stage(decision("e1", Entity(anna, {"name": "Anna", "segment": "vip"}, NOW)))
    staged.stage(decision("e2", Entity(EntityRef("client", "3"), {"name": "Vera"}, NOW)))
    assert staged.entity(anna).fields["segment"] == "vip"
    assert staged.entity(boris).fields == {"name": "Boris"}  # not staged: as stored
    assert {e.ref.id: e.fields["name"] for e in staged.entities("client")} == {"1": "Anna", "2": "Boris", "3": "Vera"}
    assert store.entity(anna).fields == {"name": "Anna"}  # the store itself is untouched


def test_active_runs_are_the_stored_ones_as_staged_decisions_changed_them_then_new_ones() -> None:
    store = SqliteStore()
    store.apply(decision("e0", runs=(run("old", "k", "waiting"), run("other", "k", "waiting", rule="q"))))
    staged = Staged(store)
    staged.stage(decision("e1", runs=(run("old", "k", "cancelled"), run("new", "k", "waiting"))))
    assert [r.id for r in staged.active_runs("r", "k")] == ["new"]
    assert [r.id for r in staged.active_runs(None, "k")] == ["other", "new"]
    assert staged.run("old").status == "cancelled"
    assert staged.run("other").status == "waiting"


def test_segment_recency_counts_the_staged_clients() -> None:
    store = SqliteStore()
    staged = Staged(store)
    assert staged.segment_recency() == store.segment_recency() == {}
    visits = {"segment": "vip", "visit_count": 3, "first_visit_at": (NOW - timedelta(days=60)).isoformat(),
              "last_visit_at": NOW.isoformat()}
    staged.stage(decision("e1", Entity(EntityRef("client", "1"), visits, NOW)))
    assert staged.segment_recency() == {"vip": timedelta(days=30)}  # two intervals over 60 days
    assert store.segment_recency() == {}


def test_it_offers_nothing_but_reading() -> None:
    staged = Staged(SqliteStore())
    assert not hasattr(staged, "put_entity") and not hasattr(staged, "atomic")


def test_what_was_read_ahead_is_not_read_again_and_staged_decisions_still_win() -> None:
    class Untouchable:
        def entity(self, ref: EntityRef) -> None:
            raise AssertionError(f"read {ref} again")

        def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
            raise AssertionError(f"read the runs of {key} again")

    anna, nobody = EntityRef("client", "1"), EntityRef("client", "2")
    staged = Staged(Untouchable(), entities={anna: Entity(anna, {"name": "Anna"}, NOW), nobody: None},  # type: ignore[arg-type]
                    runs={"client:1": [run("w", "client:1", "waiting")]})
    assert staged.entity(anna).fields == {"name": "Anna"} and staged.entity(nobody) is None
    assert [r.id for r in staged.active_runs("r", "client:1")] == ["w"]
    staged.stage(decision("e1", Entity(anna, {"name": "Anna", "vip": True}, NOW), runs=(run("w", "client:1", "done"),)))
    assert staged.entity(anna).fields["vip"] is True and staged.active_runs("r", "client:1") == []


def test_the_store_reads_many_entities_and_runs_at_once() -> None:
    store = SqliteStore()
    anna = EntityRef("client", "1")
    store.put_entity(Entity(anna, {"name": "Anna"}, NOW))
    store.apply(decision("e0", runs=(run("w", "client:1", "waiting"), run("d", "client:1", "done"))))
    assert store.entities_of([anna, EntityRef("client", "9"), anna]) == {anna: store.entity(anna),
                                                                        EntityRef("client", "9"): None}
    assert {k: [r.id for r in v] for k, v in store.active_runs_of(["client:1", "client:2"]).items()} == {
        "client:1": ["w"], "client:2": []}


def test_a_persons_records_and_visits_are_read_as_staged() -> None:
    from automator.model import Visit

    store = SqliteStore()
    store.put_entity(Entity(EntityRef("booking", "1"), {"client": "77", "status": "confirmed"}, NOW))
    store.put_entity(Entity(EntityRef("booking", "2"), {"client": "77"}, NOW))
    store.put_visits([Visit(id="v1", client="77", at=NOW - timedelta(days=30), amount=100)])
    staged = Staged(store)
    cancelled = Entity(EntityRef("booking", "1"), {"client": "77", "status": "cancelled"}, NOW)
    moved = Entity(EntityRef("booking", "2"), {"client": "78"}, NOW)  # now another person's
    new = Entity(EntityRef("booking", "3"), {"client": "77"}, NOW)
    visit = Visit(id="v2", client="77", at=NOW, amount=200)
    staged.stage(Decision(event=Event(id="e1", type="booking.updated", at=NOW), entity_before=None,
                          entity_after=cancelled, visits=(visit,)))
    staged.stage(decision("e2", moved))
    staged.stage(decision("e3", new))
    assert [(e.ref.id, e.fields.get("status")) for e in staged.related("booking", "77")] == [
        ("1", "cancelled"), ("3", None)]
    assert [v.id for v in staged.visits_of("77")] == ["v1", "v2"]
    assert [v.id for v in staged.visits_of("77", since=NOW - timedelta(days=1))] == ["v2"]
    assert staged.has_visit("v2") and not store.has_visit("v2")


def test_a_cut_read_of_a_persons_records_is_the_cut_of_the_staged_whole() -> None:
    from automator.model import Visit

    store = SqliteStore()
    for day in range(1, 6):  # bookings 1..5, on the 1st to the 5th
        store.put_entity(Entity(EntityRef("booking", str(day)), {"client": "77", "starts_at": f"2026-03-0{day}"}, NOW))
    store.put_visits([Visit(id=f"v{n}", client="77", at=NOW - timedelta(days=10 - n), amount=100) for n in range(3)])
    staged = Staged(store)
    # The first two leave the person (one to another, one moved past the others), a new one comes first.
    staged.stage(decision("e1", Entity(EntityRef("booking", "1"), {"client": "78", "starts_at": "2026-03-01"}, NOW)))
    staged.stage(decision("e2", Entity(EntityRef("booking", "2"), {"client": "77", "starts_at": "2026-03-09"}, NOW)))
    staged.stage(decision("e3", Entity(EntityRef("booking", "6"), {"client": "77", "starts_at": "2026-02-28"}, NOW)))
    whole = [e.ref.id for e in staged.related("booking", "77")]
    assert whole == ["6", "3", "4", "5", "2"]
    for limit in range(6):
        assert [e.ref.id for e in staged.related("booking", "77", limit)] == whole[:limit]
    # A new visit is laid over the stored ones; one already stored (here reported again with another time) is
    # the stored one, even past the cut.
    staged.stage(Decision(event=Event(id="e4", type="visit.completed", at=NOW), entity_before=None, entity_after=None,
                          visits=(Visit(id="v9", client="77", at=NOW, amount=1),
                                  Visit(id="v2", client="77", at=NOW - timedelta(days=20), amount=1))))
    assert [v.id for v in staged.visits_of("77", limit=2)] == ["v0", "v1"]
    assert [v.id for v in staged.visits_of("77", limit=4)] == ["v0", "v1", "v2", "v9"]


def test_bookings_by_their_start_are_read_as_staged() -> None:
    store = SqliteStore()
    slot = datetime(2026, 3, 3, 12, 0, tzinfo=timezone.utc)
    for ident in ("1", "2", "3"):
        store.put_entity(Entity(EntityRef("booking", ident), {"starts_at": "2026-03-03T15:00:00+03:00"}, NOW))
    staged = Staged(store)
    staged.stage(decision("e1", Entity(EntityRef("booking", "1"), {"starts_at": "2026-03-04T15:00:00+03:00"}, NOW)))
    staged.stage(decision("e2", Entity(EntityRef("booking", "0"), {"starts_at": "2026-03-03T12:00:00Z"}, NOW)))
    assert [e.ref.id for e in staged.bookings_starting(slot, slot + timedelta(seconds=1))] == ["0", "2", "3"]
    assert [e.ref.id for e in staged.bookings_starting(slot, slot + timedelta(seconds=1), 2)] == ["0", "2"]
