"""The kind registries: a trigger, step or action kind is looked up by name, refused when a piece is missing, and
agrees with rules.schema.json; the simulator and the daemon share one timer-id scheme; one event codec."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import pytest

from automator.actions import CANONICAL, ENGINE_ACTIONS, deal_fields, expected_echo
from automator.config.load import load_project
from automator.core.router import Router
from automator.core.wakeup import tick_event
from automator.model import EntityRef, Event, EventTrigger, Rule, ScheduleTrigger, StopStep
from automator.simulator import Simulator
from automator.registry import register
from automator.steps import BY_MODEL as STEPS_BY_MODEL, STEPS, StepKind
from automator.steps import control
from automator.triggers import BY_MODEL, TRIGGERS, kind_of
from automator.triggers import event as event_trigger, schedule as schedule_trigger
from automator.triggers.base import TriggerKind

ROOT = Path(__file__).resolve().parents[2]
MSK = ZoneInfo("Europe/Moscow")
MakeProject = Callable[..., Path]


def test_a_trigger_kind_that_reacts_to_nothing_is_refused() -> None:
    with pytest.raises(TypeError, match="reacts to nothing"):
        TriggerKind("event", EventTrigger, event_trigger.compile, event_trigger.routes, event_trigger.describe,
                    routed=None)


def test_a_trigger_kind_must_be_registered_under_its_models_key() -> None:
    with pytest.raises(TypeError, match="has KIND 'event'"):
        replace(event_trigger.KIND, key="arrived")
    with pytest.raises(TypeError, match="registered twice"):
        register((event_trigger.KIND, event_trigger.KIND), "trigger")


def test_the_router_refuses_a_routed_rule_whose_kind_does_not_react_to_routed_events(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A timer-only kind that gives routing keys would reach decide with nothing to match it: refused at load.
    routing = replace(schedule_trigger.KIND, routes=lambda trigger: ["event:booking.created"])
    monkeypatch.setitem(BY_MODEL, ScheduleTrigger, routing)
    rule = Rule(id="nightly", trigger=ScheduleTrigger(cron="0 10 * * *"), conditions=(), steps=())
    with pytest.raises(TypeError, match="does not react"):
        Router([rule])


def test_a_step_kind_without_an_executor_is_refused() -> None:
    with pytest.raises(TypeError, match="either `execute`"):
        StepKind("stop", StopStep, control.compile_stop)
    with pytest.raises(TypeError, match="either `execute`"):  # a step holding steps needs both its parts
        StepKind("stop", StopStep, control.compile_stop, choose=control.choose_if)
    with pytest.raises(TypeError, match="registered twice"):
        register((STEPS["stop"], STEPS["stop"]), "step")


def test_every_kind_is_found_from_its_model_by_a_lookup() -> None:
    assert {kind.key for kind in BY_MODEL.values()} == set(TRIGGERS)
    assert {kind.key for kind in STEPS_BY_MODEL.values()} == set(STEPS)
    assert kind_of(ScheduleTrigger(cron="0 10 * * *")) is TRIGGERS["schedule"]


def test_the_registries_and_rules_schema_agree() -> None:
    schema = json.loads((ROOT / "schemas" / "rules.schema.json").read_text())["$defs"]
    trigger, step = schema["trigger"], schema["step"]
    assert trigger["x-dispatch"]["keys"] == list(TRIGGERS)
    assert [ref["$ref"] for ref in trigger["oneOf"]] == [f"triggers/{key}.json" for key in TRIGGERS]
    controls = [key for key in STEPS if key != "action"]
    assert step["x-dispatch"]["keys"] == controls
    assert [ref["$ref"] for ref in step["oneOf"]] == [f"steps/{key}.json" for key in controls] + [
        "#/$defs/action_step"]
    for key in TRIGGERS:
        assert (ROOT / "schemas" / "triggers" / f"{key}.json").is_file(), key
    for key in controls:
        assert (ROOT / "schemas" / "steps" / f"{key}.json").is_file(), key


def test_an_action_registration_carries_what_the_engine_reads() -> None:
    assert ENGINE_ACTIONS == ("segment.recompute", "loyalty.accrue", "loyalty.spend", "loyalty.set_tier",
                              "loyalty.grant_discount", "set_source", "certificate.issue", "certificate.redeem",
                              "abonement.issue", "abonement.freeze", "abonement.unfreeze")
    assert CANONICAL["deal.move"].target == "deal" and CANONICAL["deal.create"].target is None
    assert expected_echo("deal.move", {"deal": 5, "stage": "won"}) == (EntityRef("deal", "5"), {"stage": "won"})
    assert expected_echo("deal.move", {"stage": "won"}) is None  # the target is not known before the call
    assert expected_echo("deal.update", {"deal": 5, "fields": "x"}) is None
    assert expected_echo("client.set_category", {"client": 7, "category": "vip"}) == (
        EntityRef("client", "7"), {"category": "vip"})
    assert expected_echo("sms.send", {"to": "+7"}) is None
    assert deal_fields("deal.create", {"pipeline": "p", "stage": "s", "contact": 1, "title": "t",
                                       "fields": {"visit_at": 1}}) == {"visit_at", "title", "contact", "client"}
    assert deal_fields("deal.move", {"stage": "s", "fields": {"service": 1}}) == {"service"}
    assert deal_fields("deal.comment", {"fields": {"note": 1}}) == {"note"}  # a connector's own deal action
    assert deal_fields("sms.send", {"fields": {"note": 1}}) == set()


def test_event_from_json_is_the_inverse_of_to_json() -> None:
    event = Event(id="e1", type="booking.updated", at=datetime(2026, 3, 2, 10, tzinfo=MSK),
                  entity=EntityRef("booking", "1"), data={"status": "arrived"}, source="yclients", depth=2,
                  caused_by="r/do/0", echo_of="rule", repeats="e0")
    assert Event.from_json(event.to_json()) == event
    assert Event.from_json({**event.to_json(), "delivery_id": "d1"}) == replace(event, delivery_id="d1")


def test_the_simulator_fires_schedules_with_the_daemons_tick_events(make_project: MakeProject) -> None:
    project, problems = load_project(make_project("""
        rules:
          - id: nightly
            when: {schedule: "0 10 * * *"}
            do:
              - notify: {to: admin, text: tick}
        """))
    assert project is not None, problems
    start = datetime(2026, 3, 2, 9, 0, tzinfo=MSK)
    world = Simulator(project, start)
    world.advance(timedelta(days=2))
    ticks = [e for e in world.events if e.type == "timer.fired"]
    expected = [tick_event("nightly", start + timedelta(hours=1, days=n), project.config) for n in (0, 1)]
    assert [(e.id, e.at, e.data["timer"]) for e in ticks] == [(e.id, e.at, e.data["timer"]) for e in expected]
    assert ticks[0].data["timer"] == schedule_trigger.timer_id("nightly")


def test_a_new_kind_is_listed_in_the_rule_schema_by_the_generator() -> None:
    from automator import docs

    text = (ROOT / "schemas" / "rules.schema.json").read_text()
    triggers, controls = docs.rule_kinds()
    assert docs.with_kinds(text, triggers, controls) == text  # today's file is what the registries make
    defs = json.loads(docs.with_kinds(text, [*triggers, "untouched"], [*controls, "log"]))["$defs"]
    assert defs["trigger"]["x-dispatch"]["keys"][-1] == "untouched"
    assert defs["trigger"]["oneOf"][-1] == {"$ref": "triggers/untouched.json"}
    assert defs["trigger"]["x-dispatch"]["none"].endswith("schedule, untouched")
    assert defs["step"]["x-dispatch"]["keys"][-1] == "log"
    assert defs["step"]["oneOf"][-2:] == [{"$ref": "steps/log.json"}, {"$ref": "#/$defs/action_step"}]
    assert defs["step"]["description"].endswith("stop, log.")
