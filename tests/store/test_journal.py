"""The journal part of SqliteStore: dedup on append, per-key claiming, commit, recovery, pruning, atomic(), echoes."""
from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from automator.config.project import Project
from automator.model import Decision, Effect, Entity, EntityRef, Event, Run, Timer, WhyNot
from automator.store.journal import event_key, owner_is_gone, worker_name
from automator.store.codec import utc
from automator.store.sqlite import SqliteStore

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
LEASE = timedelta(seconds=60)


def ev(ident: str, entity: str | None = "client:1", *, type_: str = "client.updated", source: str = "crm",
       delivery: str | None = None, data: dict | None = None, at: datetime = NOW) -> Event:
    return Event(id=ident, type=type_, at=at, entity=EntityRef.parse(entity) if entity else None,
                 data=data if data is not None else {"n": ident}, source=source, delivery_id=delivery)


def row(store: SqliteStore, ident: str) -> dict:
    found = store.journal_event(ident)
    assert found is not None, ident
    return found


# ---- append: what counts as a duplicate -----------------------------------------------------------------------

def test_a_duplicate_event_id_is_refused(store: SqliteStore) -> None:
    assert store.append([ev("e1")], NOW) == [True]
    assert store.append([ev("e1", data={"other": 1})], NOW + timedelta(days=1)) == [False]
    assert store.count("journal") == 1
    assert row(store, "e1")["body"]["data"] == {"n": "e1"}  # the first copy is kept, not replaced


def test_a_duplicate_delivery_id_from_the_same_source_is_refused(store: SqliteStore) -> None:
    assert store.append([ev("e1", delivery="d-1")], NOW) == [True]
    # A sender's retry: another event id (e.g. a new receive time) but the same delivery id, a day later.
    assert store.append([ev("e2", delivery="d-1")], NOW + timedelta(days=1)) == [False]
    # The same delivery id from another system is another delivery.
    assert store.append([ev("e3", delivery="d-1", source="sms")], NOW) == [True]
    assert store.count("journal") == 2


def test_duplicates_inside_one_batch(store: SqliteStore) -> None:
    assert store.append([ev("e1", delivery="d"), ev("e2", delivery="d"), ev("e1")], NOW) == [True, False, False]
    assert store.count("journal") == 1


def test_a_resent_delivery_is_refused_whether_or_not_an_echo_is_expected(store: SqliteStore) -> None:
    # Without an echo expected, an event is stored as it came and its row is refused if it is a duplicate; while
    # one is expected, a duplicate is told first, and so does not use up the echo meant for the real change.
    assert store.append([ev("e1", "deal:5", delivery="d-1", data={"stage": "won"})], NOW) == [True]
    store.expect_echo(EntityRef("deal", "5"), {"stage": "won"}, "eff-1", "rule-x", 0, NOW + timedelta(minutes=10))
    assert store.append([ev("e2", "deal:5", delivery="d-1", data={"stage": "won"})], NOW) == [False]
    assert store.append([ev("e3", "deal:5", delivery="d-2", data={"stage": "won"})], NOW) == [True]
    assert row(store, "e3")["body"]["echo_of"] == "rule-x"
    assert store.append([ev("e3", "deal:5", delivery="d-3")], NOW) == [False]  # the same event id, too
    assert store.count("journal") == 2


def test_an_event_stored_as_it_came_costs_one_statement(store: SqliteStore) -> None:
    statements: list[str] = []
    store.connection.conn.set_trace_callback(statements.append)
    try:
        assert store.append([ev("e1", delivery="d-1")], NOW, echoes=False) == [True]
        assert store.append([ev("e2", delivery="d-1")], NOW, echoes=False) == [False]
    finally:
        store.connection.conn.set_trace_callback(None)
    assert [s.split()[0].lower() for s in statements] == ["begin", "insert", "commit"] * 2


def test_the_same_digest_from_the_same_source_within_the_window_is_refused(store: SqliteStore) -> None:
    assert store.append([ev("e1")], NOW, digests=["abc"]) == [True]
    assert store.append([ev("e2")], NOW + timedelta(minutes=9, seconds=59), digests=["abc"]) == [False]
    assert store.append([ev("e3", source="other")], NOW + timedelta(minutes=1), digests=["abc"]) == [True]
    assert store.append([ev("e4")], NOW + timedelta(minutes=1), digests=["xyz"]) == [True]
    # After the window the same body is a new delivery (a client really did the same thing again).
    assert store.append([ev("e5")], NOW + timedelta(minutes=10, seconds=1), digests=["abc"]) == [True]
    # A custom window.
    assert store.append([ev("e6")], NOW + timedelta(minutes=10, seconds=21), digests=["abc"],
                        window=timedelta(seconds=30)) == [False]  # e5 came 20 s before
    assert store.append([ev("e7")], NOW + timedelta(minutes=11), digests=["abc"],
                        window=timedelta(seconds=30)) == [True]  # 59 s after e5
    assert {r["id"] for r in store.db.query("select id from journal")} == {"e1", "e3", "e4", "e5", "e7"}


def test_appended_events_are_pending_with_their_key_and_body(store: SqliteStore) -> None:
    assert store.append([ev("e1", delivery="d1"), ev("e2", entity=None, type_="nps.received")], NOW) == [True, True]
    first = row(store, "e1")
    assert first["status"] == "pending" and first["key"] == "client:1" and first["source"] == "crm"
    assert first["delivery_id"] == "d1" and first["received_at"] == utc(NOW)
    assert first["body"]["delivery_id"] == "d1"
    assert row(store, "e2")["key"] == "event:e2"  # no entity: its own key, never blocked by another
    assert store.journal_lag(NOW + timedelta(seconds=5)) == (2, 5.0)


def test_event_key_of_a_schedule_tick_is_its_rule() -> None:
    tick = Event(id="t", type="timer.fired", at=NOW, data={"rule": "nightly"}, source="timer")
    assert event_key(tick) == "rule:nightly"


# ---- claiming: per-key order ---------------------------------------------------------------------------------

def test_claims_follow_journal_order_and_never_share_a_key(store: SqliteStore) -> None:
    store.append([ev("a1", "client:1"), ev("b1", "client:2"), ev("a2", "client:1"), ev("c1", "client:3")], NOW)
    assert [e.id for e in store.claim_events("A", NOW, 1, LEASE)] == ["a1"]
    # B must not take a2 while A holds client:1, even though a2 is older than c1.
    assert [e.id for e in store.claim_events("B", NOW, 10, LEASE)] == ["b1", "c1"]
    assert store.claim_events("C", NOW, 10, LEASE) == []
    held = row(store, "a1")
    assert held["status"] == "claimed" and held["claimed_by"] == "A"
    assert held["claimed_until"] == utc(NOW + LEASE)
    # Once A is done with a1, client:1 is free: a2 goes to whoever asks.
    store.commit(ev("a1", "client:1"), Decision(event=ev("a1"), entity_before=None, entity_after=None), NOW)
    assert [e.id for e in store.claim_events("C", NOW, 10, LEASE)] == ["a2"]


def test_a_worker_gets_its_own_key_in_order_and_its_own_claims_again(store: SqliteStore) -> None:
    store.append([ev(f"e{i}", "client:1") for i in range(5)], NOW)
    assert [e.id for e in store.claim_events("A", NOW, 3, LEASE)] == ["e0", "e1", "e2"]
    # What A left unfinished (a batch cut short) comes first the next time A asks.
    assert [e.id for e in store.claim_events("A", NOW, 10, LEASE)] == ["e0", "e1", "e2", "e3", "e4"]
    assert store.claim_events("B", NOW, 10, LEASE) == []


def test_expired_claims_are_claimable_again(store: SqliteStore) -> None:
    store.append([ev("a1", "client:1"), ev("a2", "client:1")], NOW)
    assert [e.id for e in store.claim_events("A", NOW, 1, LEASE)] == ["a1"]
    assert store.claim_events("B", NOW + LEASE, 10, LEASE) == []  # at the very end of the lease: still A's
    later = NOW + LEASE + timedelta(seconds=1)
    assert [e.id for e in store.claim_events("B", later, 10, LEASE)] == ["a1", "a2"]
    assert row(store, "a1")["claimed_by"] == "B"
    assert row(store, "a1")["claimed_until"] == utc(later + LEASE)


def test_claimed_events_come_back_whole(store: SqliteStore) -> None:
    original = Event(id="x", type="deal.updated", at=NOW, entity=EntityRef("deal", "9"), data={"stage": "won"},
                     source="crm", delivery_id="d9", depth=2, caused_by="eff", echo_of="rule-a")
    store.append([original], NOW)
    assert store.claim_events("A", NOW, 1, LEASE) == [original]


# ---- commit ------------------------------------------------------------------------------------------------------

def _decision(event: Event) -> Decision:
    ref = EntityRef("client", "1")
    run = Run(id="run-1", rule_id="r1", rule_version="v.1", key="client:1", event_id=event.id, status="waiting",
              cursor=(1,), entity=ref, started_at=NOW)
    effect = Effect(key="run-1/do/0", run_id="run-1", rule_id="r1", action="task.create", connector="crm",
                    params={"title": "t"}, delivery="at_least_once", at=NOW, entity=ref)
    timer = Timer(id="resume/run-1", due_at=NOW + timedelta(days=1), kind="resume", rule_id="r1", key="client:1",
                  run_id="run-1")
    emitted = Event(id="emitted-1", type="lead.hot", at=NOW, entity=ref, data={}, source="engine", depth=1)
    return Decision(event=event, entity_before=None, entity_after=Entity(ref, {"name": "Анна"}, NOW), runs=(run,),
                    effects=(effect,), timers=(timer,), events=(emitted,),
                    why_not=(WhyNot("r2", "condition 'x > 1' is False", (("x > 1", False),)),))


def test_commit_writes_the_decision_and_marks_the_event_done(store: SqliteStore) -> None:
    event = ev("e1")
    store.append([event], NOW)
    (claimed,) = store.claim_events("A", NOW, 1, LEASE)
    done_at = NOW + timedelta(seconds=1)
    emitted = store.commit(claimed, _decision(claimed), done_at)
    assert [e.id for e in emitted] == ["emitted-1"]
    entry = row(store, "e1")
    assert entry["status"] == "done" and entry["done_at"] == utc(done_at)
    assert entry["claimed_by"] is None and entry["claimed_until"] is None
    assert entry["why_not"] == [{"rule": "r2", "reason": "condition 'x > 1' is False",
                                 "conditions": [["x > 1", False]]}]
    assert store.entity(EntityRef("client", "1")).fields == {"name": "Анна"}
    assert store.run("run-1").status == "waiting"
    assert [(e["key"], e["status"]) for e in store.effects()] == [("run-1/do/0", "pending")]
    assert [t.id for t in store.timers()] == ["resume/run-1"]
    # The emitted event is journaled, pending, in the same transaction.
    assert row(store, "emitted-1")["status"] == "pending" and row(store, "emitted-1")["body"]["depth"] == 1
    # Committing the same decision again (a replay after a crash) journals nothing twice.
    assert store.commit(claimed, _decision(claimed), done_at) == []
    assert store.count("journal") == 2 and store.count("effects") == 1


def test_a_failing_commit_leaves_the_event_claimed_and_writes_nothing(store: SqliteStore) -> None:
    store.append([ev("e1")], NOW)
    (claimed,) = store.claim_events("A", NOW, 1, LEASE)
    decision = _decision(claimed)
    broken = Timer(id="t", due_at="not a datetime", kind="resume", rule_id="r")  # type: ignore[arg-type]
    bad = Decision(event=claimed, entity_before=None, entity_after=decision.entity_after, runs=decision.runs,
                   timers=(broken,))
    with pytest.raises(AttributeError):
        store.commit(claimed, bad, NOW)
    assert row(store, "e1")["status"] == "claimed"
    assert store.entity(EntityRef("client", "1")) is None and store.count("runs") == 0


def test_fail_event_parks_it_with_the_error(store: SqliteStore) -> None:
    store.append([ev("e1"), ev("e2")], NOW)
    first, _ = store.claim_events("A", NOW, 2, LEASE)
    store.fail_event(first, "KeyError: 'x'", NOW)
    entry = row(store, "e1")
    assert entry["status"] == "failed" and entry["error"] == "KeyError: 'x'" and entry["claimed_by"] is None
    assert store.claim_events("B", NOW + timedelta(hours=1), 10, LEASE)[0].id == "e2"  # never handed out again


# ---- recovery ------------------------------------------------------------------------------------------------------

def test_release_dead_claims_frees_only_the_dead_owners(store: SqliteStore) -> None:
    store.append([ev("a", "client:1"), ev("b", "client:2"), ev("c", "client:3"), ev("d", "client:4")], NOW)
    store.claim_events("host:111:aa", NOW, 2, LEASE)
    store.claim_events("host:222:bb", NOW, 1, LEASE)
    asked: list[tuple[str, str]] = []

    def gone(owner: str, me: str) -> bool:
        asked.append((owner, me))
        return owner == "host:111:aa"

    assert store.release_dead_claims("host:333:cc", gone) == 2
    assert sorted(asked) == [("host:111:aa", "host:333:cc"), ("host:222:bb", "host:333:cc")]
    statuses = {r["id"]: (r["status"], r["claimed_by"]) for r in store.db.query("select * from journal")}
    assert statuses == {"a": ("pending", None), "b": ("pending", None), "c": ("claimed", "host:222:bb"),
                        "d": ("pending", None)}
    assert store.release_dead_claims("host:333:cc", lambda o, m: False) == 0


def _dead_pid() -> int:
    for pid in range(4_000_000, 3_000_000, -7919):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.fail("no free pid found")


def test_owner_is_gone() -> None:
    me = worker_name()
    host, pid, _nonce = me.split(":")
    assert int(pid) == os.getpid()
    assert owner_is_gone(me, me) is False  # our own live claim
    assert owner_is_gone(f"{host}:{pid}:000000", me) is True  # an earlier life with the same pid (a container)
    assert owner_is_gone(f"{host}:{_dead_pid()}:abcdef", me) is True
    assert owner_is_gone(f"{host}:{os.getppid()}:abcdef", me) is False  # alive
    assert owner_is_gone(f"{host}-elsewhere:{_dead_pid()}:abcdef", me) is False  # another machine: lease only
    assert owner_is_gone("A", me) is False and owner_is_gone(f"{host}:x:y", me) is False


def test_release_dead_claims_with_the_real_predicate(store: SqliteStore) -> None:
    me = worker_name()
    host = me.split(":")[0]
    store.append([ev("a", "client:1"), ev("b", "client:2")], NOW)
    store.claim_events(f"{host}:{_dead_pid()}:dead00", NOW, 1, LEASE)
    store.claim_events(f"{host}:{os.getppid()}:alive0", NOW, 1, LEASE)
    assert store.release_dead_claims(me) == 1
    assert row(store, "a")["status"] == "pending" and row(store, "b")["status"] == "claimed"


# ---- prune -------------------------------------------------------------------------------------------------------

def test_prune_forgets_only_what_is_finished_and_old(store: SqliteStore) -> None:
    old, recent = NOW - timedelta(days=40), NOW - timedelta(days=1)
    store.append([ev("old-done"), ev("new-done", "client:2"), ev("old-pending", "client:3"),
                  ev("old-failed", "client:4")], old)
    for ident, key, when in (("old-done", "client:1", old), ("new-done", "client:2", recent)):
        e = ev(ident, key)
        store.claim_events("A", when, 10, LEASE)
        store.commit(e, Decision(event=e, entity_before=None, entity_after=None), when)
    store.fail_event(ev("old-failed", "client:4"), "boom", old)
    with store.atomic():
        for rid, status, when in (("r-old", "done", old), ("r-wait", "waiting", old), ("r-new", "done", recent)):
            store.apply(Decision(event=ev("x", at=when), entity_before=None, entity_after=None, runs=(
                Run(id=rid, rule_id="r", rule_version="v", key="k", event_id="x", status=status),)))
        for key, status in (("f-done", "done"), ("f-dead", "dead"), ("f-dropped", "dropped")):
            store.db.conn.execute("insert into effects (key, run_id, rule_id, action, connector, params, delivery, "
                                  "status, at, updated_at) values (?, 'r', 'r', 'notify', 'crm', '{}', "
                                  "'at_least_once', ?, ?, ?)", [key, status, utc(old), utc(old)])
        store.expect_echo(EntityRef("deal", "1"), {"stage": "won"}, "e-old", "r", 0, NOW - timedelta(seconds=1))
        store.expect_echo(EntityRef("deal", "2"), {"stage": "won"}, "e-new", "r", 0, NOW + timedelta(minutes=5))
    store.db.conn.executemany("insert into reports (change, event, at) values (?, ?, ?)",
                              [[f"e-{n}|deal.updated|deal:{n}", f"report-{n}", utc(when)]
                               for n, when in (("1", old), ("2", recent))])
    counts = store.prune(NOW, timedelta(days=30))
    assert counts == {"journal": 1, "runs": 1, "effects": 2, "echoes": 1, "reports": 1}
    assert [r["event"] for r in store.db.query("select event from reports")] == ["report-2"]
    assert {r["id"] for r in store.db.query("select id from journal")} == {"new-done", "old-pending", "old-failed"}
    assert {r.id for r in store.runs()} == {"r-wait", "r-new"}
    assert {e["key"] for e in store.effects()} == {"f-dead"}  # parked effects wait for an operator
    assert [r["effect"] for r in store.db.query("select effect from echoes")] == ["e-new"]


# ---- atomic() ----------------------------------------------------------------------------------------------------

def meta(store: SqliteStore) -> dict[str, str]:
    return {r["name"]: r["value"] for r in store.db.query("select * from meta")}


def test_an_exception_in_a_nested_atomic_rolls_back_only_the_inner_part(store: SqliteStore) -> None:
    with store.atomic():
        store.set_meta("outer-before", "1")
        with pytest.raises(RuntimeError):
            with store.atomic():
                store.set_meta("inner", "2")
                with store.atomic():
                    store.set_meta("innermost", "3")
                raise RuntimeError("inner")
        store.set_meta("outer-after", "4")
        with store.atomic():
            store.set_meta("second-inner", "5")
    assert meta(store) == {"outer-before": "1", "outer-after": "4", "second-inner": "5"}
    assert store.connection.depth == 0


def test_an_outer_exception_rolls_back_everything(store: SqliteStore) -> None:
    store.set_meta("kept", "0")
    with pytest.raises(ValueError):
        with store.atomic():
            store.set_meta("a", "1")
            with store.atomic():
                store.set_meta("b", "2")
            raise ValueError("outer")
    assert meta(store) == {"kept": "0"}
    assert store.connection.depth == 0
    with store.atomic():  # the store is usable afterwards
        store.set_meta("c", "3")
    assert meta(store) == {"kept": "0", "c": "3"}


def test_atomic_is_one_transaction_other_connections_see_at_commit(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    first = SqliteStore(path)
    other = sqlite3.connect(path)
    blocked = SqliteStore(path, timeout=0.05)
    try:
        with first.atomic():
            first.set_meta("x", "1")
            assert other.execute("select count(*) from meta").fetchone()[0] == 0
            # BEGIN IMMEDIATE: the write lock is taken up front, a second writer waits (here: gives up).
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                with blocked.atomic():
                    pass
        assert other.execute("select value from meta where name = 'x'").fetchone() == ("1",)
        assert blocked.connection.depth == 0
    finally:
        other.close()
        blocked.close()
        first.close()


# ---- echoes ------------------------------------------------------------------------------------------------------

def test_an_external_event_matching_an_expected_echo_is_marked_as_ours(store: SqliteStore) -> None:
    deal = EntityRef("deal", "5")
    store.expect_echo(deal, {"stage": "won", "amount": 5}, "run-9/do/0", "rule-x", 2, NOW + timedelta(minutes=10))
    echo = ev("webhook-1", "deal:5", type_="deal.updated", data={"stage": "won", "amount": "5", "extra": 1})
    other = ev("webhook-2", "deal:5", type_="deal.updated", data={"stage": "won", "amount": "5"})
    assert store.append([echo], NOW) == [True]
    body = row(store, "webhook-1")["body"]
    assert (body["depth"], body["caused_by"], body["echo_of"]) == (3, "run-9/do/0", "rule-x")
    (claimed,) = store.claim_events("A", NOW, 1, LEASE)
    assert (claimed.depth, claimed.caused_by, claimed.echo_of) == (3, "run-9/do/0", "rule-x")
    # An echo is recognised once: the next matching change is the CRM user's own.
    store.append([other], NOW)
    body = row(store, "webhook-2")["body"]
    assert "echo_of" not in body and "caused_by" not in body and "depth" not in body


def test_a_non_matching_or_late_event_is_not_an_echo(store: SqliteStore) -> None:
    store.expect_echo(EntityRef("deal", "5"), {"stage": "won"}, "eff-1", "rule-x", 0, NOW + timedelta(minutes=10))
    store.expect_echo(EntityRef("deal", "6"), {"stage": "won"}, "eff-2", "rule-x", 0, NOW + timedelta(minutes=10))
    store.append([ev("lost", "deal:5", type_="deal.updated", data={"stage": "lost"}),
                  ev("other-deal", "deal:7", type_="deal.updated", data={"stage": "won"}),
                  ev("missing-field", "deal:5", type_="deal.updated", data={"title": "x"})], NOW)
    store.append([ev("late", "deal:6", type_="deal.updated", data={"stage": "won"})],
                 NOW + timedelta(minutes=10, seconds=1))
    for ident in ("lost", "other-deal", "missing-field", "late"):
        assert "echo_of" not in row(store, ident)["body"], ident
    # The echo for deal:5 is still expected: the non-matching events did not use it up.
    store.append([ev("match", "deal:5", type_="deal.updated", data={"stage": "won"})], NOW)
    assert row(store, "match")["body"]["echo_of"] == "rule-x"


def test_timer_engine_and_caused_events_are_never_taken_for_echoes(store: SqliteStore) -> None:
    store.expect_echo(EntityRef("deal", "5"), {"stage": "won"}, "eff-1", "rule-x", 0, NOW + timedelta(minutes=10))
    store.append([ev("t", "deal:5", type_="timer.fired", source="timer", data={"stage": "won"}),
                  ev("g", "deal:5", type_="deal.updated", source="engine", data={"stage": "won"})], NOW)
    assert "echo_of" not in row(store, "t")["body"] and "echo_of" not in row(store, "g")["body"]
    assert store.count("echoes") == 1


# ---- the worker's batch: claim, decide, commit ---------------------------------------------------------------------

WORKER_RULES = """
    rules:
      - id: thanks
        when: {event: nps.received}
        do:
          - notify: {to: admin, text: "score {{ event.score }}"}
          - emit: {event: nps.logged, data: {score: "{{ event.score }}"}}
          - wait: 1d
          - notify: {to: admin, text: "a day later"}
    """


@pytest.fixture(scope="module")
def worker_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    import textwrap

    from automator.config.load import load_project

    root = tmp_path_factory.mktemp("worker")
    (root / "automator.yaml").write_text("timezone: Europe/Moscow\nconnectors:\n  crm: {type: local, events: {nps.received: {entity: client, data: {score: number}}}}\n")
    (root / "rules").mkdir()
    (root / "rules" / "rules.yaml").write_text(textwrap.dedent(WORKER_RULES))
    project, problems = load_project(root)
    assert project is not None, problems
    return project


def nps(ident: str, client: str) -> Event:
    return Event(id=ident, type="nps.received", at=NOW, entity=EntityRef("client", client), data={"score": 9},
                 source="crm")


def test_process_batch_decides_and_commits_each_event(worker_project: Project, store: SqliteStore) -> None:
    from automator.daemon.worker import process_batch

    store.append([nps("e1", "1"), nps("e2", "2")], NOW)
    report = process_batch(store, worker_project, "W", NOW, budget=60.0)  # no cut-off on a slow machine
    assert (report.events, report.failed) == (2, 0)
    assert [d.event.id for d in report.decisions] == ["e1", "e2"]
    assert [row(store, i)["status"] for i in ("e1", "e2")] == ["done", "done"]
    assert [r.status for r in store.runs()] == ["waiting", "waiting"]
    assert [e["params"]["text"] for e in store.effects()] == ["score 9", "score 9"]
    assert sorted(e.type for e in report.emitted) == ["nps.logged", "nps.logged"]
    assert report.earliest_timer == NOW + timedelta(days=1)
    # The emitted events are journaled and decided by the next batch; then nothing is left.
    assert process_batch(store, worker_project, "W", NOW, budget=60.0).events == 2
    assert process_batch(store, worker_project, "W", NOW, budget=60.0).events == 0
    assert store.count("journal", "status != 'done'") == 0


def test_an_event_decide_cannot_handle_is_parked_and_the_others_committed(  # type: ignore[no-untyped-def]
        worker_project: Project, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from automator.daemon import worker

    real = worker.decide

    def flaky(project, snapshot, event, now):  # type: ignore[no-untyped-def]
        if event.id == "e2":
            assert not hasattr(snapshot, "set_meta")  # decided outside any transaction: it cannot write
            raise RuntimeError("boom")
        return real(project, snapshot, event, now)

    monkeypatch.setattr(worker, "decide", flaky)
    store.append([nps("e1", "1"), nps("e2", "2"), nps("e3", "3")], NOW)
    report = worker.process_batch(store, worker_project, "W", NOW, budget=60.0)
    assert (report.events, report.failed) == (2, 1)
    assert [d.event.id for d in report.decisions] == ["e1", "e3"]
    failed = row(store, "e2")
    assert (failed["status"], failed["error"], failed["claimed_by"]) == ("failed", "RuntimeError: boom", None)
    assert [row(store, i)["status"] for i in ("e1", "e3")] == ["done", "done"]
    assert {r.event_id for r in store.runs()} == {"e1", "e3"}
    # The parked event is not retried blindly by the next batch.
    monkeypatch.setattr(worker, "decide", real)
    later = worker.process_batch(store, worker_project, "W", NOW + timedelta(hours=1), budget=60.0)
    assert "e2" not in [d.event.id for d in later.decisions] and row(store, "e2")["status"] == "failed"


def test_a_decision_that_cannot_be_written_is_parked_and_the_ones_before_it_committed(  # type: ignore[no-untyped-def]
        worker_project: Project, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch is written without a savepoint: a row refused undoes its transaction whole, and the decisions
    are then written one by one."""
    from dataclasses import replace

    from automator.daemon import worker

    real = worker.writes_of

    def refused(decision):  # type: ignore[no-untyped-def]
        rows = real(decision)
        return replace(rows, runs=[["too", "few"]]) if decision.event.id == "e2" else rows

    monkeypatch.setattr(worker, "writes_of", refused)
    store.append([nps("e1", "1"), nps("e2", "2"), nps("e3", "3")], NOW)
    report = worker.process_batch(store, worker_project, "W", NOW, budget=60.0)
    assert (report.events, report.failed) == (1, 1)
    assert [d.event.id for d in report.decisions] == ["e1"]
    assert [row(store, i)["status"] for i in ("e1", "e2", "e3")] == ["done", "failed", "pending"]
    assert {r.event_id for r in store.runs()} == {"e1"}  # nothing of the undone first attempt stays
    assert len(store.effects()) == 1


def test_a_batch_cut_short_by_its_budget_leaves_the_rest_pending_in_order(  # type: ignore[no-untyped-def]
        worker_project: Project, store: SqliteStore) -> None:
    from automator.daemon.worker import process_batch

    store.append([nps("e1", "1"), nps("e2", "2"), nps("e3", "3")], NOW)
    first = process_batch(store, worker_project, "W", NOW, budget=0.0)
    assert [d.event.id for d in first.decisions] == ["e1"]
    assert [row(store, i)["status"] for i in ("e2", "e3")] == ["pending", "pending"]
    rest = process_batch(store, worker_project, "W", NOW, budget=60.0)
    assert [d.event.id for d in rest.decisions][:2] == ["e2", "e3"]  # then e1's emitted event


def test_an_event_another_worker_holds_or_took_meanwhile_is_left_to_it(  # type: ignore[no-untyped-def]
        worker_project: Project, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from automator.daemon import worker

    store.append([nps("e1", "1"), nps("e2", "2"), nps("e3", "3")], NOW)
    assert [e.id for e in store.claim_events("other", NOW, 1, LEASE)] == ["e1"]  # a live claim on e1's key
    real = worker.decide

    def racing(project, snapshot, event, now):  # type: ignore[no-untyped-def]
        if event.id == "e3":  # another worker takes e2 while this batch is being decided
            assert [e.id for e in store.claim_events("other", now, 2, LEASE)] == ["e1", "e2"]
        return real(project, snapshot, event, now)

    monkeypatch.setattr(worker, "decide", racing)
    report = worker.process_batch(store, worker_project, "W", NOW, budget=60.0)
    assert [d.event.id for d in report.decisions] == ["e3"]
    assert [(row(store, i)["status"], row(store, i)["claimed_by"]) for i in ("e1", "e2", "e3")] == [
        ("claimed", "other"), ("claimed", "other"), ("done", None)]
    assert {r.event_id for r in store.runs()} == {"e3"}  # nothing of e2's decision was written


def test_an_event_sees_what_the_events_before_it_in_its_batch_changed(store: SqliteStore, tmp_path: Path
                                                                        ) -> None:
    """Decided before any is written, a batch still behaves as one event after the other."""
    from automator.config.load import load_project
    from automator.daemon.worker import process_batch

    (tmp_path / "automator.yaml").write_text("timezone: Europe/Moscow\nconnectors:\n  crm: {type: local, events: {nps.received: {entity: client, data: {score: number}}}}\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text("""\
rules:
  - id: arrived
    when: {changed: booking.status, to: arrived}
    do:
      - notify: {to: admin, text: "arrived {{ booking.id }} of {{ client.name }}"}
  - id: once
    mode: single
    when: {event: booking.updated}
    do:
      - wait: 1d
      - notify: {to: admin, text: "a day after"}
""")
    project, problems = load_project(tmp_path)
    assert project is not None, problems
    store.append([Event(id="c1", type="client.updated", at=NOW, entity=EntityRef("client", "7"),
                        data={"name": "Anna"}, source="crm"),
                  Event(id="b1", type="booking.updated", at=NOW, entity=EntityRef("booking", "1"),
                        data={"status": "arrived", "client": "7"}, source="crm"),
                  Event(id="b2", type="booking.updated", at=NOW, entity=EntityRef("booking", "1"),
                        data={"status": "arrived", "client": "7"}, source="crm")], NOW)
    report = process_batch(store, project, "W", NOW, budget=60.0)
    assert report.events == 3
    texts = [e.params["text"] for d in report.decisions for e in d.effects]
    # b1 saw c1's client; b2 saw b1's status (no change: `arrived` does not fire again) and b1's waiting run.
    assert texts == ["arrived 1 of Anna"]
    once = [r for r in store.runs() if r.rule_id == "once"]
    assert [r.status for r in once] == ["waiting"]
    b2 = store.journal_event("b2")
    assert b2 is not None and any("mode: single" in w["reason"] for w in b2["why_not"])
