"""The bitrix24 connector's actions, error classification and rate limit against its emulator over real HTTP."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from jsonschema import Draft202012Validator

from automator.connector import Inbound
from automator.connector_contract import ConnectorContract, Sandbox, Swap
from automator.emulator import Served, read_body, serve
from automator.errors import Rejected, Retryable, Uncertain
from automator.model import Pipeline, Stage
from automator_connectors.bitrix24 import Bitrix24
from automator_connectors.bitrix24.api import classify
from automator_connectors.bitrix24.emulator import Bitrix24Emulator

TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
CODE = "s3cr3tc0de42"
HTTP = httpx.Client(trust_env=False, timeout=5)  # one client for the tests' own calls: each new one costs 0.1 s
PIPELINES = {
    "rehabilitation": Pipeline("rehabilitation", "crm", "4", {
        "new": Stage("new", "C4:NEW"), "thinking": Stage("thinking", "C4:PREPARATION"),
        "warmed_up": Stage("warmed_up", "C4:UC_WARM"), "booked": Stage("booked", "C4:UC_BOOKED"),
        "won": Stage("won", "C4:WON", outcome="won")}),
    "first_sales": Pipeline("first_sales", "crm", "0", {
        "new": Stage("new", "NEW"), "in_progress": Stage("in_progress", "PREPARATION"), "won": Stage("won", "WON")}),
}


class Sink:
    """The daemon's /hooks/<name>, reduced to recording what arrives."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Condition()  # notified on the emulator's thread as each webhook is recorded

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        with self.arrived:
            self.got.append((scope["method"], {k.decode().lower(): v.decode() for k, v in scope["headers"]}, body))
            self.arrived.notify_all()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Served, Swap]]:
    switch = Swap()
    with serve(switch) as served:
        yield served, switch


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def emu(server: tuple[Served, Swap], sink: Sink) -> Bitrix24Emulator:
    # Webhooks reach the sink in-process: the emulator's own delivery is not what these tests are about, and a
    # client per webhook would cost a TLS context each. The sandbox test sends them over real HTTP.
    emulator = Bitrix24Emulator(code=CODE, application_token=TOKEN, hook_url="http://daemon/hooks/crm",
                                transport=httpx.ASGITransport(app=sink))
    emulator.url = server[0].url  # type: ignore[attr-defined]
    server[1].app = emulator
    return emulator


def connector(emu: Bitrix24Emulator, **settings: Any) -> Bitrix24:
    """A connector talking to the emulator over real HTTP, owning the test pipelines."""
    config = {"type": "bitrix24", "webhook_url": f"{emu.url}/rest/1/{CODE}/",  # type: ignore[attr-defined]
              "application_token": TOKEN, "fields": {"visit_at": "UF_CRM_1721244482250", "service": "UF_CRM_SERVICE"},
              "roles": {"admin": "6"}, **settings}
    made = Bitrix24("crm", config)
    made.pipelines = PIPELINES
    return made


def run(emu: Bitrix24Emulator, body: Callable[[Bitrix24], Awaitable[Any]], **settings: Any) -> Any:
    """Run `body(connector)` on a fresh loop, closing the connector after."""
    async def main() -> Any:
        made = connector(emu, **settings)
        try:
            return await body(made)
        finally:
            await made.aclose()
    return asyncio.run(main())


def rest_calls(emu: Bitrix24Emulator) -> list[tuple[str, Any]]:
    """(method, JSON body) of every REST call the emulator received."""
    return [(c.path.rsplit("/", 1)[-1], c.json()) for c in emu.calls if c.path.startswith("/rest/")]


def batch_commands(body: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """A batch body's commands as (method, decoded query pairs)."""
    out = {}
    for key, command in body["cmd"].items():
        method, _, query = command.partition("?")
        out[key] = (method, dict(parse_qsl(query)))
    return out


def wait_hooks(sink: Sink, count: int) -> list[tuple[str, dict[str, str], bytes]]:
    """The webhooks received once `count` have arrived (bounded wait: they are sent in the background)."""
    with sink.arrived:
        sink.arrived.wait_for(lambda: len(sink.got) >= count, timeout=3)
        return list(sink.got)


def hook_form(item: tuple[str, dict[str, str], bytes]) -> dict[str, str]:
    return dict(parse_qsl(item[2].decode()))


# ---- declared contract -----------------------------------------------------------------------------------

def test_rate_limit_poll_interval_and_settings_schema() -> None:
    assert Bitrix24.rate_limit == (2.0, 50)  # leaky bucket drains 2/s, blocks above 50
    assert Bitrix24.poll_every == 300.0
    enterprise = Bitrix24("crm", {"webhook_url": "https://p.bitrix24.ru/rest/1/x/", "application_token": "t",
                                  "plan": "enterprise"})
    assert enterprise.rate_limit == (5.0, 250)
    check = Draft202012Validator(Bitrix24.config_schema)
    good = {"type": "bitrix24", "webhook_url": "${env:B24_WEBHOOK_URL}", "application_token": "${env:B24_APP_TOKEN}",
            "plan": "standard", "poll_every": "5m", "fields": {"visit_at": "UF_CRM_1721244482250"}}
    assert check.is_valid(good)
    assert not check.is_valid({**good, "webhook_url": "https://p.bitrix24.ru/rest/1/abc/"})  # a secret in a file
    assert not check.is_valid({**good, "plan": "pro"})
    assert set(Bitrix24.actions) >= {"deal.create", "deal.move", "deal.update", "task.create", "bitrix24.todo",
                                     "bitrix24.comment", "bitrix24.contact"}
    assert Bitrix24.actions["bitrix24.comment"].schema_id == "actions/bitrix24.comment.json"


def test_vendor_schemas_load_into_the_project_schema_set() -> None:
    from automator.config.schemas import SchemaSet
    from automator.connector import vendor_schemas

    schemas = SchemaSet(vendor_schemas({"bitrix24": Bitrix24}))
    assert schemas.errors("actions/bitrix24.comment.json", {"deal": "394", "text": "SMS отправлено"}) == []
    assert schemas.errors("actions/bitrix24.todo.json", {"deal": 394, "title": "Перезвонить", "due": "2h"}) == []
    assert schemas.errors("actions/bitrix24.contact.json", {"name": "x"})


# ---- deal.create -----------------------------------------------------------------------------------------

def test_deal_create_sends_the_pipeline_stage_origin_and_fields(emu: Bitrix24Emulator) -> None:
    params = {"pipeline": "rehabilitation", "stage": "new", "title": "Реабилитация — Иванова", "contact": "75",
              "responsible": "admin", "amount": 15000, "fields": {"visit_at": "2026-03-02T18:00:00+03:00"}}
    result = run(emu, lambda c: c.perform("deal.create", params, "run-1/do/0"))
    calls = rest_calls(emu)
    assert [m for m, _ in calls] == ["batch", "crm.deal.add"]
    lookup = batch_commands(calls[0][1])
    assert lookup == {"existing": ("crm.deal.list", {"filter[ORIGINATOR_ID]": "automator",
                                                     "filter[ORIGIN_ID]": "run-1/do/0",
                                                     "select[0]": "ID", "select[1]": "CONTACT_ID"})}
    assert calls[1][1] == {"fields": {"UF_CRM_1721244482250": "2026-03-02T18:00:00+03:00",
                                      "TITLE": "Реабилитация — Иванова", "CATEGORY_ID": 4, "STAGE_ID": "C4:NEW",
                                      "ORIGINATOR_ID": "automator", "ORIGIN_ID": "run-1/do/0",
                                      "ASSIGNED_BY_ID": "6", "OPPORTUNITY": 15000, "CONTACT_ID": "75"},
                           "params": {"REGISTER_SONET_EVENT": "N"}}
    add = [c for c in emu.calls if c.path.endswith("crm.deal.add")][0]
    assert add.method == "POST" and add.path == f"/rest/1/{CODE}/crm.deal.add"
    assert add.headers["content-type"] == "application/json" and add.headers["accept"] == "application/json"
    [deal] = emu.state()["deals"]
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"], deal["OPPORTUNITY"], deal["CONTACT_ID"]) == \
        ("4", "C4:NEW", "15000.00", "75")
    assert result.data == {"id": deal["ID"], "contact": "75"}
    [event] = result.events
    assert event.type == "deal.created" and event.entity.id == deal["ID"]
    assert event.data == {"pipeline": "rehabilitation", "stage": "new", "pipeline_id": "4", "stage_id": "C4:NEW",
                          "title": "Реабилитация — Иванова", "contact": "75", "responsible": "6", "amount": "15000.00",
                          "visit_at": "2026-03-02T18:00:00+03:00"}


def test_a_repeated_create_finds_the_deal_by_its_key(emu: Bitrix24Emulator) -> None:
    params = {"pipeline": "first_sales", "stage": "new", "title": "Лид", "contact": "75"}

    async def twice(c: Bitrix24) -> Any:
        return await c.perform("deal.create", params, "k-1"), await c.perform("deal.create", params, "k-1")
    first, second = run(emu, twice)
    assert len(emu.state()["deals"]) == 1
    assert second.data == first.data and [e.id for e in second.events] == [e.id for e in first.events]
    assert [m for m, _ in rest_calls(emu)] == ["batch", "crm.deal.add", "batch"]


def test_a_phone_instead_of_a_contact_finds_or_creates_the_contact(emu: Bitrix24Emulator) -> None:
    async def two(c: Bitrix24) -> Any:
        a = await c.perform("deal.create", {"pipeline": "first_sales", "stage": "new", "title": "A",
                                            "contact": "+7 916 123-45-67"}, "k-a")
        b = await c.perform("deal.create", {"pipeline": "first_sales", "stage": "new", "title": "B",
                                            "contact": "8 (916) 123-45-67"}, "k-b")
        return a, b
    a, b = run(emu, two)
    state = emu.state()
    [contact] = state["contacts"]
    assert contact["PHONE"][0]["VALUE"] == "+79161234567" and contact["ORIGIN_ID"] == "k-a:contact"
    assert a.data["contact"] == b.data["contact"] == contact["ID"]
    assert {d["CONTACT_ID"] for d in state["deals"]} == {contact["ID"]}
    calls = rest_calls(emu)
    assert [m for m, _ in calls] == ["batch", "crm.contact.add", "crm.deal.add", "batch", "crm.deal.add"]
    assert batch_commands(calls[0][1])["contact"] == ("crm.duplicate.findbycomm", {
        "entity_type": "CONTACT", "type": "PHONE", "values[0]": "+79161234567"})


def test_the_contact_vendor_action(emu: Bitrix24Emulator) -> None:
    first = run(emu, lambda c: c.perform("bitrix24.contact", {"phone": "89161234567", "name": "Анна"}, "k"))
    again = run(emu, lambda c: c.perform("bitrix24.contact", {"phone": "+79161234567"}, "k2"))
    assert first.data == again.data == {"id": emu.state()["contacts"][0]["ID"], "phone": "+79161234567"}
    assert emu.state()["contacts"][0]["NAME"] == "Анна"
    with pytest.raises(Rejected, match="not a valid phone"):
        run(emu, lambda c: c.perform("bitrix24.contact", {"phone": "12"}, "k3"))


def test_unknown_stage_or_unmapped_field_is_refused_before_any_call(emu: Bitrix24Emulator) -> None:
    with pytest.raises(Rejected, match="no stage"):
        run(emu, lambda c: c.perform("deal.create", {"pipeline": "rehabilitation", "stage": "gone", "title": "x"}, "k"))
    with pytest.raises(Rejected, match="no Bitrix24 field for 'colour'"):
        run(emu, lambda c: c.perform("deal.create", {"pipeline": "rehabilitation", "stage": "new", "title": "x",
                                                     "fields": {"colour": "red"}}, "k"))
    with pytest.raises(Rejected, match="set by the connector"):
        run(emu, lambda c: c.perform("deal.update", {"deal": "1", "fields": {"STAGE_ID": "C4:WON"}}, "k"))
    with pytest.raises(Rejected, match="is not a Bitrix24 deal id"):
        run(emu, lambda c: c.perform("deal.move", {"deal": "C4:12", "pipeline": "rehabilitation", "stage": "won"}, "k"))
    with pytest.raises(Rejected, match="is not a number"):
        run(emu, lambda c: c.perform("deal.create", {"pipeline": "rehabilitation", "stage": "new", "title": "x",
                                                     "amount": "много"}, "k"))
    bad = {**PIPELINES, "odd": Pipeline("odd", "crm", "6", {"new": Stage("new", "NEW")})}

    async def odd(c: Bitrix24) -> Any:
        c.pipelines = bad
        return await c.perform("deal.create", {"pipeline": "odd", "stage": "new", "title": "x"}, "k")
    with pytest.raises(Rejected, match="not a stage id of that pipeline"):
        run(emu, odd)
    assert rest_calls(emu) == []


# ---- deal.move / deal.update -----------------------------------------------------------------------------

def _deal(emu: Bitrix24Emulator, category: int = 4, stage: str = "C4:NEW") -> str:
    emu.faults.extra["silent"] = True
    deal_id = emu.portal.deal_add({"fields": {"TITLE": "Иванова", "CATEGORY_ID": category, "STAGE_ID": stage}})
    emu.faults.extra.clear()
    return str(deal_id)


def test_deal_move_within_the_pipeline_updates_the_stage(emu: Bitrix24Emulator, sink: Sink) -> None:
    deal_id = _deal(emu)
    params = {"deal": deal_id, "pipeline": "rehabilitation", "stage": "booked",
              "fields": {"visit_at": "2026-03-02T18:00:00+03:00", "service": "ЛФК"}}
    result = run(emu, lambda c: c.perform("deal.move", params, "k"))
    assert rest_calls(emu) == [
        ("crm.deal.get", {"id": deal_id}),
        ("crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "C4:UC_BOOKED",
                                                       "UF_CRM_1721244482250": "2026-03-02T18:00:00+03:00",
                                                       "UF_CRM_SERVICE": "ЛФК"},
                             "params": {"REGISTER_SONET_EVENT": "N"}})]
    deal = emu.state()["deals"][0]
    assert (deal["STAGE_ID"], deal["UF_CRM_SERVICE"], deal["STAGE_SEMANTIC_ID"]) == ("C4:UC_BOOKED", "ЛФК", "P")
    assert result.events[0].data == {"pipeline": "rehabilitation", "stage": "booked", "pipeline_id": "4",
                                     "stage_id": "C4:UC_BOOKED", "visit_at": "2026-03-02T18:00:00+03:00",
                                     "service": "ЛФК"}
    [hook] = wait_hooks(sink, 1)
    assert hook_form(hook)["event"] == "ONCRMDEALUPDATE" and hook_form(hook)["data[FIELDS][ID]"] == deal_id


def test_deal_move_to_another_pipeline_goes_through_crm_item_update(emu: Bitrix24Emulator, sink: Sink) -> None:
    deal_id = _deal(emu)
    result = run(emu, lambda c: c.perform("deal.move", {"deal": deal_id, "pipeline": "first_sales",
                                                        "stage": "in_progress"}, "k"))
    assert rest_calls(emu)[1] == ("crm.item.update", {"entityTypeId": 2, "id": int(deal_id),
                                                      "fields": {"categoryId": 0, "stageId": "PREPARATION"},
                                                      "useOriginalUfNames": "Y"})
    deal = emu.state()["deals"][0]
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"]) == ("0", "PREPARATION")
    assert result.data == {"id": deal_id, "stage_id": "PREPARATION", "pipeline_id": "0"}
    events = [hook_form(h)["event"] for h in wait_hooks(sink, 2)]
    assert sorted(events) == ["ONCRMDEALMOVETOCATEGORY", "ONCRMDEALUPDATE"]


def test_crm_deal_update_cannot_change_the_pipeline(emu: Bitrix24Emulator) -> None:
    deal_id = _deal(emu)
    answer = HTTP.post(f"{emu.url}/rest/1/{CODE}/crm.deal.update",  # type: ignore[attr-defined]
                        json={"ID": deal_id, "FIELDS": {"CATEGORY_ID": 0, "TITLE": "new"}})
    assert answer.json()["result"] is True
    assert (emu.state()["deals"][0]["CATEGORY_ID"], emu.state()["deals"][0]["TITLE"]) == ("4", "new")
    wrong = HTTP.post(f"{emu.url}/rest/1/{CODE}/crm.deal.update",  # type: ignore[attr-defined]
                       json={"id": deal_id, "fields": {"STAGE_ID": "PREPARATION"}})
    assert (wrong.status_code, wrong.json()) == (400, {"error": "", "error_description": "Stage not found"})


def test_deal_move_without_a_pipeline_uses_the_deals_own(emu: Bitrix24Emulator) -> None:
    deal_id = _deal(emu)
    run(emu, lambda c: c.perform("deal.move", {"deal": deal_id, "stage": "thinking"}, "k"))
    assert emu.state()["deals"][0]["STAGE_ID"] == "C4:PREPARATION"


def test_deal_move_to_where_it_is_sends_no_update(emu: Bitrix24Emulator) -> None:
    deal_id = _deal(emu, stage="C4:UC_WARM")
    result = run(emu, lambda c: c.perform("deal.move", {"deal": deal_id, "pipeline": "rehabilitation",
                                                        "stage": "warmed_up"}, "k"))
    assert [m for m, _ in rest_calls(emu)] == ["crm.deal.get"]
    assert result.data["stage_id"] == "C4:UC_WARM"


def test_deal_move_of_a_missing_deal_is_rejected(emu: Bitrix24Emulator) -> None:
    with pytest.raises(Rejected, match="HTTP 400 -: Not found"):
        run(emu, lambda c: c.perform("deal.move", {"deal": "999", "pipeline": "rehabilitation", "stage": "won"}, "k"))


def test_deal_update_sets_mapped_fields(emu: Bitrix24Emulator) -> None:
    deal_id = _deal(emu)
    result = run(emu, lambda c: c.perform("deal.update", {"deal": deal_id, "fields": {
        "service": "Массаж", "amount": 3500, "responsible": "admin", "COMMENTS": "[B]из YCLIENTS[/B]"}}, "k"))
    assert rest_calls(emu)[0] == ("crm.deal.update", {"id": deal_id, "fields": {
        "UF_CRM_SERVICE": "Массаж", "OPPORTUNITY": 3500, "ASSIGNED_BY_ID": "6", "COMMENTS": "[B]из YCLIENTS[/B]"},
        "params": {"REGISTER_SONET_EVENT": "N"}})
    deal = emu.state()["deals"][0]
    assert (deal["OPPORTUNITY"], deal["ASSIGNED_BY_ID"], deal["UF_CRM_SERVICE"]) == ("3500.00", "6", "Массаж")
    assert result.events[0].type == "deal.updated" and result.events[0].data["service"] == "Массаж"


# ---- tasks and the timeline ------------------------------------------------------------------------------

def test_task_create_binds_the_deal_and_client(emu: Bitrix24Emulator) -> None:
    result = run(emu, lambda c: c.perform("task.create", {
        "title": "Позвонить: Анна", "assignee": "admin", "due": "2026-12-31T18:00:00+03:00",
        "description": "после визита", "deal": "394", "client": "75"}, "k"))
    assert rest_calls(emu) == [("tasks.task.add", {"fields": {
        "TITLE": "Позвонить: Анна", "RESPONSIBLE_ID": "6", "DESCRIPTION": "после визита",
        "DEADLINE": "2026-12-31T18:00:00+03:00", "UF_CRM_TASK": ["D_394", "C_75"], "TAGS": ["automator:k"]}})]
    [task] = emu.state()["tasks"]
    assert (task["responsibleId"], task["status"], task["ufCrmTask"]) == ("6", "2", ["D_394", "C_75"])
    assert result.data == {"id": task["id"]} and result.events[0].type == "task.created"


def test_task_create_for_a_client_given_by_phone_binds_the_contact_found_or_made(emu: Bitrix24Emulator) -> None:
    """The engine sends a phone for a person with no Bitrix24 contact yet: the task is bound to the contact with it
    (found as deal.create finds it, else made), never to `C_+7916…`."""
    async def go(c: Bitrix24) -> Any:
        made = await c.perform("deal.create", {"pipeline": "first_sales", "stage": "new", "title": "A",
                                               "contact": "+79161234567"}, "k1")
        found = await c.perform("task.create", {"title": "a", "assignee": "admin", "client": "+79161234567"}, "k2")
        new = await c.perform("task.create", {"title": "b", "assignee": "admin", "client": "+79031112233"}, "k3")
        return made, found, new
    made, found, new = run(emu, go)
    contacts = {str(c["ID"]) for c in emu.state()["contacts"]}
    tasks = emu.state()["tasks"]
    assert len(contacts) == 2 and tasks[0]["ufCrmTask"] == [f"C_{made.data['contact']}"]
    [other] = contacts - {made.data["contact"]}
    assert tasks[1]["ufCrmTask"] == [f"C_{other}"]
    assert found.events[0].data["client"] == made.data["contact"] and new.events[0].data["client"] == other


def test_an_interrupted_task_create_is_found_by_its_tag_not_made_twice(emu: Bitrix24Emulator) -> None:
    """Issue 10 item 12: the first try reached the portal but its answer was lost (the daemon died); the retry,
    told it follows an interrupted try, looks the task up by its tag and returns it."""
    params = {"title": "Перезвонить", "assignee": "admin", "due": "2026-12-31T18:00:00+03:00", "deal": "394"}
    other = {"title": "Другая", "assignee": "admin"}

    async def first_then_retry(c: Bitrix24) -> Any:
        made = await c.perform("task.create", params, "run-9/do/1")
        await c.perform("task.create", other, "run-8/do/0")  # another effect's task: not a match
        return made, await c.recover("task.create", params, "run-9/do/1")
    made, found = run(emu, first_then_retry)
    assert len(emu.state()["tasks"]) == 2
    assert found is not None and found.data == made.data
    assert [e.id for e in found.events] == [e.id for e in made.events]  # the journal keeps the echo once
    assert found.events[0].data == made.events[0].data
    assert rest_calls(emu)[-1] == ("tasks.task.list", {"filter": {"TAG": "automator:run-9/do/1"},
                                                       "select": ["ID", "TITLE", "RESPONSIBLE_ID", "DEADLINE"]})
    # Nothing made yet (the first try never reached the portal): the retry creates it.
    assert run(emu, lambda c: c.recover("task.create", params, "run-7/do/0")) is None
    assert run(emu, lambda c: c.recover("deal.move", {"deal": "1", "stage": "won"}, "run-9/do/1")) is None


def test_the_task_list_emulates_the_documented_filters(emu: Bitrix24Emulator) -> None:
    async def two(c: Bitrix24) -> None:
        await c.perform("task.create", {"title": "a", "assignee": "6", "deal": "394"}, "k1")
        await c.perform("task.create", {"title": "b", "assignee": "7"}, "k2")
    run(emu, two)

    def tasks(body: Any) -> Any:
        answer = HTTP.post(f"{emu.url}/rest/1/{CODE}/tasks.task.list", json=body)  # type: ignore[attr-defined]
        return answer.status_code, answer.json()
    status, body = tasks({"filter": {"RESPONSIBLE_ID": 7}, "select": ["ID", "TITLE"]})
    assert status == 200 and [t["title"] for t in body["result"]["tasks"]] == ["b"] and body["total"] == 1
    assert set(body["result"]["tasks"][0]) == {"id", "title"}
    assert [t["title"] for t in tasks({"filter": {"UF_CRM_TASK": "D_394"}})[1]["result"]["tasks"]] == ["a"]
    assert [t["title"] for t in tasks({"filter": {"!TAG": "automator:k1"}})[1]["result"]["tasks"]] == ["b"]
    status, body = tasks({"filter": {"XML_ID": "k1"}})
    assert status == 400 and "XML_ID" in body["error_description"]


def test_task_due_as_a_duration_and_bad_assignees(emu: Bitrix24Emulator) -> None:
    run(emu, lambda c: c.perform("task.create", {"title": "x", "assignee": "7", "due": "1d"}, "k"))
    deadline = emu.state()["tasks"][0]["deadline"]
    from datetime import datetime, timezone
    assert 86000 < (datetime.fromisoformat(deadline) - datetime.now(timezone.utc)).total_seconds() < 86500
    with pytest.raises(Rejected, match="not a Bitrix24 user id nor a role"):
        run(emu, lambda c: c.perform("task.create", {"title": "x", "assignee": "nobody"}, "k"))
    with pytest.raises(Rejected, match="ERROR_CORE: Task title is not specified"):
        run(emu, lambda c: c.perform("task.create", {"title": " ", "assignee": "7"}, "k"))


def test_todo_and_comment_in_the_deal_timeline(emu: Bitrix24Emulator) -> None:
    deal_id = _deal(emu)

    async def both(c: Bitrix24) -> Any:
        todo = await c.perform("bitrix24.todo", {"deal": deal_id, "title": "Перезвонить", "due":
                                                 "2026-02-03T15:00:00+03:00", "description": "Не пришёл",
                                                 "responsible": "admin"}, "k1")
        comment = await c.perform("bitrix24.comment", {"deal": deal_id, "text": "SMS отправлено"}, "k2")
        return todo, comment
    todo, comment = run(emu, both)
    assert rest_calls(emu) == [
        ("crm.activity.todo.add", {"ownerTypeId": 2, "ownerId": int(deal_id), "deadline": "2026-02-03T15:00:00+03:00",
                                   "title": "Перезвонить", "description": "Не пришёл", "responsibleId": 6}),
        ("crm.timeline.comment.add", {"fields": {"ENTITY_ID": int(deal_id), "ENTITY_TYPE": "deal",
                                                 "COMMENT": "SMS отправлено"}})]
    state = emu.state()
    assert state["activities"][0]["ownerId"] == int(deal_id) and todo.data["id"] == str(state["activities"][0]["id"])
    assert state["comments"][0]["COMMENT"] == "SMS отправлено" and comment.data["id"] == state["comments"][0]["ID"]
    with pytest.raises(Rejected, match="OWNER_NOT_FOUND"):
        run(emu, lambda c: c.perform("bitrix24.comment", {"deal": "12345", "text": "x"}, "k3"))
    upper = HTTP.post(f"{emu.url}/rest/1/{CODE}/crm.timeline.comment.add",  # type: ignore[attr-defined]
                       json={"FIELDS": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": "x"}})
    assert upper.status_code == 400 and upper.json()["error"] == "100"  # `fields` only in lower case


# ---- batch -----------------------------------------------------------------------------------------------

def test_batch_reports_each_commands_error_and_substitutes_results(emu: Bitrix24Emulator) -> None:
    deal_id = _deal(emu)

    async def go(c: Bitrix24) -> Any:
        return await c.api.batch({
            "deal": ("crm.deal.get", {"id": deal_id}),
            "upd": ("crm.deal.update", {"id": "$result[deal][ID]", "fields": {"STAGE_ID": "C4:UC_WARM"}}),
            "missing": ("crm.deal.get", {"id": 999}),
            "list": ("crm.deal.list", {"select": ["ID"]})})
    found = run(emu, go)
    assert found.result["deal"]["ID"] == deal_id and found.result["upd"] is True
    assert found.errors == {"missing": {"error": "", "error_description": "Not found"}}
    assert found.total == {"list": 1} and found.next == {}
    assert emu.state()["deals"][0]["STAGE_ID"] == "C4:UC_WARM"
    assert len(rest_calls(emu)) == 1  # one HTTP request, one unit of the bucket

    async def halted(c: Bitrix24) -> Any:
        return await c.api.batch({"a": ("crm.deal.get", {"id": 999}), "b": ("crm.deal.get", {"id": deal_id})},
                                 halt=True)
    stopped = run(emu, halted)
    assert list(stopped.errors) == ["a"] and stopped.result == {}


def test_a_partial_batch_failure_stops_deal_create(emu: Bitrix24Emulator) -> None:
    emu.faults.extra["batch_error"] = {"method": "crm.deal.list", "count": 1, "error": "",
                                       "error_description": "Access denied."}
    with pytest.raises(Rejected, match="existing: -: Access denied"):
        run(emu, lambda c: c.perform("deal.create", {"pipeline": "first_sales", "stage": "new", "title": "x"}, "k"))
    assert emu.state()["deals"] == []
    emu.faults.extra["batch_error"] = {"method": "crm.deal.list", "count": 1, "error": "INTERNAL_SERVER_ERROR",
                                       "error_description": "Internal server error"}
    with pytest.raises(Retryable):
        run(emu, lambda c: c.perform("deal.create", {"pipeline": "first_sales", "stage": "new", "title": "x"}, "k"))


# ---- errors ----------------------------------------------------------------------------------------------

def test_limit_and_server_errors_retry(emu: Bitrix24Emulator) -> None:
    get = lambda c: c.perform("deal.update", {"deal": "1", "fields": {"title": "x"}}, "k")  # noqa: E731
    emu.faults.update({"storm": {"status": 503, "count": 1}})
    with pytest.raises(Retryable, match="QUERY_LIMIT_EXCEEDED") as limit:
        run(emu, get)
    assert limit.value.retry_after == 0.5  # one drain interval of the standard plan
    emu.faults.update({"storm": {"status": 503, "count": 1}})
    with pytest.raises(Retryable) as enterprise:
        run(emu, get, plan="enterprise")
    assert enterprise.value.retry_after == 0.2
    emu.faults.update({"storm": {"status": 503, "count": 1, "retry_after": 7}})
    with pytest.raises(Retryable) as told:
        run(emu, get)
    assert told.value.retry_after == 7
    for status in (500, 502, 504):
        emu.faults.update({"fail": {"status": status, "count": 1}})
        with pytest.raises(Retryable, match=f"HTTP {status}"):
            run(emu, get)


def test_operation_time_limit_waits_for_the_budget_reset(emu: Bitrix24Emulator) -> None:
    deal_id = _deal(emu)

    async def go(c: Bitrix24) -> Any:
        await c.api.call("crm.deal.get", {"id": deal_id})  # learns time.operating_reset_at
        emu.faults.extra["operation_time_limit"] = {"method": "crm.deal.get", "count": 1}
        await c.api.call("crm.deal.get", {"id": deal_id})
    with pytest.raises(Retryable, match="429 OPERATION_TIME_LIMIT") as blocked:
        run(emu, go)
    assert 590 < (blocked.value.retry_after or 0) <= 600
    emu.faults.update({"storm": {"status": 429, "count": 1}})
    with pytest.raises(Retryable) as unknown:
        run(emu, lambda c: c.api.call("crm.deal.list"))
    assert unknown.value.retry_after == 60.0  # no reset time seen yet for that method


def test_auth_and_refusals_are_final_and_never_show_the_secret(emu: Bitrix24Emulator) -> None:
    with pytest.raises(Rejected, match="401 NO_AUTH_FOUND") as wrong:
        run(emu, lambda c: c.api.call("crm.deal.list"), webhook_url=f"{emu.url}/rest/1/wrong/")  # type: ignore
    assert "wrong" not in str(wrong.value).replace("Wrong", "")
    with pytest.raises(Rejected, match="404 ERROR_METHOD_NOT_FOUND"):
        run(emu, lambda c: c.api.call("crm.nothing.here"))
    for code, status in (("OVERLOAD_LIMIT", 503), ("insufficient_scope", 403), ("ACCESS_DENIED", 403),
                         ("PORTAL_DELETED", 500), ("expired_token", 401), ("INVALID_CREDENTIALS", 403)):
        assert isinstance(classify(status, {"error": code, "error_description": "…"}, "m", drain=2,
                                   header_wait=None, operating_reset_at=None), Rejected), code
    for code, status in (("INTERNAL_SERVER_ERROR", 500), ("ERROR_UNEXPECTED_ANSWER", 500), ("", 502)):
        assert isinstance(classify(status, {"error": code}, "m", drain=2, header_wait=None,
                                   operating_reset_at=None), Retryable), code
    assert isinstance(classify(400, {"error": "", "error_description": "Not found"}, "m", drain=2,
                               header_wait=None, operating_reset_at=None), Rejected)


def test_dropped_slow_and_unreachable_calls(emu: Bitrix24Emulator) -> None:
    emu.faults.update({"drop": 1})
    with pytest.raises(Uncertain) as dropped:
        run(emu, lambda c: c.api.call("crm.deal.list"))
    assert CODE not in str(dropped.value)
    emu.faults.update({"delay": 0.6})
    with pytest.raises(Uncertain) as slow:
        run(emu, lambda c: c.api.call("crm.deal.list"), timeout=0.2)
    assert "took longer" in str(slow.value) and CODE not in str(slow.value)
    emu.faults.update({"delay": 0.0})
    with pytest.raises(Retryable) as refused:
        run(emu, lambda c: c.api.call("crm.deal.list"), webhook_url=f"http://127.0.0.1:9/rest/1/{CODE}/")
    assert CODE not in str(refused.value)


def test_a_2xx_without_the_envelope_is_uncertain() -> None:
    async def main() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>maintenance</html>"))
        c = Bitrix24("crm", {"webhook_url": "https://p.bitrix24.ru/rest/1/abc/", "application_token": "t"},
                     transport=transport)
        c.pipelines = PIPELINES
        with pytest.raises(Uncertain, match="without the result envelope"):
            await c.perform("deal.update", {"deal": "1", "fields": {"title": "x"}}, "k")
        await c.aclose()
    asyncio.run(main())


def test_a_burst_past_the_bucket_gets_query_limit_exceeded(emu: Bitrix24Emulator) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=f"{emu.url}/rest/1/{CODE}/") as client:  # type: ignore[attr-defined]
            return list(await asyncio.gather(*(client.post("crm.deal.list", json={}) for _ in range(60))))
    answers = asyncio.run(burst())
    limited = [a for a in answers if a.status_code == 503]
    assert 50 <= sum(a.status_code == 200 for a in answers) <= 52 and limited
    assert limited[0].json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    with pytest.raises(Retryable, match="QUERY_LIMIT_EXCEEDED"):
        run(emu, lambda c: c.api.call("crm.deal.list"))
    emu.level -= emu.drain * 0.6  # as 0.6 s of the bucket draining would leave it: room for one more
    assert run(emu, lambda c: c.api.call("crm.deal.list"))["result"] == []


def test_form_and_query_params_and_case_insensitive_names(emu: Bitrix24Emulator) -> None:
    base = f"{emu.url}/rest/1/{CODE}"  # type: ignore[attr-defined]
    added = HTTP.post(f"{base}/crm.deal.add.json", data={"fields[TITLE]": "Форма", "fields[CATEGORY_ID]": "4",
                                                          "fields[OPPORTUNITY]": "10"})
    assert added.json()["result"] == int(emu.state()["deals"][0]["ID"])  # an int on create
    got = HTTP.get(f"{base}/CRM.DEAL.GET", params={"ID": added.json()["result"]}).json()["result"]
    assert (got["TITLE"], got["CATEGORY_ID"], got["STAGE_ID"], got["OPPORTUNITY"]) == ("Форма", "4", "C4:NEW", "10.00")
    listed = HTTP.get(f"{base}/crm.deal.list", params={"filter[>OPPORTUNITY]": "5", "select[0]": "TITLE"}).json()
    assert listed["result"] == [{"TITLE": "Форма", "ID": got["ID"]}] and listed["total"] == 1
    assert "next" not in listed


class TestContract(ConnectorContract):
    type = "bitrix24"
    settings = {"roles": {"admin": "1"}}
    pipelines = {"sales": Pipeline("sales", "it", "4", {"new": Stage("new", "C4:NEW"),
                                                        "won": Stage("won", "C4:WON", outcome="won")})}
    written = {"webhook_url": "${env:BITRIX24_WEBHOOK_URL}", "application_token": "${env:BITRIX24_APP_TOKEN}"}
    secret_settings = ("webhook_url", "application_token")
    storm_status = 503  # QUERY_LIMIT_EXCEEDED, the request bucket's answer

    def webhook(self, box: Sandbox, secret: str | None) -> Inbound:
        box.emulator.seed_deal(759, {"CATEGORY_ID": 4, "STAGE_ID": "C4:NEW", "TITLE": "Анна"})
        form = {"event": "ONCRMDEALUPDATE", "data[FIELDS][ID]": "759", "ts": "1736405807",
                **({} if secret is None else {"auth[application_token]": secret})}
        return Inbound("it", "POST", "/hooks/it", {}, {"content-type": "application/x-www-form-urlencoded"},
                       urlencode(form).encode(), datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc))

    def malformed(self, box: Sandbox) -> list[Inbound]:
        token = self.secret(box)
        bodies = [urlencode({"auth[application_token]": token, "data[FIELDS][ID]": "1"}).encode(),
                  urlencode({"event": "ONCRMDEALADD", "data[FIELDS][ID]": "1 or 1", "auth[application_token]": token}
                            ).encode()]
        return [Inbound("it", "POST", "/hooks/it", {}, {"content-type": "application/x-www-form-urlencoded"}, body)
                for body in bodies]

    def refused(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        # The emulator's `fail` envelope says INTERNAL_SERVER_ERROR, which Bitrix24 retries whatever the status.
        return {**settings, "webhook_url": str(settings["webhook_url"]).replace("/sandbox/", "/wrong/")}

    def unreachable(self, settings: Mapping[str, Any], url: str) -> dict[str, Any]:
        return {**settings, "webhook_url": f"{url}/rest/1/sandbox/"}

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        deal = await box.created("deal.create", {"pipeline": "sales", "stage": "new", "title": "Анна"})
        return {"deal.create": {"pipeline": "sales", "stage": "new", "title": "Анна", "contact": "+79161234567",
                                "amount": 3500, "responsible": "admin"},
                "deal.move": {"deal": deal, "stage": "won"},
                "deal.update": {"deal": deal, "fields": {"comments": "перезвонить"}},
                "task.create": {"title": "Позвонить", "assignee": "admin", "due": "1d", "deal": deal},
                "bitrix24.todo": {"deal": deal, "title": "Перезвонить", "due": "2h"},
                "bitrix24.comment": {"deal": deal, "text": "Клиент просил перезвонить"},
                "bitrix24.contact": {"name": "Анна", "phone": "+79161234567"},
                "contact.update": {"contact": "+79161234567", "fields": {"email": "anna@example.com"}},
                "deal.assign": {"deal": deal, "to": "admin"},
                "lead.assign": {"lead": box.emulator.portal.lead_add({"fields": {"TITLE": "Заявка"}}), "to": "1"},
                "note.add": {"deal": deal, "text": "Повторный клиент"}}

    async def change(self, box: Sandbox) -> None:
        box.emulator.skew += 2  # a later second than the cursor's
        async with httpx.AsyncClient(trust_env=False) as web:
            answer = await web.post(f"{box.url}/_emulator/manager/deal",
                                    json={"fields": {"TITLE": "while away", "CATEGORY_ID": 4}})
            assert answer.status_code == 200, answer.text
