"""The YCLIENTS depth of issue 13, against the emulator over real HTTP on 127.0.0.1: tier categories, client fields,
bookings made and cancelled, visits, the backfill of past visits; and what `validate` says of their params."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from automator.actions import CANONICAL
from automator.cli import cli
from automator.connector import ConfigError, Connector
from automator.errors import Rejected
from automator.model import Event
from automator_connectors.yclients import Yclients
from automator_connectors.yclients import categories
from connector_support import sandbox_test as run_sandbox_test
from test_yclients import (COMPANY, World, api_calls, hook, hooks, make, parse, perform, run, servers, url,  # noqa: F401
                           world)

TIERS = {"tier": ["VIP", "Постоянный", "Новый"]}


def tiered(url: str, **extra: Any) -> Yclients:
    return make(url, category_groups=TIERS, **extra)


def titles(world: World, client_id: int) -> list[str]:
    return [c["title"] for c in world.emu.clients[client_id]["categories"]]


@pytest.fixture
def allergy(world: World) -> dict[str, Any]:
    """Анна is Постоянный (a tier) and has an allergy (no tier) noted as a category by staff."""
    label = world.emu.add_label("Аллергия", "#ffff00")
    world.anna["categories"].append({"id": label["id"], "title": "Аллергия", "color": "#ffff00"})
    return label


# ---- categories ------------------------------------------------------------------------------------------------

def test_a_tier_change_leaves_one_tier_category(world: World, url: str, allergy: dict[str, Any]) -> None:
    cid = world.anna["id"]
    result = perform(tiered(url), "client.set_category", {"client": str(cid), "category": "vip"})
    assert api_calls(world.emu) == [("GET", f"/api/v1/labels/{COMPANY}/1"), ("GET", f"/api/v1/client/{COMPANY}/{cid}"),
                                    ("PUT", f"/api/v1/client/{COMPANY}/{cid}")]
    assert json.loads(world.emu.calls[-1].body)["labels"] == [allergy["id"], world.vip["id"]]
    assert titles(world, cid) == ["Аллергия", "VIP"]
    assert result.data == {"client": str(cid), "category": "vip", "category_id": str(world.vip["id"]),
                           "changed": True, "removed": ["Постоянный"]}
    event, = result.events
    assert event.type == "client.updated" and event.data["categories"] == ["Аллергия", "VIP"]
    # Promoted again to the tier it has: nothing is sent.
    again = perform(tiered(url), "client.set_category", {"client": str(cid), "category": "VIP"})
    assert again.data["changed"] is False and [m for m, _ in api_calls(world.emu)][-1] == "GET"


def test_set_category_of_a_category_in_no_group_adds_it(world: World, url: str, allergy: dict[str, Any]) -> None:
    perform(tiered(url), "client.set_category", {"client": world.anna["id"], "category": "Аллергия"})
    assert titles(world, world.anna["id"]) == ["Постоянный", "Аллергия"]  # already there: unchanged
    world.emu.add_label("Сертификат")
    perform(tiered(url), "client.set_category", {"client": world.anna["id"], "category": "Сертификат"})
    assert titles(world, world.anna["id"]) == ["Постоянный", "Аллергия", "Сертификат"]


def test_add_keeps_every_other_and_remove_drops_one(world: World, url: str, allergy: dict[str, Any]) -> None:
    cid = world.anna["id"]
    perform(tiered(url), "client.add_category", {"client": cid, "category": "VIP"})
    assert titles(world, cid) == ["Постоянный", "Аллергия", "VIP"]  # add is not set: the tier is not replaced
    result = perform(tiered(url), "client.remove_category", {"client": cid, "category": "постоянный "})
    assert titles(world, cid) == ["Аллергия", "VIP"] and result.data["removed"] == ["Постоянный"]
    calls = len(world.emu.calls)
    again = perform(tiered(url), "client.remove_category", {"client": cid, "category": "Постоянный"})
    assert again.data["changed"] is False and [m for m, _ in api_calls(world.emu)[calls:]] == ["GET", "GET"]


def test_a_category_the_company_has_not_is_refused_for_every_category_action(world: World, url: str) -> None:
    for action in ("client.set_category", "client.add_category", "client.remove_category"):
        with pytest.raises(Rejected, match=rf"{action}: company {COMPANY} has no client category 'Новый' \(its "
                                           r"client categories: VIP, Постоянный\)"):
            perform(tiered(url, create_categories=True) if action.endswith("remove_category") else tiered(url),
                    action, {"client": world.anna["id"], "category": "Новый"})
    assert {m for m, _ in api_calls(world.emu)} == {"GET"}


def test_a_client_given_by_phone_is_found_by_search_or_made(world: World, url: str) -> None:
    cid = world.anna["id"]
    perform(tiered(url), "client.set_category", {"client": "+79161234567", "category": "VIP"})
    search = world.emu.calls[1]
    assert (search.method, search.path) == ("POST", f"/api/v1/company/{COMPANY}/clients/search")
    assert json.loads(search.body)["filters"] == [{"type": "quick_search", "state": {"value": "79161234567"}}]
    assert titles(world, cid) == ["VIP"]
    # A person YCLIENTS does not know: made with the name the engine passes, then given the category.
    result = perform(tiered(url), "client.add_category",
                     {"client": "+79035550011", "client_name": "Олег", "category": "VIP"})
    made = next(c for c in world.emu.clients.values() if c["phone"] == 79035550011)
    assert made["name"] == "Олег" and titles(world, made["id"]) == ["VIP"] and result.data["client"] == str(made["id"])
    # Nobody to take a category from: nothing is made.
    gone = perform(tiered(url), "client.remove_category", {"client": "+79035550099", "category": "VIP"})
    assert gone.data["changed"] is False and not any(c["phone"] == 79035550099 for c in world.emu.clients.values())
    with pytest.raises(Rejected, match="a YCLIENTS client id or a phone in E.164, not 'anna'"):
        perform(tiered(url), "client.add_category", {"client": "anna", "category": "VIP"})


def test_a_near_phone_the_fuzzy_search_finds_is_not_the_client(world: World, url: str) -> None:
    # quick_search matches any part of a phone: 79051234567 is inside Ира's 79051234567890, whose last ten
    # digits are others. She is not the client: a new one is made.
    ira = world.emu.make_client({"name": "Ира", "phone": "79051234567890"}, notify=False)
    result = perform(tiered(url), "client.add_category", {"client": "+79051234567", "category": "VIP"})
    assert titles(world, ira["id"]) == [] and result.data["client"] != str(ira["id"])
    assert titles(world, int(result.data["client"])) == ["VIP"]


def test_edits_of_one_client_are_serialised(world: World, url: str, allergy: dict[str, Any]) -> None:
    # Each edit reads the client and PUTs it back whole: run together unserialised, the later PUT would drop
    # what the earlier one set. The outbox starts effects concurrently, so the connector orders them.
    connector = tiered(url)
    world.emu.faults.delay = 0.05

    async def both(c: Yclients) -> Any:
        return await asyncio.gather(c.perform("client.set_category", {"client": world.anna["id"], "category": "VIP"}, "a"),
                                    c.perform("client.remove_category",
                                              {"client": world.anna["id"], "category": "Аллергия"}, "b"))
    run(connector, both)
    assert titles(world, world.anna["id"]) == ["VIP"]
    assert len(connector.client_edits) == 0  # no lock outlives its edits


def test_a_request_is_counted_from_its_answer() -> None:
    # Eight actions in a row once drew a 429: a request that left at 0.0 reached the server late, so the sixth,
    # paced from 0.0, made six in the server's second. Counted from its answer, the window starts no earlier.
    from automator_connectors.yclients.api import Pace

    pace = Pace()
    pace.sent.extend([0.0, 0.1, 0.2, 0.3, 0.4])
    assert pace.delay(1.0) == pytest.approx(0.05)
    pace.answered(0.0, 0.5)
    assert list(pace.sent) == [0.1, 0.2, 0.3, 0.4, 0.5] and pace.delay(1.0) == pytest.approx(0.15)


def test_category_groups_are_a_validated_setting() -> None:
    schema = Draft202012Validator(Yclients.config_schema["properties"]["category_groups"])
    assert schema.is_valid({"tier": ["VIP", "Новый"]})
    assert not schema.is_valid({"tier": "VIP"}) and not schema.is_valid({"tier": []})
    assert not schema.is_valid({"tier": ["VIP", "VIP"]}) and not schema.is_valid({})
    with pytest.raises(ConfigError, match="category 'vip' is in two of `category_groups:`"):
        make("http://127.0.0.1:9", category_groups={"tier": ["VIP"], "status": ["vip"]})


def test_the_category_change_is_pure() -> None:
    labels = [{"id": 1, "title": "VIP"}, {"id": 2, "title": "Постоянный"}, {"id": 3, "title": "Аллергия"}]
    change = categories.change("set", labels[0], ["2", "3"], labels, TIERS)
    assert (change.ids, change.removed) == (["3", "1"], ["Постоянный"])
    assert categories.change("add", labels[0], ["2", "3"], labels, TIERS).ids == ["2", "3", "1"]
    assert categories.change("set", labels[0], ["2", "3"], labels, None).ids == ["2", "3", "1"]
    assert categories.change("remove", labels[2], ["2", "3"], labels, TIERS).ids == ["2"]


# ---- client.update ---------------------------------------------------------------------------------------------

def test_client_update_puts_the_client_back_whole_with_the_fields(world: World, url: str) -> None:
    cid = world.anna["id"]
    result = perform(make(url), "client.update", {"client": cid, "fields": {
        "surname": "Петрова", "birthday": "1991-02-03", "custom_fields": {"segment": "gold"}}})
    assert json.loads(world.emu.calls[-1].body) == {
        "name": "Анна", "surname": "Петрова", "patronymic": "", "phone": 79161234567, "email": "anna@example.com",
        "sex_id": 0, "importance_id": 0, "discount": 0, "card": "", "birth_date": "1991-02-03", "comment": "аллергия",
        "sms_check": 0, "sms_not": 0, "custom_fields": {"source": "instagram", "segment": "gold"},
        "labels": [world.regular["id"]]}
    stored = world.emu.clients[cid]
    assert (stored["surname"], stored["birth_date"], [c["title"] for c in stored["categories"]]) == \
        ("Петрова", "1991-02-03", ["Постоянный"])
    event, = result.events
    assert event.type == "client.updated" and (event.data["surname"], event.data["birthday"]) == \
        ("Петрова", "1991-02-03")


@pytest.mark.parametrize(("fields", "message"), [
    ({"phone": "+79000000000"}, "YCLIENTS clients have no field 'phone'"),
    ({"birth_date": "3 февраля"}, "a birthday is a date, yyyy-mm-dd, not '3 февраля'"),
    ({"custom_fields": "gold"}, "custom_fields is a mapping"),
])
def test_client_update_refuses_what_yclients_has_not(world: World, url: str, fields: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(Rejected, match=message):
        perform(make(url), "client.update", {"client": world.anna["id"], "fields": fields})
    assert "PUT" not in {m for m, _ in api_calls(world.emu)}


# ---- booking.create and booking.cancel -------------------------------------------------------------------------

def booking(world: World, **extra: Any) -> dict[str, Any]:
    return {"client": str(world.anna["id"]), "staff_id": world.master["id"], "services": [world.service["id"]],
            "datetime": "2026-03-16T12:00:00+03:00", **extra}


def test_booking_create_makes_the_record_with_the_effect_key_and_links_the_deal(world: World, url: str,
                                                                               hooks: Any) -> None:
    result = run(make(url), lambda c: c.perform("booking.create", booking(world, comment="Повторный приём",
                                                                           deal="501"), "effect-42"))
    post = world.emu.calls[-1]
    assert (post.method, post.path) == ("POST", f"/api/v1/records/{COMPANY}")
    assert json.loads(post.body) == {
        "staff_id": world.master["id"], "services": [{"id": world.service["id"]}],
        "client": {"phone": "79161234567", "name": "Анна", "surname": "Иванова", "email": "anna@example.com"},
        "datetime": "2026-03-16T12:00:00+03:00", "seance_length": 3600, "save_if_busy": False, "send_sms": False,
        "api_id": "effect-42", "comment": "Повторный приём"}
    made = max(world.emu.records.values(), key=lambda r: r["id"])
    assert made["api_id"] == "effect-42" and made["client"]["id"] == world.anna["id"]
    assert result.data == {"booking": str(made["id"]), "deal": "501"}
    client, created, linked = result.events
    assert client.type == "client.updated"
    assert (created.type, str(created.entity), created.data["deal"], created.data["client"]) == \
        ("booking.created", f"booking:{made['id']}", "501", str(world.anna["id"]))
    assert (linked.type, linked.data, linked.delivery_id) == ("booking.updated", {"deal": "501"}, "effect-42>deal")
    # YCLIENTS' own webhook of the new record: the same delivery id (the journal keeps one), without the deal.
    from_hook = parse(make(url), hooks.wait(1)[0])
    assert from_hook[1].delivery_id == created.delivery_id and "deal" not in from_hook[1].data


def test_booking_create_for_a_phone_and_a_busy_slot(world: World, url: str) -> None:
    result = perform(make(url), "booking.create", {
        "client": "+79035550011", "client_name": "Олег", "staff_id": world.master["id"],
        "services": [world.service["id"]], "datetime": "2026-03-16T12:00:00+03:00", "seance_length": 1800})
    made = world.emu.records[int(result.data["booking"])]
    assert made["client"]["name"] == "Олег" and made["seance_length"] == 1800
    with pytest.raises(Rejected, match="HTTP 422: Выбранное время занято"):
        perform(make(url), "booking.create", booking(world, datetime="2026-03-16T12:15:00+03:00"))
    with pytest.raises(Rejected, match="ISO 8601 time with an offset"):
        perform(make(url), "booking.create", booking(world, datetime="2026-03-16 12:00"))


def test_a_retried_create_finds_the_record_its_interrupted_try_made(world: World, url: str) -> None:
    params = booking(world)
    assert run(make(url), lambda c: c.recover("booking.create", params, "effect-7")) is None
    first = run(make(url), lambda c: c.perform("booking.create", params, "effect-7"))
    before = len(world.emu.records)
    found = run(make(url), lambda c: c.recover("booking.create", params, "effect-7"))
    assert found is not None and found.data == first.data and len(world.emu.records) == before
    assert found.events[-1].delivery_id == first.events[-1].delivery_id
    listed = world.emu.calls[-1]
    assert (listed.method, listed.query["staff_id"], listed.query["start_date"]) == \
        ("GET", str(world.master["id"]), "2026-03-16")


def test_booking_cancel_deletes_the_record_and_reports_it_as_its_webhook_does(world: World, url: str,
                                                                              hooks: Any) -> None:
    rid = world.record["id"]
    result = perform(make(url), "booking.cancel", {"booking": str(rid)})
    assert [m for m, _ in api_calls(world.emu)] == ["GET", "DELETE", "GET"]
    assert world.emu.records[rid]["deleted"] is True
    event, = result.events
    assert (event.type, event.data["status"], result.data["changed"]) == ("booking.deleted", "cancelled", True)
    # What the action is registered to answer with is what the connector reports (echoes and links go by it).
    assert CANONICAL["booking.cancel"].emits == (event.type,) == Yclients.actions["booking.cancel"].emits
    from_hook, = parse(make(url), hooks.wait(1)[0])
    assert from_hook.delivery_id == event.delivery_id
    again = perform(make(url), "booking.cancel", {"booking": str(rid)})
    assert again.data["changed"] is False and again.events == ()


# ---- visits and the backfill -----------------------------------------------------------------------------------

def test_an_arrived_visit_comes_with_what_was_paid(world: World, url: str, hooks: Any) -> None:
    from test_yclients import control

    control(url, "attendance", {"record_id": world.record["id"], "attendance": 1})
    *_, visit = parse(make(url, branch="main"), hooks.wait(1)[0])
    assert (visit.type, str(visit.entity)) == ("visit.completed", f"client:{world.anna['id']}")
    assert visit.data == {"visit": str(world.record["id"]), "booking": str(world.record["id"]),
                          "at": "2026-03-02T15:00:00+03:00", "branch": "main", "services": ["Стрижка"],
                          "staff": "Ирина", "amount": "4000.00", "currency": "RUB"}


def backfill(connector: Connector, since: datetime) -> list[Event]:
    async def collect(c: Connector) -> list[Event]:
        return [event async for event in c.backfill(since)]
    return run(connector, collect)  # type: ignore[arg-type]


def test_backfill_brings_each_client_then_their_visits(world: World, url: str) -> None:
    emu = world.emu
    boris = emu.make_client({"name": "Борис", "phone": "79031112233"}, notify=False)

    def visit(day: str, phone: str, attendance: int, paid: list[float] | None = None) -> dict[str, Any]:
        made = emu.make_record({"staff_id": world.master["id"], "services": [{"id": world.service["id"]}],
                                "datetime": f"{day}T11:00:00+03:00", "seance_length": 3600, "attendance": attendance,
                                "client": {"phone": phone}}, notify=False)
        for amount in paid or []:
            emu.pay(made, amount)
        return made

    visit("2025-12-20", "79161234567", 1)  # before `since`
    first = visit("2026-01-10", "79161234567", 1, [1500.5, 2499.5])
    visit("2026-01-12", "79031112233", -1)  # a no-show is no visit
    second = visit("2026-02-20", "79031112233", 1)
    third = visit("2026-02-25", "79161234567", 1, [4000])
    events = backfill(make(url, branch="main"), datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert [(e.type, str(e.entity)) for e in events] == [
        ("client.updated", f"client:{world.anna['id']}"), ("visit.completed", f"client:{world.anna['id']}"),
        ("client.updated", f"client:{boris['id']}"), ("visit.completed", f"client:{boris['id']}"),
        ("visit.completed", f"client:{world.anna['id']}")]
    assert events[0].data["phone"] == "+79161234567" and events[2].data["phone"] == "+79031112233"
    assert [(e.data["booking"], e.data["amount"]) for e in events if e.type == "visit.completed"] == [
        (str(first["id"]), "4000.00"), (str(second["id"]), "4000.00"), (str(third["id"]), "4000.00")]
    assert events[1].delivery_id == f"visit:record-{first['id']}:completed"
    # Read a month of visit dates at a time, with their payments.
    lists = [c.query for c in emu.calls if c.path == f"/api/v1/records/{COMPANY}"]
    assert lists[0]["start_date"] == "2026-01-01" and lists[0]["end_date"] == "2026-01-31"
    assert lists[1]["start_date"] == "2026-02-01"
    assert all(q["include_finance_transactions"] == "1" for q in lists)


def test_backfill_reads_every_page(world: World, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import automator_connectors.yclients as module
    from automator_connectors.yclients import api as yapi

    monkeypatch.setattr(yapi, "PAGE_SIZE", 2)
    monkeypatch.setattr(module, "PAGE_SIZE", 2)
    for minute in range(5):
        world.emu.make_record({"staff_id": world.master["id"], "services": [{"id": world.service["id"]}],
                               "datetime": f"2026-01-10T11:{minute:02d}:00+03:00", "seance_length": 60,
                               "attendance": 1, "client": {"phone": "79161234567"}}, notify=False)
    events = backfill(make(url), datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert [e.type for e in events].count("visit.completed") == 5
    assert [e.type for e in events].count("client.updated") == 1
    pages = [c.query["page"] for c in world.emu.calls if c.query.get("start_date") == "2026-01-01"]
    assert pages == ["1", "2", "3"]


def test_a_connector_without_history_says_so() -> None:
    class Plain(Connector):
        type = "plain"

    assert Yclients.can_backfill() and not Plain.can_backfill()

    async def first() -> None:
        async for _ in Plain("p", {}).backfill(datetime(2026, 1, 1, tzinfo=timezone.utc)):
            pass
    with pytest.raises(NotImplementedError, match="connector 'p' \\(plain\\) has no history to backfill"):
        asyncio.run(first())


# ---- validate ---------------------------------------------------------------------------------------------------

CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sun}
default_branch: main
connectors:
  booking: {type: yclients, company_id: 307626, partner_token: "${env:YC_P}", user_token: "${env:YC_U}",
            hook_secret: "${env:YC_H}", branch: main, category_groups: {tier: [VIP, Постоянный, Новый]}}
  forms: {type: local, secret: "${env:FORMS_SECRET}",
          events: {loyalty.tier: {entity: client, data: {tier: text}}, loyalty.check: {entity: client}}}
"""


def validate(tmp_path: Path, *steps: str) -> tuple[int, list[str]]:
    (tmp_path / "automator.yaml").write_text(CONFIG)
    (tmp_path / "rules").mkdir(exist_ok=True)
    body = "".join(f"      - {step}\n" for step in steps)
    (tmp_path / "rules" / "main.yaml").write_text(
        f"rules:\n  - id: r\n    when: {{changed: booking.status, to: arrived}}\n    do:\n{body}")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)], catch_exceptions=False)
    return result.exit_code, [line.replace(f"{tmp_path}/", "") for line in result.output.splitlines() if line.strip()]


def test_validate_accepts_the_new_actions_as_yclients_takes_them(tmp_path: Path) -> None:
    code, out = validate(tmp_path, "client.set_category: {category: Новый}", "client.add_category: {category: VIP}",
                         'client.remove_category: {category: VIP, client: "+79161234567"}',
                         "client.update: {fields: {email: a@b.ru, birthday: 1990-05-01, custom_fields: {src: ig}}}",
                         "booking.create: {staff_id: 2835418, services: [5034676], datetime: "
                         "\"2026-03-15T12:00:00+03:00\", seance_length: 1800}",
                         "booking.cancel: {}")
    assert code == 0, out


def test_validate_warns_of_a_set_category_in_no_group(tmp_path: Path) -> None:
    code, out = validate(tmp_path, "client.set_category: {category: Аллергия}")
    assert code == 0
    assert out[:2] == [
        "rules/main.yaml:5:41: warning: 'Аллергия' is in no group of connector 'booking' `category_groups:`, so "
        "client.set_category only adds it, replacing nothing",
        "    hint: write client.add_category for a category beside the others, or put it in its group in "
        "`category_groups:`"]


def test_validate_names_what_yclients_would_refuse(tmp_path: Path) -> None:
    code, out = validate(tmp_path, "client.update: {fields: {emial: a@b.ru, birthday: 3 февраля}}",
                         "booking.create: {staff_id: Ирина, services: [5034676, x], datetime: завтра, "
                         "seance_length: 60}")
    assert code == 1
    errors = [line for line in out if ": error: " in line]
    assert errors == [
        "rules/main.yaml:5:34: error: YCLIENTS clients have no field 'emial'",
        "rules/main.yaml:5:59: error: a birthday is a date, yyyy-mm-dd, not '3 февраля'",
        "rules/main.yaml:6:36: error: a YCLIENTS staff member's id is a number, not 'Ирина'",
        "rules/main.yaml:6:63: error: a YCLIENTS service's id is a number, not 'x'",
        "rules/main.yaml:6:77: error: 'завтра' is not an ISO 8601 time with an offset",
        "rules/main.yaml:6:100: error: a booking's length is whole seconds, at least 300, not '60'"]
    assert "did you mean 'email'?" in out[out.index(errors[0]) + 1]


def test_validate_names_a_missing_required_booking_field(tmp_path: Path) -> None:
    code, out = validate(tmp_path, "booking.create: {staff_id: 2835418, datetime: \"2026-03-15T12:00:00+03:00\"}")
    assert code == 1 and out[0].startswith("rules/main.yaml:5:") and "services" in out[0]


# ---- the done-when, through `automator test --sandbox` ------------------------------------------------------------

TIER_RULES = """\
rules:
  - id: promote
    when: {event: loyalty.tier}
    do:
      - client.set_category: {category: "{{ event.tier }}"}
        via: booking
  - id: report
    when: {event: loyalty.check}
    do:
      - notify: {to: admin, text: "{{ len(client.categories) }} categories; vip: {{ contains(client.categories, 'VIP') }}, regular: {{ contains(client.categories, 'Постоянный') }}, allergy: {{ contains(client.categories, 'Аллергия') }}"}
"""

TIER_TEST = """\
name: a tier change leaves one tier category
load: ..
now: 2026-03-02T10:00:00+03:00
given:
  - {kind: client, id: 77, name: Анна, phone: "+79161234567", categories: [Постоянный, Аллергия]}
when:
  - {event: loyalty.tier, entity: {kind: client, id: 77}, data: {tier: VIP}}
  - {event: loyalty.check, entity: {kind: client, id: 77}}
expect:
  - {action: client.set_category, params: {category: VIP}, count: 1}
  - {action: notify, params: {text: "%s"}, count: 1}
"""


def sandbox_test(tmp_path: Path, expected: str) -> tuple[int, str]:
    return run_sandbox_test(tmp_path, CONFIG, TIER_RULES, TIER_TEST % expected)


def test_a_tier_change_leaves_one_tier_category_through_the_sandbox(tmp_path: Path) -> None:
    # Постоянный gives way to VIP; the allergy staff noted as a category stays. What the client has afterwards is
    # what YCLIENTS' emulator answered the PUT with, read into the store from the action's client.updated.
    assert sandbox_test(tmp_path, "2 categories; vip: true, regular: false, allergy: true") == \
        (0, "1 passed, 0 failed\n")


def test_the_sandbox_test_fails_when_tiers_pile_up(tmp_path: Path) -> None:
    # The expectation of a client who kept Постоянный beside VIP fails: the test above can fail.
    code, out = sandbox_test(tmp_path, "3 categories; vip: true, regular: true, allergy: true")
    assert code == 1 and "2 categories; vip: true, regular: false, allergy: true" in out
