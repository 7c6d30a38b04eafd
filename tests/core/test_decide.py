"""decide() directly: determinism, traces, why-not records, routing and the local connector's echo."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from automator.config.load import load_project
from automator.core.decide import decide
from automator.model import Entity, EntityRef, Event
from automator.store.sqlite import SqliteStore
from automator_connectors.local import LocalConnector

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MSK)


@pytest.fixture
def project(make_project):  # type: ignore[no-untyped-def]
    root = make_project("""
        rules:
          - id: thank
            when: {changed: booking.status, to: arrived}
            if: ["client.visits > 1"]
            do:
              - sms.send: {to: "{{ client.phone }}", text: "Спасибо, {{ client.name }}!"}
              - wait: 1d
              - task.create: {assignee: admin, title: "call {{ client.name }}"}
          - id: no-show
            when: {changed: booking.status, to: no_show}
            do:
              - notify: {to: admin, text: no-show}
          - id: fragile
            when: {event: nps.received}
            do:
              - notify: {to: admin, text: "{{ client.email }}"}
        """)
    loaded, problems = load_project(root)
    assert loaded is not None, problems
    return loaded


def seeded() -> SqliteStore:
    store = SqliteStore()
    store.put_entity(Entity(EntityRef("client", "7"), {"name": "Анна", "phone": "+79161234567", "visits": 3}, NOW))
    store.put_entity(Entity(EntityRef("booking", "1"), {"client": 7, "status": "confirmed"}, NOW))
    return store


def arrived() -> Event:
    return Event(id="ev-1", type="booking.updated", at=NOW, entity=EntityRef("booking", "1"),
                 data={"status": "arrived"})


def test_decide_is_deterministic_and_pure(project) -> None:  # type: ignore[no-untyped-def]
    store = seeded()
    first = decide(project, store, arrived(), NOW)
    second = decide(project, store, arrived(), NOW)
    assert first == second
    assert store.entity(EntityRef("booking", "1")).fields["status"] == "confirmed"  # nothing was written
    assert [e.key for e in first.effects] == [f"{first.runs[0].id}/do/0"]
    assert first.effects[0].params == {"to": "+79161234567", "text": "Спасибо, Анна!"}
    assert first.effects[0].delivery == "at_most_once"
    assert first.entity_after is not None and first.entity_after.fields["status"] == "arrived"


def test_trace_records_conditions_steps_and_the_wait(project) -> None:  # type: ignore[no-untyped-def]
    decision = decide(project, seeded(), arrived(), NOW)
    run = decision.runs[0]
    assert run.status == "waiting" and run.cursor == (2,)
    kinds = [(t.path, t.kind) for t in run.trace]
    assert kinds == [("when", "trigger"), ("if/0", "condition"), ("do/0", "action"), ("do/1", "wait")]
    assert run.trace[1].value is True
    assert decision.timers[0].id == f"resume/{run.id}"
    assert decision.timers[0].due_at == datetime(2026, 3, 3, 10, 0, tzinfo=MSK)
    why = {w.rule_id: w.reason for w in decision.why_not}
    assert why["no-show"] == "booking.status changed to 'arrived', rule wants 'no_show'"
    assert "fragile" not in why  # not routed at all: it listens to another event type


def test_false_condition_is_a_why_not_with_values(project) -> None:  # type: ignore[no-untyped-def]
    store = seeded()
    store.put_entity(Entity(EntityRef("client", "7"), {"name": "Анна", "phone": "+7", "visits": 1}, NOW))
    decision = decide(project, store, arrived(), NOW)
    assert not decision.effects
    why = {w.rule_id: w for w in decision.why_not}["thank"]
    assert why.reason == "condition 'client.visits > 1' is False"
    assert why.conditions == (("client.visits > 1", False),)


def test_missing_field_is_recorded_in_the_trace(project) -> None:  # type: ignore[no-untyped-def]
    event = Event(id="ev-2", type="nps.received", at=NOW, entity=EntityRef("client", "7"), data={"score": 3})
    decision = decide(project, seeded(), event, NOW)
    run = decision.runs[0]
    assert run.status == "failed"
    assert run.trace[-1].kind == "error" and run.trace[-1].path == "do/0"
    assert "client has no field 'email'" in (run.trace[-1].error or "")


def test_resume_continues_after_the_wait_with_current_state(project) -> None:  # type: ignore[no-untyped-def]
    store = seeded()
    first = decide(project, store, arrived(), NOW)
    store.apply(first)
    store.put_entity(Entity(EntityRef("client", "7"), {"name": "Анна Петровна", "phone": "+7", "visits": 3}, NOW))
    timer = first.timers[0]
    fired = Event(id="t-1", type="timer.fired", at=timer.due_at,
                  data={"kind": "resume", "rule": "thank", "run": timer.run_id})
    resumed = decide(project, store, fired, timer.due_at)
    assert resumed.runs[0].status == "done"
    assert resumed.effects[0].action == "task.create"
    assert resumed.effects[0].params["title"] == "call Анна Петровна"
    store.apply(resumed)
    again = decide(project, store, fired, timer.due_at)  # a timer delivered twice resumes nothing
    assert not again.effects and "is not waiting" in again.why_not[0].reason


def test_local_connector_performs_once_per_key_and_echoes_events(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    local = LocalConnector("crm", {}, db=store.db, now=lambda: NOW)
    created = local.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "T", "contact": "7"}, "k1")
    assert created.events[0].type == "deal.created"
    assert created.events[0].data["client"] == "7"
    again = local.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "T"}, "k1")
    # The same answer and the same events, with the same ids: the journal takes them once.
    assert again.data == created.data and [e.id for e in again.events] == [e.id for e in created.events]
    assert store.db["local_deals"].count == 1
    moved = local.perform("deal.move", {"deal": created.data["id"], "stage": "won", "fields": {"sum": 5}}, "k2")
    assert moved.events[0].type == "deal.updated" and moved.events[0].data == {"stage": "won", "sum": 5}
    row = next(store.db["local_deals"].rows)
    assert row["stage"] == "won" and '"sum": 5' in row["fields"]
    local.perform("sms.send", {"to": "+79161234567", "text": "hi"}, "k3")
    assert next(store.db["local_messages"].rows)["channel"] == "sms"


def test_entity_store_keeps_the_previous_state(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    ref = EntityRef("deal", "1")
    store.put_entity(Entity(ref, {"stage": "new"}, NOW))
    store.put_entity(Entity(ref, {"stage": "won"}, NOW))
    row = next(store.db.query("select fields, prev from entities"))
    assert row == {"fields": '{"stage":"won"}', "prev": '{"stage":"new"}'}  # compact JSON, as orjson writes it
