"""The yclients connector against its emulator over real HTTP on 127.0.0.1: actions, webhooks, errors, limits, poll."""
from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from automator.connector import ConfigError, Inbound
from automator.connector_contract import ConnectorContract, Hooks, Sandbox, Swap
from automator.emulator import Served, serve
from automator.http import new_transport
from automator.errors import InboundRejected, Rejected, Retryable, Uncertain
from automator.model import Event
from automator_connectors.yclients import SANDBOX, Yclients
from automator_connectors.yclients import api as yapi
from automator_connectors.yclients.api import Pace
from automator_connectors.yclients.emulator import YclientsEmulator
from automator_connectors.yclients.mapping import ATTENDANCE, parse_datetime, to_e164

COMPANY, PARTNER, USER, SECRET = 307626, "partner-token-1", "user-token-1", "hook-secret-1"

# Literal bodies from the reference (§2.2, §2.4, §2.5), captured from the real API.
UNAUTHORIZED = {"success": False, "data": None, "meta": {"message": "Partner ID not specified"}}
NO_RIGHTS = {"success": False, "data": None, "meta": {"message": "No company management rights"}}
NOT_FOUND = {"success": False, "data": None, "meta": {"message": "An error has occurred"}}
CAPTURED_RECORD: dict[str, Any] = {
    "id": 596792980, "company_id": 307626, "staff_id": 2835418, "clients_count": 1,
    "date": "2025-07-13 12:10:00", "datetime": "2025-07-13T12:10:00+05:00",
    "create_date": "2025-07-13T11:49:08+0500", "last_change_date": "2025-07-13T12:15:24+0500",
    "comment": "", "online": False, "visit_id": 508928360, "visit_attendance": 1, "attendance": 1, "confirmed": 1,
    "seance_length": 1500, "length": 1500, "sms_before": 1, "sms_now": 1, "sms_now_text": "", "email_now": 1,
    "notified": 0, "master_request": 0, "api_id": "01effc9e-09da-4db1-98a1-e317b214df2c", "from_url": "",
    "review_requested": 0, "created_user_id": 12795431, "deleted": False, "paid_full": 1, "prepaid": False,
    "prepaid_confirmed": False, "activity_id": 0, "bookform_id": 0, "record_from": "", "is_mobile": 0,
    "services": [{"id": 5034676, "title": "Стрижка детская", "cost": 4000, "cost_to_pay": 4000, "manual_cost": 4000,
                  "cost_per_unit": 4000, "discount": 0, "first_cost": 4000, "amount": 1}],
    "staff": {"id": 2835418, "api_id": None, "name": "Нурзад", "specialization": "Barber",
              "position": {"id": 122084, "title": "Барбер"}, "avatar": "https://…", "rating": 5, "votes_count": 0},
    "client": {"id": 169711586, "name": "Вячеслав", "surname": "", "patronymic": "", "display_name": "Вячеслав",
               "comment": "", "phone": "+77770220606", "card": "", "email": "", "success_visits_count": 3,
               "fail_visits_count": 0, "discount": 0, "custom_fields": [], "sex": 0, "birthday": "",
               "client_tags": []},
    "goods_transactions": [], "sms_remain_hours": 1, "email_remain_hours": 1, "comer": None,
    "custom_fields": [], "custom_color": "", "custom_font_color": "", "record_labels": [],
    "documents": [], "short_link": "http://…", "composite": []}
CAPTURED_CLIENT: dict[str, Any] = {
    "id": 1121412, "name": "Василий", "surname": "Сонов", "patronymic": "Васильевич", "phone": 79211234567,
    "email": "123456789@gmail.com", "categories": [{"id": 7, "title": "VIP", "color": "#ff0000"}],
    "sex": "Мужской", "sex_id": 1, "discount": 15, "importance_id": 1, "importance": "Бронза",
    "card": "555888666", "birth_date": "2010-01-01", "comment": "…", "sms_check": 0, "sms_not": 0,
    "spent": 1000, "balance": -1200, "visits": 0, "last_change_date": "2020-05-01T12:00:00+0400",
    "custom_fields": {"key-1": "value-1"}}
PAST = "2026-03-01T10:00:00+0300"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Served, Swap, Served, Hooks]]:
    swap, hooks = Swap(), Hooks("yc")
    with serve(swap) as api_server, serve(hooks) as hook_server:
        yield api_server, swap, hook_server, hooks


@pytest.fixture
def hooks(servers: tuple[Served, Swap, Served, Hooks]) -> Hooks:
    return servers[3]


@pytest.fixture
def url(servers: tuple[Served, Swap, Served, Hooks]) -> str:
    return servers[0].url


class World:
    """The seeded emulator and the ids a test needs."""

    def __init__(self, emu: YclientsEmulator) -> None:
        self.emu = emu
        self.master = emu.add_staff("Ирина", "Косметолог")
        self.service = emu.add_service("Стрижка", 4000)
        self.regular = emu.add_label("Постоянный", "#00ff00")
        self.vip = emu.add_label("VIP")
        self.important = emu.add_label("Важная", "#0000ff", entity=2)
        self.anna = emu.make_client({"name": "Анна", "surname": "Иванова", "phone": "79161234567",
                                     "email": "anna@example.com", "comment": "аллергия", "birth_date": "1990-05-01",
                                     "labels": [self.regular["id"]]}, notify=False)
        self.anna["custom_fields"] = {"source": "instagram"}
        self.record = emu.make_record({"staff_id": self.master["id"], "services": [{"id": self.service["id"]}],
                                       "datetime": "2026-03-02T15:00:00+03:00", "seance_length": 3600,
                                       "client": {"phone": "79161234567"}, "comment": "первый визит",
                                       "record_labels": [str(self.important["id"])], "api_id": "ext-1"},
                                      notify=False)
        for item in (self.record, self.anna):  # changed long before the test began
            item["last_change_date"] = PAST
        self.record["create_date"] = PAST


@pytest.fixture
def world(servers: tuple[Served, Swap, Served, Hooks]) -> Iterator[World]:
    _, swap, hook_server, hooks = servers
    hooks.got.clear()
    Pace._by_host.clear()
    swap.app = YclientsEmulator(company_id=COMPANY, partner_token=PARTNER, user_token=USER,
                                hook_url=f"{hook_server.url}/hooks/yc?token={SECRET}")
    swap.app.other_companies.add(999)
    yield World(swap.app)
    swap.settled()  # the next test must not receive this one's late webhooks


def make(url: str, **extra: Any) -> Yclients:
    return Yclients("yc", {"type": "yclients", "company_id": COMPANY, "partner_token": PARTNER, "user_token": USER,
                           "hook_secret": SECRET, "base_url": f"{url}/api/v1", **extra})


def run(connector: Yclients, work: Callable[[Yclients], Any]) -> Any:
    """Run one coroutine of the connector on a fresh event loop, closing its client after."""
    async def go() -> Any:
        try:
            return await work(connector)
        finally:
            await connector.aclose()
    return asyncio.run(go())


def perform(connector: Yclients, action: str, params: dict[str, Any]) -> Any:
    return run(connector, lambda c: c.perform(action, params, "effect-key"))


def parse(connector: Yclients, inbound: Inbound) -> list[Event]:
    return run(connector, lambda c: c.parse(inbound))


def hook(body: Any, token: str | None = SECRET, path: str = "/hooks/yc") -> Inbound:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return Inbound(connector="yc", method="POST", path=path, query={"token": token} if token else {},
                   headers={"content-type": "application/json"}, body=data,
                   received_at=datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc))


WEB = httpx.Client(trust_env=False)  # the tests' own direct calls: one pool, one TLS context


def control(url: str, what: str, body: dict[str, Any]) -> Any:
    answer = WEB.post(f"{url}/_emulator/{what}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def api_calls(emu: YclientsEmulator) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in emu.calls]


# ---- booking.set_status --------------------------------------------------------------------------------------

def test_set_status_reads_the_record_and_puts_it_back_whole(world: World, url: str, hooks: Hooks) -> None:
    rid = world.record["id"]
    result = perform(make(url), "booking.set_status", {"booking": str(rid), "status": "no_show"})
    path = f"/api/v1/record/{COMPANY}/{rid}"
    assert api_calls(world.emu) == [("GET", path), ("PUT", path)]
    put = world.emu.calls[1]
    assert put.headers["accept"] == "application/vnd.yclients.v2+json"
    assert put.headers["authorization"] == f"Bearer {PARTNER}, User {USER}"
    assert put.headers["content-type"] == "application/json"
    assert json.loads(put.body) == {
        "staff_id": world.master["id"],
        "services": [{"id": world.service["id"], "first_cost": 4000, "discount": 0, "cost": 4000, "amount": 1}],
        "datetime": "2026-03-02T15:00:00+03:00", "seance_length": 3600, "attendance": -1,
        "comment": "первый визит", "send_sms": False, "save_if_busy": True,
        "client": {"phone": "+79161234567", "name": "Анна", "surname": "Иванова", "email": "anna@example.com"},
        "sms_remain_hours": 1, "email_remain_hours": 1, "api_id": "ext-1",
        "record_labels": [str(world.important["id"])]}
    stored = world.emu.records[rid]
    assert (stored["attendance"], stored["visit_attendance"]) == (-1, -1)
    assert stored["comment"] == "первый визит" and [x["id"] for x in stored["record_labels"]] == [world.important["id"]]
    assert result.data == {"booking": str(rid), "status": "no_show", "changed": True}
    event, = result.events
    assert (event.type, str(event.entity), event.data["status"]) == ("booking.updated", f"booking:{rid}", "no_show")
    # The webhook YCLIENTS sends about the same change carries the same delivery id: the journal keeps one.
    webhook, = hooks.wait(1)
    assert webhook.query == {"token": SECRET}
    from_hook = parse(make(url), webhook)
    assert [e.type for e in from_hook] == ["client.updated", "booking.updated"]
    assert from_hook[1].delivery_id == event.delivery_id == \
        f"record:{rid}:update@{parse_datetime(stored['last_change_date']).astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
    assert from_hook[1].data["status"] == "no_show"


@pytest.mark.parametrize(("status", "code"), [("confirmed", 2), ("arrived", 1), ("no_show", -1)])
def test_each_status_is_its_attendance_code(world: World, url: str, status: str, code: int) -> None:
    perform(make(url), "booking.set_status", {"booking": world.record["id"], "status": status})
    assert json.loads(world.emu.calls[-1].body)["attendance"] == code
    assert world.emu.records[world.record["id"]]["attendance"] == code


def test_attendance_table_is_the_reference_one() -> None:
    assert ATTENDANCE == {2: "confirmed", 1: "arrived", 0: "waiting", -1: "no_show"}


def test_the_status_a_record_already_has_sends_no_put(world: World, url: str) -> None:
    result = perform(make(url), "booking.set_status", {"booking": world.record["id"], "status": "waiting"})
    assert [m for m, _ in api_calls(world.emu)] == ["GET"]
    assert result.data["changed"] is False and result.events == ()


def test_cancelled_deletes_the_record_and_a_second_time_is_harmless(world: World, url: str, hooks: Hooks) -> None:
    rid = world.record["id"]
    first = perform(make(url), "booking.set_status", {"booking": rid, "status": "cancelled"})
    again = perform(make(url), "booking.set_status", {"booking": rid, "status": "cancelled"})
    assert api_calls(world.emu) == [("DELETE", f"/api/v1/record/{COMPANY}/{rid}")] * 2
    assert world.emu.records[rid]["deleted"] is True
    assert (first.data["changed"], again.data["changed"]) == (True, False)
    event, = parse(make(url), hooks.wait(1)[0])
    assert (event.type, event.data["status"]) == ("booking.deleted", "cancelled")


def test_an_unknown_booking_or_a_bad_id_is_refused(world: World, url: str) -> None:
    with pytest.raises(Rejected, match="HTTP 404: An error has occurred"):
        perform(make(url), "booking.set_status", {"booking": "424242", "status": "arrived"})
    with pytest.raises(Rejected, match="is a number"):
        perform(make(url), "booking.set_status", {"booking": "abc", "status": "arrived"})


# ---- client.set_category ---------------------------------------------------------------------------------------

def test_set_category_adds_the_label_and_keeps_the_client_whole(world: World, url: str, hooks: Hooks) -> None:
    cid = world.anna["id"]
    result = perform(make(url), "client.set_category", {"client": str(cid), "category": "vip "})
    assert api_calls(world.emu) == [("GET", f"/api/v1/labels/{COMPANY}/1"), ("GET", f"/api/v1/client/{COMPANY}/{cid}"),
                                    ("PUT", f"/api/v1/client/{COMPANY}/{cid}")]
    assert json.loads(world.emu.calls[-1].body) == {
        "name": "Анна", "surname": "Иванова", "patronymic": "", "phone": 79161234567, "email": "anna@example.com",
        "sex_id": 0, "importance_id": 0, "discount": 0, "card": "", "birth_date": "1990-05-01", "comment": "аллергия",
        "sms_check": 0, "sms_not": 0, "custom_fields": {"source": "instagram"},
        "labels": [world.regular["id"], world.vip["id"]]}
    stored = world.emu.clients[cid]
    assert [c["title"] for c in stored["categories"]] == ["Постоянный", "VIP"]
    assert (stored["email"], stored["comment"], stored["birth_date"]) == ("anna@example.com", "аллергия", "1990-05-01")
    event, = result.events
    assert event.type == "client.updated" and event.data["categories"] == ["Постоянный", "VIP"]
    assert event.data["phone"] == "+79161234567"
    from_hook, = parse(make(url), hooks.wait(1)[0])
    assert from_hook.delivery_id == event.delivery_id and from_hook.data["categories"] == ["Постоянный", "VIP"]


def test_a_missing_category_is_created_as_a_client_label(world: World, url: str) -> None:
    cid = world.anna["id"]
    result = perform(make(url, category_color="#123456", create_categories=True), "client.set_category",
                     {"client": cid, "category": "Под угрозой"})
    create = world.emu.calls[2]  # after reading the categories and the client (which must exist)
    assert (create.method, create.path) == ("POST", f"/api/v1/labels/{COMPANY}")
    assert json.loads(create.body) == {"title": "Под угрозой", "color": "#123456", "entity": 1}
    made = next(x for x in world.emu.labels.values() if x["title"] == "Под угрозой")
    assert made["entity"] == 1 and result.data["category_id"] == str(made["id"])
    assert [c["title"] for c in world.emu.clients[cid]["categories"]] == ["Постоянный", "Под угрозой"]


def test_a_category_the_company_has_not_is_refused_naming_the_ones_it_has(world: World, url: str) -> None:
    # Refusing is the default (issue 13): a misspelt tier must not become a new category of the company.
    for settings in ({}, {"create_categories": False}):
        with pytest.raises(Rejected, match=r"no client category 'Под угрозой' \(its client categories: VIP, "
                                           r"Постоянный\)"):
            perform(make(url, **settings), "client.set_category",
                    {"client": world.anna["id"], "category": "Под угрозой"})
    assert "POST" not in [m for m, _ in api_calls(world.emu)]
    assert "PUT" not in [m for m, _ in api_calls(world.emu)]


def test_a_category_the_client_has_sends_no_put(world: World, url: str) -> None:
    result = perform(make(url), "client.set_category", {"client": world.anna["id"], "category": "Постоянный"})
    assert [m for m, _ in api_calls(world.emu)] == ["GET", "GET"] and result.data["changed"] is False


def test_record_labels_are_not_client_categories(world: World, url: str) -> None:
    perform(make(url, create_categories=True), "client.set_category", {"client": world.anna["id"], "category": "Важная"})
    made = [x for x in world.emu.labels.values() if x["title"] == "Важная"]
    assert sorted(x["entity"] for x in made) == [1, 2]


def test_the_client_put_requires_name_and_phone(world: World, url: str) -> None:
    connector = make(url)
    with pytest.raises(Rejected, match=r"HTTP 422: Ошибка валидации; name: Обязательное поле; phone: Обязательное"):
        run(connector, lambda c: c.api.put_client(str(world.anna["id"]), {"labels": []}))
    with pytest.raises(Rejected, match="phone: Неверный формат телефона"):
        run(connector, lambda c: c.api.put_client(str(world.anna["id"]), {"name": "А", "phone": "123"}))


# ---- loyalty cards -------------------------------------------------------------------------------------------

def test_loyalty_cards_of_a_client(world: World, url: str) -> None:
    card = world.emu.add_card(world.anna["id"], "01010101", balance=500)
    result = perform(make(url), "yclients.loyalty_cards", {"client": world.anna["id"]})
    assert api_calls(world.emu) == [("GET", f"/api/v1/loyalty/client_cards/{world.anna['id']}")]
    assert result.data == {"client": str(world.anna["id"]), "cards": [
        {"id": str(card["id"]), "number": "01010101", "type": "Клубная карта", "type_id": 8230, "balance": 500,
         "points": 0, "visits": 0, "paid_amount": 0, "programs": ["накопительный кэш"]}]}
    phone = WEB.get(f"{url}/api/v1/loyalty/cards/79161234567/1/{COMPANY}", headers=make(url).default_headers())
    assert phone.json()["data"][0]["number"] == "01010101"


# ---- inbound webhooks ----------------------------------------------------------------------------------------

def test_the_captured_record_webhook(world: World, url: str) -> None:
    events = parse(make(url, branch="main"), hook({"company_id": COMPANY, "resource": "record",
                                                    "resource_id": 596792980, "status": "update",
                                                    "data": CAPTURED_RECORD}))
    client, booking, visit = events
    assert (client.type, str(client.entity)) == ("client.updated", "client:169711586")
    assert client.data["phone"] == "+77770220606" and client.data["name"] == "Вячеслав"
    assert (booking.type, str(booking.entity)) == ("booking.updated", "booking:596792980")
    assert booking.delivery_id == "record:596792980:update@2025-07-13T07:15:24Z"
    assert client.delivery_id == booking.delivery_id + "/client"
    data = booking.data
    assert data["status"] == "arrived" and data["client"] == "169711586" and data["branch"] == "main"
    assert data["starts_at"] == "2025-07-13T12:10:00+05:00" and data["ends_at"] == "2025-07-13T12:35:00+05:00"
    assert (data["staff"], data["staff_name"], data["service"]) == ("2835418", "Нурзад", "Стрижка детская")
    assert data["company_id"] == str(COMPANY) and data["paid"] is True and data["amount"] == 4000
    assert data["updated_at"] == "2025-07-13T12:15:24+05:00"
    assert booking.at == datetime(2025, 7, 13, 7, 15, 24, tzinfo=timezone.utc)
    # The client came (attendance 1): the visit, on the client, once whichever change reports it.
    # One visit of the history is one record (a YCLIENTS visit may hold several): keyed on the record's id.
    assert (visit.type, str(visit.entity), visit.delivery_id) == (
        "visit.completed", "client:169711586", "visit:record-596792980:completed")
    assert visit.data == {"visit": "596792980", "booking": "596792980", "at": "2025-07-13T12:10:00+05:00",
                          "branch": "main", "services": ["Стрижка детская"], "staff": "Нурзад", "amount": "4000.00",
                          "currency": "RUB"}


def test_each_record_of_one_yclients_visit_is_a_visit_with_its_own_money(world: World, url: str) -> None:
    # Two masters in one coming of the client: one YCLIENTS visit, two records, each paid on its own.
    second = {**CAPTURED_RECORD, "id": 596792981, "staff_id": 2835419, "staff": {"id": 2835419, "name": "Ольга"},
              "services": [{"id": 5034677, "title": "Укладка", "cost": 1500, "cost_to_pay": 1500}]}
    visits = [events[-1] for events in (
        parse(make(url, branch="main"), hook({"company_id": COMPANY, "resource": "record", "resource_id": r["id"],
                                              "status": "update", "data": r}))
        for r in (CAPTURED_RECORD, second))]
    assert [(v.data["visit"], v.data["amount"], v.data["staff"]) for v in visits] == [
        ("596792980", "4000.00", "Нурзад"), ("596792981", "1500.00", "Ольга")]
    assert visits[0].delivery_id != visits[1].delivery_id  # the journal keeps both


@pytest.mark.parametrize(("money", "amount"), [
    # A refund larger than what the record lists as paid: the client came and paid nothing on balance.
    ({"finance_transactions": [{"amount": 1000}, {"amount": -1500}]}, "0.00"),
    # Money no history keeps (past 15 digits, not finite): not read, as an unknown amount is not; no error.
    ({"services": [{"title": "Стрижка", "cost_to_pay": "1e30"}]}, None),
    ({"finance_transactions": [{"amount": "1e30"}], "services": [{"title": "Стрижка", "cost_to_pay": 900}]},
     "900.00"),
    ({"services": [{"title": "Стрижка", "cost_to_pay": "Infinity"}]}, None),
])
def test_a_visits_amount_is_bounded_and_never_negative(money: dict[str, Any], amount: str | None) -> None:
    from automator_connectors.yclients import visits

    data = visits.completed({**CAPTURED_RECORD, **money}, branch=None, tz=None)
    assert data is not None and data.get("amount") == amount


@pytest.mark.parametrize(("fields", "tz", "starts"), [
    ({"datetime": "2026-03-02T15:00:00+0300"}, None, "2026-03-02T15:00:00+03:00"),
    ({"datetime": "2026-03-02T15:00:00+03:00"}, None, "2026-03-02T15:00:00+03:00"),
    ({"datetime": "2026-03-02T12:00:00Z"}, None, "2026-03-02T12:00:00+00:00"),
    ({"date": "2026-03-02 15:00:00"}, "Asia/Almaty", "2026-03-02T15:00:00+05:00"),
    ({"date": "2026-03-02 15:00:00", "last_change_date": "2026-03-01T09:00:00+0500"}, None,
     "2026-03-02T15:00:00+05:00"),
])
def test_every_datetime_format_the_api_mixes(world: World, url: str, fields: dict[str, Any], tz: str | None,
                                             starts: str) -> None:
    data = {"id": 5, "attendance": 2, "last_change_date": "2026-03-01T12:00:00+03:00", **fields}
    extra = {"timezone": tz} if tz else {}
    booking, = parse(make(url, **extra), hook({"company_id": COMPANY, "resource": "record", "resource_id": 5,
                                                "status": "update", "data": data}))
    assert booking.data["starts_at"] == starts and booking.data["status"] == "confirmed"


def test_both_offset_spellings_give_one_delivery_id(world: World, url: str) -> None:
    ids = set()
    for stamp in ("2026-03-02T15:00:00+0300", "2026-03-02T15:00:00+03:00", "2026-03-02T12:00:00Z"):
        booking, = parse(make(url), hook({"company_id": COMPANY, "resource": "record", "resource_id": 5,
                                          "status": "update", "data": {"last_change_date": stamp}}))
        ids.add(booking.delivery_id)
    assert ids == {"record:5:update@2026-03-02T12:00:00Z"}


def test_the_captured_client_webhook(world: World, url: str) -> None:
    event, = parse(make(url), hook({"company_id": COMPANY, "resource": "client", "resource_id": 1121412,
                                    "status": "update", "data": CAPTURED_CLIENT}))
    assert (event.type, str(event.entity)) == ("client.updated", "client:1121412")
    assert event.delivery_id == "client:1121412:update@2020-05-01T08:00:00Z"
    assert event.data["phone"] == "+79211234567" and event.data["email"] == "123456789@gmail.com"
    assert (event.data["name"], event.data["categories"], event.data["category"]) == ("Василий", ["VIP"], "VIP")


def test_create_and_delete_webhooks(world: World, url: str) -> None:
    created, = parse(make(url), hook({"company_id": COMPANY, "resource": "record", "resource_id": 7,
                                      "status": "create", "data": {"attendance": 0, "last_change_date": PAST}}))
    deleted, = parse(make(url), hook({"company_id": COMPANY, "resource": "record", "resource_id": 7,
                                      "status": "delete", "data": {"deleted": True, "last_change_date": PAST}}))
    assert (created.type, created.data["status"]) == ("booking.created", "waiting")
    assert (deleted.type, deleted.data["status"]) == ("booking.deleted", "cancelled")
    assert created.delivery_id != deleted.delivery_id


def test_partial_data_is_completed_by_reading_the_record(world: World, url: str) -> None:
    rid = world.record["id"]
    booking = parse(make(url), hook({"company_id": COMPANY, "resource": "record", "resource_id": rid,
                                     "status": "update", "data": {"id": rid, "comment": "test"}}))[-1]
    assert api_calls(world.emu) == [("GET", f"/api/v1/record/{COMPANY}/{rid}")]
    assert booking.delivery_id == f"record:{rid}:update@2026-03-01T07:00:00Z"
    assert booking.data["comment"] == "первый визит" and booking.data["status"] == "waiting"  # the record as read
    world.emu.faults.update({"fail": {"status": 500, "count": 1}})
    partial, = parse(make(url), hook({"company_id": COMPANY, "resource": "record", "resource_id": rid,
                                      "status": "update", "data": {"comment": "again"}}))
    assert partial.delivery_id is None and partial.data["comment"] == "again" and "status" not in partial.data


def test_resources_the_rules_do_not_read_are_accepted_and_dropped(world: World, url: str) -> None:
    assert parse(make(url), hook({"company_id": COMPANY, "resource": "staff", "resource_id": 1, "status": "update",
                                  "data": {"name": "x"}})) == []


def test_the_secret_may_be_a_path_segment(world: World, url: str) -> None:
    body = {"company_id": COMPANY, "resource": "client", "resource_id": 1, "status": "update", "data": {}}
    assert len(parse(make(url), hook(body, token=None, path=f"/hooks/yc/{SECRET}"))) == 1


@pytest.mark.parametrize(("inbound", "status", "word"), [
    (hook({"company_id": COMPANY}, token=None), 401, "auth"),
    (hook({"company_id": COMPANY}, token="hook-secret-2"), 401, "auth"),
    (hook({"company_id": COMPANY}, token=None, path="/hooks/yc/wrong"), 401, "auth"),
    (hook(b"{not json"), 400, "malformed"),
    (hook([1, 2]), 400, "malformed"),
    (hook({"company_id": 1, "resource": "record", "resource_id": 1, "status": "update", "data": {}}), 400,
     "malformed"),
    (hook({"company_id": COMPANY, "resource": "record", "resource_id": 1, "status": "moved", "data": {}}), 400,
     "malformed"),
    (hook({"company_id": COMPANY, "resource": "record", "resource_id": "x", "status": "update", "data": {}}), 400,
     "malformed"),
    (hook({"company_id": COMPANY, "resource": "record", "resource_id": 1, "status": "update", "data": [1]}), 400,
     "malformed"),
])
def test_forged_and_malformed_webhooks_are_refused(world: World, url: str, inbound: Inbound, status: int,
                                                   word: str) -> None:
    with pytest.raises(InboundRejected) as caught:
        parse(make(url), inbound)
    assert (caught.value.status, caught.value.word) == (status, word)
    assert world.emu.calls == []


def test_an_admin_marking_attendance_in_the_ui_sends_the_webhook(world: World, url: str, hooks: Hooks,
                                                                  servers: tuple[Served, Swap, Served, Hooks]) -> None:
    control(url, "attendance", {"record_id": world.record["id"], "attendance": 1})
    inbound, = hooks.wait(1)
    sent = json.loads(inbound.body)
    assert set(sent) == {"company_id", "resource", "resource_id", "status", "data"}
    assert (sent["company_id"], sent["resource"], sent["resource_id"], sent["status"]) == \
        (COMPANY, "record", world.record["id"], "update")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0300", sent["data"]["last_change_date"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00", sent["data"]["datetime"])
    *_, booking, visit = parse(make(url), inbound)
    assert booking.data["status"] == "arrived" and visit.type == "visit.completed"
    servers[1].settled()  # the answer reaches the emulator just after the hook server has the body
    assert world.emu.webhooks[0]["status"] == 200


# ---- errors --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("faults", "error", "retry_after"), [
    ({"storm": {"status": 429, "count": 1, "retry_after": 7}}, Retryable, 7.0),
    ({"storm": {"status": 429, "count": 1}}, Retryable, None),
    ({"storm": {"status": 503, "count": 1, "retry_after": 3}}, Retryable, 3.0),
    ({"fail": {"status": 500, "count": 1}}, Retryable, None),
    ({"fail": {"status": 502, "count": 1}}, Retryable, None),
    ({"drop": 1}, Uncertain, None),
])
def test_error_classification(world: World, url: str, faults: dict[str, Any], error: type[Exception],
                              retry_after: float | None) -> None:
    world.emu.faults.update(faults)
    connector = make(url)
    if "drop" in faults:  # the aiohttp engine re-sends an idempotent GET on a dropped connection by itself
        connector = Yclients(connector.name, connector.config, transport=new_transport("httpx"))
    with pytest.raises(error) as caught:
        perform(connector, "booking.set_status", {"booking": world.record["id"], "status": "arrived"})
    if error is Retryable:
        assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert world.emu.records[world.record["id"]]["attendance"] == 0


def test_an_answer_past_the_deadline_is_uncertain(world: World, url: str) -> None:
    world.emu.faults.update({"delay": 0.3})
    connector = make(url)
    connector.deadline = 0.1
    with pytest.raises(Uncertain):
        perform(connector, "booking.set_status", {"booking": world.record["id"], "status": "arrived"})


@pytest.mark.parametrize(("settings", "message"), [
    ({"partner_token": "forged"}, "HTTP 401: Partner authorization failed"),
    ({"user_token": "forged"}, "HTTP 401: User authorization failed"),
    ({"company_id": 999}, "HTTP 403: No company management rights"),
])
def test_auth_failures_are_refused_with_the_message(world: World, url: str, settings: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(Rejected, match=message):
        perform(make(url, **settings), "booking.set_status", {"booking": world.record["id"], "status": "arrived"})


def mocked(status: int, body: bytes, headers: dict[str, str] | None = None) -> Yclients:
    reply = httpx.Response(status, content=body, headers={"content-type": "application/json", **(headers or {})})
    return Yclients("yc", {"company_id": COMPANY, "partner_token": "p", "user_token": "u", "hook_secret": "s"},
                    transport=httpx.MockTransport(lambda request: reply))


def test_success_false_with_http_200_is_refused() -> None:
    body = json.dumps({"success": False, "data": None, "meta": {"message": "Агрегатор не найден"}}).encode()
    with pytest.raises(Rejected, match="success=false: Агрегатор не найден"):
        perform(mocked(200, body), "yclients.loyalty_cards", {"client": 1})


def test_a_2xx_that_cannot_be_read_is_uncertain_and_a_4xx_refused() -> None:
    with pytest.raises(Uncertain):
        perform(mocked(200, b"<html>gateway</html>"), "yclients.loyalty_cards", {"client": 1})
    with pytest.raises(Rejected, match="HTTP 400"):
        perform(mocked(400, b"<html>bad</html>"), "yclients.loyalty_cards", {"client": 1})
    with pytest.raises(Retryable) as caught:
        perform(mocked(429, b"", {"Retry-After": "12"}), "yclients.loyalty_cards", {"client": 1})
    assert caught.value.retry_after == 12.0


def test_the_default_base_url_is_the_official_one() -> None:
    connector = Yclients("yc", {"company_id": COMPANY, "partner_token": "p", "user_token": "u", "hook_secret": "s"})
    assert connector.base_url() == "https://api.yclients.com/api/v1"


# ---- the emulator's answers against captured ones ------------------------------------------------------------

def test_error_envelopes_match_the_captured_bodies(world: World, url: str) -> None:
    good = make(url).default_headers()
    bare = WEB.get(f"{url}/api/v1/records/{COMPANY}", headers={"Accept": good["Accept"]})
    assert (bare.status_code, bare.json()) == (401, UNAUTHORIZED)
    other = WEB.get(f"{url}/api/v1/records/999", headers=good)
    assert (other.status_code, other.json()) == (403, NO_RIGHTS)
    missing = WEB.get(f"{url}/api/v1/record/{COMPANY}/1", headers=good)
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)
    no_accept = WEB.get(f"{url}/api/v1/records/{COMPANY}", headers={"Authorization": good["Authorization"]})
    assert no_accept.status_code == 406 and no_accept.json()["success"] is False
    tight = WEB.get(f"{url}/api/v1/records/{COMPANY}",
                      headers={**good, "Authorization": f"Bearer {PARTNER},User {USER}"})
    assert tight.status_code == 200


def test_the_emulated_record_has_the_captured_shape(world: World, url: str) -> None:
    got = WEB.get(f"{url}/api/v1/record/{COMPANY}/{world.record['id']}", headers=make(url).default_headers()).json()
    assert set(got) == {"success", "data", "meta"} and got["success"] is True and got["meta"] == []
    record = got["data"]
    assert set(CAPTURED_RECORD) <= set(record)
    assert set(CAPTURED_RECORD["client"]) <= set(record["client"])
    assert set(CAPTURED_RECORD["services"][0]) <= set(record["services"][0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["date"])
    client = WEB.get(f"{url}/api/v1/client/{COMPANY}/{world.anna['id']}", headers=make(url).default_headers()).json()["data"]
    assert set(CAPTURED_CLIENT) - {"sex"} <= set(client) and isinstance(client["phone"], int)
    assert client["categories"] == [{"id": world.regular["id"], "title": "Постоянный", "color": "#00ff00"}]


def test_records_list_filters_and_pages(world: World, url: str) -> None:
    headers = make(url).default_headers()
    for day in (3, 4, 5):
        control(url, "record", {"staff_id": world.master["id"], "services": [{"id": world.service["id"]}],
                                "datetime": f"2026-03-0{day}T10:00:00+03:00", "seance_length": 1800})
    page = WEB.get(f"{url}/api/v1/records/{COMPANY}", params={"count": 2, "page": 2, "start_date": "2026-03-02"},
                     headers=headers).json()
    assert page["meta"] == {"page": 2, "total_count": 4} and len(page["data"]) == 2
    assert [r["datetime"][:10] for r in page["data"]] == ["2026-03-04", "2026-03-05"]
    ranged = WEB.get(f"{url}/api/v1/records/{COMPANY}", params={"start_date": "2026-03-03", "end_date": "2026-03-04"},
                       headers=headers).json()
    assert [r["datetime"][:10] for r in ranged["data"]] == ["2026-03-03", "2026-03-04"]
    by_client = WEB.get(f"{url}/api/v1/records/{COMPANY}", params={"client_id": world.anna["id"]},
                          headers=headers).json()
    assert [r["id"] for r in by_client["data"]] == [world.record["id"]]


def test_clients_search_and_labels_by_query_params(world: World, url: str) -> None:
    headers = make(url).default_headers()
    found = WEB.post(f"{url}/api/v1/company/{COMPANY}/clients/search", headers=headers,
                       json={"page": 1, "page_size": 50, "fields": ["id", "name", "phone"], "operation": "AND",
                             "filters": [{"type": "quick_search", "state": {"value": "79161234567"}},
                                         {"type": "category", "state": {"value": [world.regular["id"]]}}]}).json()
    assert found == {"success": True, "data": [{"id": world.anna["id"], "name": "Анна", "phone": 79161234567}],
                     "meta": {"total_count": 1}}
    made = WEB.post(f"{url}/api/v1/labels/{COMPANY}", params={"title": "Новый", "color": "#111111", "entity": 1},
                      headers=headers)
    assert made.status_code == 201 and isinstance(made.json()["data"]["id"], str)


# ---- rate limit ----------------------------------------------------------------------------------------------

def test_a_burst_past_five_a_second_gets_the_429_envelope(world: World, url: str) -> None:
    headers = make(url).default_headers()
    with httpx.Client(trust_env=False, headers=headers) as client:
        codes = [client.get(f"{url}/api/v1/labels/{COMPANY}/1") for _ in range(6)]
    assert [c.status_code for c in codes] == [200] * 5 + [429]
    assert codes[-1].json() == {"success": False, "data": None, "meta": {"message": "Too many requests"}}


def test_two_hundred_a_minute() -> None:
    now = [0.0]
    emu = YclientsEmulator(company_id=COMPANY, partner_token=PARTNER, user_token=USER, clock=lambda: now[0])
    headers = {"Accept": yapi.ACCEPT, "Authorization": yapi.auth_header(PARTNER, USER)}

    async def burst() -> list[int]:
        codes = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(emu), base_url="http://yc") as client:
            for i in range(201):
                now[0] = i * 0.25  # 4 a second: within the per-second limit all along
                codes.append((await client.get(f"/api/v1/labels/{COMPANY}/1", headers=headers)).status_code)
            now[0] = 60.1  # the first requests have left the minute
            codes.append((await client.get(f"/api/v1/labels/{COMPANY}/1", headers=headers)).status_code)
        return codes
    codes = asyncio.run(burst())
    assert codes[:200] == [200] * 200 and codes[200] == 429 and codes[201] == 200


def test_the_pace_keeps_requests_under_both_limits() -> None:
    pace = Pace()
    sent = []
    now = 0.0
    for _ in range(400):  # everyone asks at once, then as soon as allowed
        now += pace.delay(now)
        pace.sent.append(now)
        sent.append(now)
    for i, moment in enumerate(sent):
        assert sum(1 for t in sent if moment - 1 < t <= moment) <= 5
        assert sum(1 for t in sent if moment - 60 < t <= moment) <= 200
    assert sent[4] == 0.0 and sent[5] == pytest.approx(1.05)
    busy = Pace()
    busy.sent.extend([time.monotonic()] * 200)
    with pytest.raises(Retryable) as caught:
        asyncio.run(busy.take(2.0, "list"))
    assert caught.value.retry_after is not None and caught.value.retry_after > 2.0


def test_the_declared_rate_limit_fits_the_contract() -> None:
    per_second, burst = Yclients.rate_limit  # type: ignore[misc]
    requests_per_action = 3  # set_status makes 2, set_category 3 (4 when it creates the category)
    assert (per_second + burst) * requests_per_action <= 5 * 2  # any second: the pace absorbs at most a second
    assert per_second * 60 * 3 <= 200  # a minute at the steady rate stays under 200 requests
    assert yapi.LIMITS[0][0] == 5 and yapi.LIMITS[1][0] == 200


# ---- catch-up polling ----------------------------------------------------------------------------------------

def test_poll_brings_changes_no_webhook_delivered_once_with_webhook_ids(world: World, url: str,
                                                                           hooks: Hooks) -> None:
    connector = make(url)
    first, cursor = run(connector, lambda c: c.poll(None))
    assert first == [] and cursor is not None and world.emu.calls == []
    control(url, "attendance", {"record_id": world.record["id"], "attendance": 2})
    made = control(url, "record", {"staff_id": world.master["id"], "services": [{"id": world.service["id"]}],
                                   "datetime": "2026-03-05T10:00:00+03:00", "seance_length": 1800,
                                   "client": {"phone": "+7 903 111-22-33", "name": "Борис"}})
    control(url, "delete_record", {"record_id": made["id"]})
    sent = hooks.wait(4)  # the new client Борис, then three record changes (none reached the daemon in time)
    from_hooks = [e.delivery_id for inbound in sent for e in parse(make(url), inbound) if e.type.startswith("booking.")]
    events, cursor2 = run(make(url), lambda c: c.poll(cursor))
    call = world.emu.calls[-1]
    assert (call.method, call.path) == ("GET", f"/api/v1/records/{COMPANY}")
    assert call.query["with_deleted"] == "1" and call.query["count"] == "300" and "changed_after" in call.query
    bookings = [e for e in events if e.type.startswith("booking.")]
    # The poll sees each record as it is now: the update, and the new record's deletion (its creation is past).
    assert [e.delivery_id for e in bookings] == [from_hooks[0], from_hooks[2]]
    assert {e.type for e in bookings} == {"booking.updated", "booking.deleted"}
    assert all(e.source == "yc" for e in events)
    again, cursor3 = run(make(url), lambda c: c.poll(cursor2))
    assert again == [] and cursor3 == cursor2
    control(url, "attendance", {"record_id": world.record["id"], "attendance": 1})
    later, _ = run(make(url), lambda c: c.poll(cursor3))
    assert [e.data["status"] for e in later if e.type == "booking.updated"] == ["arrived"]


def test_poll_reads_every_page(world: World, url: str) -> None:
    world.emu.hook_url = None  # the daemon was down: no webhook reached it
    _, cursor = run(make(url), lambda c: c.poll(None))
    state = json.loads(cursor)
    for i in range(305):
        made = world.emu.make_record({"staff_id": world.master["id"], "services": [{"id": world.service["id"]}],
                                      "datetime": f"2026-04-01T10:{i % 60:02d}:00+03:00", "seance_length": 600},
                                     notify=False)
        made["last_change_date"] = made["create_date"] = \
            datetime.fromisoformat(state["after"]).astimezone(world.emu.tz).strftime("%Y-%m-%dT%H:%M:%S%z")
    events, _ = run(make(url), lambda c: c.poll(cursor))
    assert [c.query["page"] for c in world.emu.calls] == ["1", "2"]
    assert len(events) == 305 and all(e.type == "booking.created" for e in events)


# ---- sandbox and settings ------------------------------------------------------------------------------------

def test_sandbox_settings_talk_to_an_emulator_whose_webhooks_parse(servers: tuple[Served, Swap, Served, Hooks]
                                                                   ) -> None:
    api_server, swap, hook_server, hooks = servers
    hooks.got.clear()
    Pace._by_host.clear()
    options = {"company_id": 555, "partner_token": "${env:YCLIENTS_PARTNER_TOKEN}",
               "user_token": "${env:YCLIENTS_USER_TOKEN}", "hook_secret": "${env:YCLIENTS_HOOK_SECRET}",
               "branch": "main"}
    settings, emulator = Yclients.sandbox("yc", options, base_url=api_server.url, hook_url=f"{hook_server.url}/hooks/yc")
    assert "${env:" not in json.dumps(settings) and settings["base_url"] == f"{api_server.url}/api/v1"
    assert {k: settings[k] for k in SANDBOX} == SANDBOX and settings["company_id"] == 555
    swap.app = emulator
    record = next(iter(emulator.records.values()))
    connector = Yclients("yc", settings)
    perform(connector, "booking.set_status", {"booking": record["id"], "status": "confirmed"})
    inbound, = hooks.wait(1)
    events = parse(Yclients("yc", settings), inbound)
    assert events[-1].data["status"] == "confirmed" and events[-1].data["branch"] == "main"
    assert events[-1].data["client"] is not None


def test_config_schema_requires_env_references_for_secrets() -> None:
    validator = Draft202012Validator(Yclients.config_schema)
    good = {"type": "yclients", "company_id": 307626, "partner_token": "${env:YCLIENTS_PARTNER_TOKEN}",
            "user_token": "${env:YCLIENTS_USER_TOKEN}", "hook_secret": "${env:YCLIENTS_HOOK_SECRET}",
            "poll_every": "5m", "branch": "main", "timezone": "Europe/Moscow"}
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({**good, "user_token": "plain-secret"}))
    assert list(validator.iter_errors({**good, "company_id": "abc"}))
    with pytest.raises(ConfigError, match="company_id"):
        Yclients("yc", {**good, "company_id": "abc"})
    with pytest.raises(ConfigError, match="timezone"):
        Yclients("yc", {**good, "timezone": "Mars/Olympus"})
    assert Yclients.poll_every == 300.0


@pytest.mark.parametrize(("raw", "e164"), [
    ("+77770220606", "+77770220606"), (79211234567, "+79211234567"), ("8 (916) 123-45-67", "+79161234567"),
    ("79161234567", "+79161234567"), ("", None), (None, None), ("12", None),
])
def test_phones_become_e164(raw: Any, e164: str | None) -> None:
    assert to_e164(raw) == e164


def test_captured_fixtures_are_not_changed_by_parsing(world: World, url: str) -> None:
    before = copy.deepcopy(CAPTURED_RECORD)
    parse(make(url), hook({"company_id": COMPANY, "resource": "record", "resource_id": 596792980,
                           "status": "update", "data": CAPTURED_RECORD}))
    assert CAPTURED_RECORD == before


def test_a_project_using_the_connector_validates(make_project: Callable[..., Any]) -> None:
    from automator.config.load import load_project
    from automator_connectors.local import LocalConnector

    config = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sat}
default_branch: main
connectors:
  crm: {type: local}
  booking:
    type: yclients
    company_id: 307626
    partner_token: "${env:YCLIENTS_PARTNER_TOKEN}"
    user_token: "${env:YCLIENTS_USER_TOKEN}"
    hook_secret: "${env:YCLIENTS_HOOK_SECRET}"
    branch: main
    poll_every: 5m
"""
    rules = """\
rules:
  - id: no-show
    when: {held: booking.status, is: waiting, until: end_of_day}
    do:
      - booking.set_status: {status: no_show}
  - id: vip
    when: {changed: booking.status, to: arrived}
    do:
      - client.set_category: {category: VIP}
      - yclients.loyalty_cards: {client: "{{ client.id }}"}
"""
    root = make_project(rules, config=config)
    project, problems = load_project(root, connector_types={"local": LocalConnector, "yclients": Yclients})
    assert problems == [] and project is not None
    (root / "automator.yaml").write_text(config.replace('"${env:YCLIENTS_USER_TOKEN}"', "plain-secret"))
    _, problems = load_project(root, connector_types={"local": LocalConnector, "yclients": Yclients})
    assert any("user_token" in p.message for p in problems)


class TestContract(ConnectorContract):
    type = "yclients"
    settings = {"company_id": COMPANY, "branch": "main"}
    written = {"company_id": COMPANY, "partner_token": "${env:YCLIENTS_PARTNER_TOKEN}",
               "user_token": "${env:YCLIENTS_USER_TOKEN}", "hook_secret": "${env:YCLIENTS_HOOK_SECRET}"}
    secret_settings = ("partner_token", "user_token", "hook_secret")

    def webhook(self, box: Sandbox, secret: str | None) -> Inbound:
        record = next(iter(box.emulator.records.values()))
        return hook({"company_id": COMPANY, "resource": "record", "resource_id": record["id"], "status": "update",
                     "data": record}, token=secret)

    def malformed(self, box: Sandbox) -> list[Inbound]:
        secret = self.secret(box)
        return [hook(b"{not json", secret), hook([1, 2], secret),
                hook({"company_id": COMPANY, "resource": "record", "resource_id": "x", "status": "update",
                      "data": {}}, secret)]

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        emu = box.emulator
        record = next(iter(emu.records.values()))
        client, master, service = record["client"]["id"], record["staff_id"], record["services"][0]["id"]
        spare = emu.make_record({"staff_id": master, "services": [{"id": service}], "seance_length": 3600,
                                 "datetime": "2026-03-03T18:00:00+03:00"}, notify=False)
        abonement = emu.add_abonement(client, "A-0001", 10)
        return {"booking.set_status": {"booking": record["id"], "status": "arrived"},
                "booking.create": {"client": client, "staff_id": master, "services": [service],
                                   "datetime": "2026-03-04T10:00:00+03:00"},
                "booking.cancel": {"booking": spare["id"]},
                "client.set_category": {"client": client, "category": "VIP"},
                "client.add_category": {"client": client, "category": "VIP"},
                "client.remove_category": {"client": client, "category": "VIP"},
                "client.update": {"client": client, "fields": {"comment": "из automator"}},
                "yclients.loyalty_cards": {"client": client},
                "loyalty.accrue": {"client": client, "amount": "150", "reason": "Бонусы за визит"},
                "loyalty.spend": {"client": client, "amount": "99.50", "reason": "Оплата баллами"},
                "loyalty.set_tier": {"client": client, "tier": "gold", "category": "VIP"},
                "yclients.certificates": {"client": client}, "yclients.abonements": {"client": client},
                "yclients.abonement_freeze": {"abonement": abonement["id"], "till": "2026-04-15"},
                "yclients.abonement_unfreeze": {"abonement": abonement["id"]}}

    async def change(self, box: Sandbox) -> None:
        record = next(iter(box.emulator.records.values()))
        async with httpx.AsyncClient(trust_env=False) as web:
            answer = await web.post(f"{box.url}/_emulator/attendance", json={"record_id": record["id"], "attendance": 2})
            assert answer.status_code == 200, answer.text
