"""Each connector's catalogue.yaml says what its mapping code produces, no more and no less.

The samples are made by the connectors' own code: their actions performed against their emulators, the webhooks
the emulators send back read by `parse` as the daemon reads them, and the payloads captured from the real systems
(the ones the connector tests use) read by the same mapping functions. Every event and field produced must be
declared with a type its value has; every event and field declared must be produced by some sample.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlite_utils
import yaml

from automator.catalogue import ENVELOPE, Catalogue, FieldSpec
from automator.config.load import builtin_connectors
from automator.connector import Inbound
from automator.connector_contract import NOW, Sandbox
from automator.model import Event, Pipeline, Stage
from automator_connectors.bitrix24 import events as bitrix_events
from automator_connectors.local import LocalConnector
from test_amocrm import STATUS_HOOK
from test_bitrix24_events import REAL_CONTACT, REAL_DEAL, REAL_TASK
from test_yclients import CAPTURED_CLIENT, CAPTURED_RECORD

ROOT = Path(__file__).resolve().parents[2]
STAGED = ("sales", "new")


# ---- what a value of each type looks like --------------------------------------------------------------------

def _datetime(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _date(value: Any) -> bool:
    try:
        return isinstance(value, str) and len(value) == 10 and bool(date.fromisoformat(value))
    except ValueError:
        return False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _money(value: Any) -> bool:
    # Issue 13: money is exact, decimal text in events ("1500.00"); systems that send a number are read as such.
    return _number(value) or (isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value) is not None)


HOLDS: dict[str, Callable[[Any], bool]] = {
    "text": lambda v: isinstance(v, str),
    "number": _number,
    "money": _money,
    "bool": lambda v: isinstance(v, bool),
    "date": _date,
    "datetime": _datetime,  # ISO text with its offset, never a naive time
    "phone": lambda v: isinstance(v, str) and re.fullmatch(r"\+[1-9][0-9]{6,14}", v) is not None,
    "id": lambda v: isinstance(v, str) and v != "",
    "object": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
}


def misfit(spec: FieldSpec, value: Any) -> str | None:
    """Why `value` is not a `spec.type` (None when it is one)."""
    if not HOLDS[spec.type](value):
        return f"{value!r} is not a {spec.type}"
    if spec.type == "list" and spec.of and not all(HOLDS[spec.of](item) for item in value):
        return f"{value!r} is not a list of {spec.of}"
    if spec.values and value not in spec.values:
        return f"{value!r} is not one of {list(spec.values)}"
    return None


# ---- samples ---------------------------------------------------------------------------------------------------

async def _yclients(sandbox: Callable[..., Sandbox]) -> list[Event]:
    box = sandbox("yclients", {"company_id": 307626, "branch": "main"})
    emulator = box.emulator
    record = next(iter(emulator.records.values()))
    await box.perform("booking.set_status", {"booking": record["id"], "status": "arrived"})
    await box.perform("client.set_category", {"client": record["client"]["id"], "category": "VIP"})
    # A client's booking through the form on a site, opened from an advert's link.
    emulator.make_record({"staff_id": record["staff_id"], "services": [{"id": s["id"]} for s in record["services"]],
                          "datetime": record["datetime"], "seance_length": 3600, "save_if_busy": True,
                          "client": {"phone": "+79161234567", "name": "Анна"}},
                         origin={"online": True, "bookform_id": 767416,
                                 "from_url": "https://salon.example/?utm_source=vk&utm_medium=cpc&utm_campaign=spring"
                                             "&utm_content=banner&utm_term=стрижка"})
    emulator.refund(record, 500)  # money of the visit given back: a finances_operation webhook
    await box.read_webhooks(4)
    secret = box.connector.config["hook_secret"]
    captured = dict(CAPTURED_RECORD, deleted=False, comment="первый визит")
    # A payload whose service names its category (none captured does; the connector reads it when one does).
    categorised = dict(captured, services=[dict(CAPTURED_RECORD["services"][0], category={"id": 1, "title": "Стрижки"})])
    for resource, status, data in [("record", "update", captured), ("record", "create", captured),
                                   ("record", "update", categorised),
                                   ("record", "delete", {**captured, "deleted": True}),
                                   *(("client", status, CAPTURED_CLIENT) for status in ("create", "update", "delete"))]:
        body = {"company_id": 307626, "resource": resource, "resource_id": data["id"], "status": status, "data": data}
        await box.parse(Inbound("it", "POST", "/hooks/it", {"token": secret}, {"content-type": "application/json"},
                                _json(body), received_at=NOW))
    return box.events


async def _bitrix24(sandbox: Callable[..., Sandbox]) -> list[Event]:
    pipelines = {"sales": Pipeline("sales", "it", "4", {"new": Stage("new", "C4:NEW"),
                                                        "won": Stage("won", "C4:WON", outcome="won")})}
    box = sandbox("bitrix24", {"roles": {"admin": "1"}}, pipelines)
    await box.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "Анна",
                                      "contact": "+79161234567", "amount": 3500, "responsible": "admin"})
    deal = box.events[-1].entity.id  # type: ignore[union-attr]
    await box.perform("deal.move", {"deal": deal, "stage": "won"})
    await box.perform("deal.update", {"deal": deal, "fields": {"comments": "перезвонить", "opened": True}})
    task = await box.created("task.create", {"title": "Позвонить", "assignee": "admin", "due": "1d", "deal": deal,
                                             "client": "5"})
    await box.perform("contact.update", {"contact": "+79161234567", "fields": {"email": "anna@example.com"}})
    await box.perform("deal.assign", {"deal": deal, "to": "admin"})
    await box.perform("lead.assign", {"lead": box.emulator.portal.lead_add({"fields": {"TITLE": "x"}}), "to": "1"})
    await box.perform("note.add", {"deal": deal, "text": "Повторный клиент"})
    box.emulator.portal.task_complete({"taskId": task})
    # contact and deal added, deal moved and updated, contact updated, deal assigned, lead added, task completed
    await box.read_webhooks(8)
    staged = lambda stage, category: STAGED  # noqa: E731 - the project's names of every stage
    lead = {"ID": "73", "TITLE": "Заявка с сайта", "NAME": "Анна", "LAST_NAME": "Иванова", "STATUS_ID": "NEW",
            "SOURCE_ID": "WEB", "SOURCE_DESCRIPTION": "форма /promo", "ASSIGNED_BY_ID": "1", "MODIFY_BY_ID": "6",
            "UTM_SOURCE": "yandex", "UTM_MEDIUM": "cpc", "UTM_CAMPAIGN": "spring", "UTM_CONTENT": "banner1",
            "UTM_TERM": "стрижка", "DATE_CREATE": "2026-03-02T10:00:00+03:00",
            "COMMENTS": "Хочу на массаж", "OPPORTUNITY": "3500.00",
            "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": "8 916 123-45-67", "TYPE_ID": "PHONE"}],
            "EMAIL": [{"ID": "2", "VALUE_TYPE": "WORK", "VALUE": "anna@example.com", "TYPE_ID": "EMAIL"}]}
    deal_with_origin = {**REAL_DEAL, "ORIGIN_ID": "run-1/do/0", "ORIGINATOR_ID": "automator", "STAGE_SEMANTIC_ID": "S",
                        "UTM_CAMPAIGN": "spring", "UTM_CONTENT": "banner", "UTM_TERM": "массаж"}
    return box.events + [bitrix_events.deal_event("it", "created", deal_with_origin, {}, staged, NOW),
                         bitrix_events.deal_event("it", "updated", REAL_DEAL, {}, staged, NOW),
                         bitrix_events.deal_deleted("it", "410", NOW),
                         bitrix_events.lead_created("it", lead, NOW),
                         bitrix_events.contact_event("it", "updated", REAL_CONTACT, {}, NOW),
                         bitrix_events.task_completed("it", {**REAL_TASK, "ufCrmTask": ["L_73"]}, NOW)]


async def _amocrm(sandbox: Callable[..., Sandbox]) -> list[Event]:
    pipelines = {"sales": Pipeline("sales", "it", "6950551", {"new": Stage("new", "58141807"),
                                                              "won": Stage("won", "142", outcome="won")})}
    box = sandbox("amocrm", {"users": {"admin": 555}, "subdomain": "apfitness", "sources": {"5501": "site"}},
                  pipelines)
    await box.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "Анна", "amount": 3500,
                                      "responsible": "admin", "fields": {"phone": "+79161234567"}})
    deal, client = box.events[-1].entity.id, box.events[-1].data["contact"]  # type: ignore[union-attr]
    await box.perform("deal.move", {"deal": deal, "stage": "won"})
    await box.perform("deal.update", {"deal": deal, "fields": {
        "amount": 4000, "tags": ["VIP"], "utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "spring",
        "utm_content": "banner", "utm_term": "массаж"}})
    await box.perform("deal.assign", {"deal": deal, "to": "admin"})
    await box.perform("contact.update", {"contact": client, "fields": {"email": "anna@example.com",
                                                                        "tags": ["постоянный"]}})
    task = await box.created("task.create", {"title": "Позвонить", "assignee": "admin", "due": "1d", "deal": deal,
                                             "description": "Уточнить время"})
    await box.perform("task.create", {"title": "Поздравить", "assignee": "admin", "client": client})
    contact_task = box.events[-1].entity.id  # type: ignore[union-attr]
    import httpx

    async with httpx.AsyncClient(trust_env=False) as web:
        for done in (task, contact_task):
            assert (await web.post(f"{box.url}/_emulator/complete", json={"task": int(done)})).status_code == 200
        # A lead that came in through the account's source 5501 (a site form): the poll reads its source.
        form = (await web.post(f"{box.url}/_emulator/lead", json={"name": "С сайта", "pipeline_id": 6950551,
                                                                  "status_id": 58141807, "source_id": 5501})).json()
    # contacts[add], leads[add], leads[status], 2 × leads[update], contacts[update], 2 × task[add], 2 × task[update],
    # the form's leads[add]
    await box.read_webhooks(11)
    polled, _ = await box.connector.poll(str(form["created_at"] - 1))
    box.events.extend(polled)
    secret = box.connector.config["hook_secret"]
    deleted = urlencode({"leads[delete][0][id]": deal, "leads[delete][0][status_id]": "142",
                         "leads[delete][0][pipeline_id]": "6950551"})
    for body in (STATUS_HOOK, deleted):
        await box.parse(Inbound("it", "POST", "/hooks/it", {"token": secret},
                                {"content-type": "application/x-www-form-urlencoded"}, body.encode()))
    return box.events


async def _telegram(sandbox: Callable[..., Sandbox]) -> list[Event]:
    box = sandbox("telegram", {"chats": {"admins": 900000002}})
    import httpx

    async with httpx.AsyncClient(trust_env=False) as web:
        for message in ({"chat_id": 900000001, "text": "Хочу записаться",
                         "from": {"id": 900000001, "is_bot": False, "first_name": "Анна", "last_name": "Иванова",
                                  "username": "anna", "language_code": "ru"}},
                        {"chat_id": 900000002, "text": "я на месте"}):
            assert (await web.post(f"{box.url}/_emulator/write", json=message)).status_code == 200
    await box.read_webhooks(2)
    contact = {"update_id": 10, "message": {
        "message_id": 7, "date": 1772442000, "chat": {"id": 900000001, "type": "private"},
        "from": {"id": 900000001, "is_bot": False, "first_name": "Анна"},
        "contact": {"phone_number": "79161234567", "first_name": "Анна", "user_id": 900000001}}}
    await box.parse(Inbound("it", "POST", "/hooks/it", {}, {
        "content-type": "application/json", "x-telegram-bot-api-secret-token": box.connector.config["secret_token"]},
        _json(contact)))
    return box.events


SAMPLERS: dict[str, Callable[[Callable[..., Sandbox]], Awaitable[list[Event]]]] = {
    "yclients": _yclients, "bitrix24": _bitrix24, "amocrm": _amocrm, "telegram": _telegram}


def _json(body: Any) -> bytes:
    import json

    return json.dumps(body, ensure_ascii=False).encode()


def _own(type_: str) -> Catalogue:
    return builtin_connectors()[type_].produces("it", {})


# ---- the checks --------------------------------------------------------------------------------------------------

def declared_problems(events: list[Event], catalogue: Catalogue) -> list[str]:
    """Every event type or data field the samples hold that the catalogue does not declare, or declares with
    another type."""
    problems = []
    for event in events:
        if event.type not in catalogue.events:
            problems.append(f"{event.type}: the event is not declared")
            continue
        declared = catalogue.event_fields(event.type)
        for name, value in event.data.items():
            if name == "id" and event.entity is not None and value == event.entity.id:
                continue  # the entity's own id, repeated
            if name in ENVELOPE and name not in declared and _datetime(value):
                continue  # visit.completed's `at` (issue 13): no catalogue can declare it, rules read event.data.at
            spec = declared.get(name)
            if spec is None:
                problems.append(f"{event.type}: field {name!r} ({value!r}) is not declared")
            elif (why := misfit(spec, value)) is not None:
                problems.append(f"{event.type}: field {name!r}: {why}")
    return sorted(set(problems))


def unproduced(events: list[Event], catalogue: Catalogue) -> list[str]:
    """Every event and field the catalogue declares that no sample produced."""
    seen_events = {e.type for e in events}
    by_kind: dict[str, set[str]] = {}
    by_type: dict[str, set[str]] = {}
    for event in events:
        by_type.setdefault(event.type, set()).update(event.data)
        spec = catalogue.events.get(event.type)
        if spec is not None and spec.entity and spec.with_fields:
            by_kind.setdefault(spec.entity, set()).update(event.data)
    missing = [f"event {t}" for t in catalogue.events if t not in seen_events]
    missing += [f"{kind}.{name}" for kind, fields in catalogue.entities.items() for name in fields
                if name != "id" and name not in by_kind.get(kind, set())]
    missing += [f"{t} data {name}" for t, spec in catalogue.events.items() for name in spec.data
                if name not in by_type.get(t, set())]
    return sorted(missing)


@pytest.mark.parametrize("type_", sorted(SAMPLERS))
def test_a_connectors_catalogue_declares_what_its_mapping_produces(
        type_: str, sandbox: Callable[..., Sandbox]) -> None:
    made: list[Sandbox] = []

    def tracked(*args: Any) -> Sandbox:
        made.append(sandbox(*args))
        return made[-1]

    async def sample() -> list[Event]:
        try:
            return await SAMPLERS[type_](tracked)
        finally:
            for box in made:
                await box.connector.aclose()
    events = asyncio.run(sample())
    catalogue = _own(type_)
    assert declared_problems(events, catalogue) == [], f"connectors/{type_}/catalogue.yaml misses these"
    assert unproduced(events, catalogue) == [], f"connectors/{type_}/catalogue.yaml declares what nothing produces"


def test_connectors_without_inbound_events_declare_nothing() -> None:
    # SMS gateways and outgoing HTTP report no events and fill no records: they have no catalogue.yaml.
    for type_ in ("smsru", "smsc", "http"):
        assert _own(type_) == Catalogue(), type_
        assert not (ROOT / "connectors" / type_ / "catalogue.yaml").exists()


# ---- local: the canonical catalogue ---------------------------------------------------------------------------

def _local_action_events() -> list[Event]:
    connector = LocalConnector("it", {}, db=sqlite_utils.Database(memory=True), now=lambda: NOW)
    performed = [
        ("deal.create", {"pipeline": "rehabilitation", "stage": "new", "title": "Анна", "contact": "77",
                         "responsible": "olga", "amount": 3500}),
        ("deal.move", {"deal": "1", "stage": "booked", "pipeline": "rehabilitation"}),
        ("deal.update", {"deal": "1", "fields": {"title": "Анна Иванова"}}),
        ("booking.set_status", {"booking": "1001", "status": "no_show"}),
        ("client.set_category", {"client": "77", "category": "VIP"}),
        ("task.create", {"title": "Позвонить", "assignee": "olga", "due": "1d", "description": "до обеда",
                         "deal": "1", "client": "77"}),
    ]
    return [e for i, (action, params) in enumerate(performed) for e in connector.perform(action, params, f"k{i}").events]


def _example_test_events() -> list[Event]:
    """What the example project's tests feed `local` (their `given:` records and `when:` events), as events."""
    events = []
    for path in sorted((ROOT / "rules").rglob("*.test.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        tests = raw.get("tests") or [raw]
        for block in [raw, *tests]:
            for record in block.get("given") or []:
                data = {k: _plain(v) for k, v in record.items() if k not in ("kind", "id")}
                events.append(Event(type=f"{record['kind']}.updated", data=data, id="given", at=NOW, source="it"))
            for step in block.get("when") or []:
                if "event" in step:
                    events.append(Event(type=step["event"], data={k: _plain(v) for k, v in
                                                                  (step.get("data") or {}).items()},
                                        id="when", at=NOW, source="it"))
    return events


def _plain(value: Any) -> Any:
    """A YAML value as the JSON a form would post: times as ISO text, numbers that name records as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def test_local_reports_its_actions_with_canonical_fields() -> None:
    catalogue = _own("local")
    events = _local_action_events()
    assert {e.type for e in events} == {"deal.created", "deal.updated", "booking.updated", "client.updated",
                                        "task.created"}
    assert declared_problems(events, catalogue) == []


def test_every_canonical_field_is_filled_by_some_connector_or_fed_by_the_examples() -> None:
    """local's catalogue is the canonical one: each field it declares is produced by local's own actions, by a
    built-in connector (with the same type), or is what the example project's tests feed local."""
    local = _own("local")
    others = [(t, _own(t)) for t in sorted(builtin_connectors()) if t != "local"]
    fed = _example_test_events()
    produced = {(e.type.split(".")[0], name) for e in _local_action_events() + fed for name in e.data}
    produced |= {(e.type, name) for e in fed for name in e.data}
    lonely = []
    for kind, fields in local.entities.items():
        for name in fields:
            if name == "id" or (kind, name) in produced:
                continue
            if not any(name in c.entity_fields(kind) for _, c in others):
                lonely.append(f"{kind}.{name}")
    for type_, spec in local.events.items():
        for name in spec.data:
            if (type_, name) not in produced and not any(name in c.event_fields(type_) for _, c in others):
                lonely.append(f"{type_} data {name}")
    assert lonely == []


def test_one_field_has_one_type_in_every_catalogue() -> None:
    """A field of a kind (or an event's data) means the same thing whichever connector fills it."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    clashes = []
    catalogues = [("engine", None)] + [(t, _own(t)) for t in sorted(builtin_connectors())]
    from automator.catalogue import CORE

    for type_, catalogue in catalogues:
        catalogue = catalogue if catalogue is not None else CORE
        fields = [((kind, name), spec) for kind, own in catalogue.entities.items() for name, spec in own.items()]
        fields += [((t, name), spec) for t, event in catalogue.events.items() for name, spec in event.data.items()]
        for key, spec in fields:
            first = seen.setdefault(key, (type_, spec.type))
            if first[1] != spec.type:
                clashes.append(f"{'.'.join(key)}: {first[1]} in {first[0]}, {spec.type} in {type_}")
    assert clashes == []
