"""Issue 13's amoCRM depth against the emulator over real HTTP: lead tags and lead source, contacts read (webhooks)
and written (contact.update), the contact found by phone for deal.create, deal.assign to a user or a role, notes,
and task completion as `task.completed`; and what `validate` says of these actions' params."""
from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from automator.actions import expected_echo
from automator.errors import Rejected
from automator.model import EntityRef
from automator_connectors.amocrm import Amocrm
from cli_support import invoke
from test_amocrm import TS, World, inbound, servers  # noqa: F401 - servers is the module's fixture

__all__ = ["servers"]


def manager(world: World, what: str, body: dict[str, Any]) -> dict[str, Any]:
    """A change made by hand in the amoCRM UI (the emulator's control route), which sends its webhook."""
    async def go() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False) as web:
            answer = await web.post(f"{world.url}/_emulator/{what}", json=body)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())
    return asyncio.run(go())


def made_lead(world: World, **fields: Any) -> str:
    """A lead made through deal.create (its contact found or created by the phone given as `contact`)."""
    params = {"pipeline": "sales", "stage": "new", "title": "Анна", "contact": "+79161234567", **fields}
    result = world.run(lambda c: c.perform("deal.create", params, "made-lead"))
    return str(result.data["id"])


# ---- leads: contact, tags, lead source ---------------------------------------------------------------------------

def test_a_deal_reports_its_main_contact_as_contact_found_by_the_phone_the_engine_passes(servers: Any) -> None:
    world = World(servers)
    manager(world, "lead", {"name": "чужая сделка"})  # a lead without contacts: not a match for anything
    world.emulator.records.add_contact({"name": "Анна", "custom_fields_values": [
        {"field_code": "PHONE", "values": [{"value": "8 (916) 123-45-67", "enum_code": "WORK"}]}]})
    known = next(iter(world.emulator.records.contacts))

    async def go(c: Amocrm) -> Any:
        found = await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "Анна",
                                                "contact": "+79161234567"}, "k1")
        made = await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "Ольга",
                                               "contact": "+79035550011"}, "k2")
        return found, made
    found, made = world.run(go)
    assert found.events[0].data["contact"] == str(known) and "client" not in found.events[0].data
    created = world.emulator.records.contacts[int(made.events[0].data["contact"])]
    assert created["custom_fields_values"][0]["values"] == [{"value": "+79035550011", "enum_code": "MOB"}]
    lead = world.emulator.records.leads[int(found.data["id"])]
    assert lead["contacts"] == [{"id": known, "is_main": True}]


def test_deal_update_replaces_the_tags_and_sets_the_utm_source_and_the_webhook_reports_both(servers: Any) -> None:
    world = World(servers)
    lead = made_lead(world, fields={"tags": ["новый"]})
    params = {"deal": lead, "fields": {"tags": ["VIP", "повторный"], "utm_source": "yandex",
                                       "utm_campaign": "spring"}}
    result = world.run(lambda c: c.perform("deal.update", params, "k"))

    [patch] = [c for c in world.calls("PATCH")]
    assert patch.json() == {"_embedded": {"tags": [{"name": "VIP"}, {"name": "повторный"}]},
                            "custom_fields_values": [
                                {"field_code": "UTM_SOURCE", "values": [{"value": "yandex"}]},
                                {"field_code": "UTM_CAMPAIGN", "values": [{"value": "spring"}]}]}
    assert [t["name"] for t in world.emulator.records.leads[int(lead)]["tags"]] == ["VIP", "повторный"]
    hook = world.receiver.one(3, "leads[update]")  # contacts[add], leads[add], leads[update]
    [event] = world.connector.parse(hook)
    assert event.delivery_id == result.events[0].delivery_id  # the answer and the webhook are one change
    assert event.data["tags"] == ["VIP", "повторный"]
    assert (event.data["utm_source"], event.data["utm_campaign"]) == ("yandex", "spring")
    assert result.events[0].data["tags"] == ["VIP", "повторный"]

    polled, _ = world.run(lambda c: c.poll(f"{TS - 10 ** 9}"))
    assert polled[-1].data["tags"] == ["VIP", "повторный"] and polled[-1].data["utm_source"] == "yandex"


def test_tags_must_be_a_list_and_nothing_is_sent_otherwise(servers: Any) -> None:
    world = World(servers)
    with pytest.raises(Rejected, match="list of tag names"):
        world.run(lambda c: c.perform("deal.update", {"deal": "1", "fields": {"tags": "VIP, повторный"}}, "k"))
    assert world.calls() == []


# ---- contacts ----------------------------------------------------------------------------------------------------

def test_contact_webhooks_are_client_events_with_canonical_fields(servers: Any) -> None:
    world = World(servers)
    lead = made_lead(world)
    contact = next(iter(world.emulator.records.contacts))
    manager(world, "contact", {"contact": contact, "name": "Анна Иванова", "responsible_user_id": 555,
                               "custom_fields_values": [{"field_code": "EMAIL", "values": [{"value": "a@b.ru"}]}],
                               "_embedded": {"tags": [{"name": "постоянный"}]}})
    events = [e for h in world.receiver.wait(3) for e in world.connector.parse(h)]
    assert [e.type for e in events if e.type.startswith("client.")] == ["client.created", "client.updated"]
    updated = events[-1] if events[-1].type == "client.updated" else next(e for e in events
                                                                           if e.type == "client.updated")
    assert updated.entity == EntityRef("client", str(contact))
    assert updated.data == {"name": "Анна Иванова", "phone": "+79161234567", "email": "a@b.ru", "responsible": "555",
                            "tags": ["постоянный"], "modified_by": "2079676"}  # the manager who edited it
    assert lead


def test_a_contact_webhook_without_field_codes_is_read_by_the_fields_names() -> None:
    body = urlencode([("contacts[update][0][id]", "77"), ("contacts[update][0][name]", "Анна"),
                      ("contacts[update][0][last_modified]", "1772442000"),
                      ("contacts[update][0][responsible_user_id]", "9"),
                      ("contacts[update][0][custom_fields][0][id]", "264911"),
                      ("contacts[update][0][custom_fields][0][name]", "Телефон"),
                      ("contacts[update][0][custom_fields][0][values][0][value]", "8 916 123-45-67"),
                      ("contacts[update][0][custom_fields][0][values][0][enum]", "1"),
                      ("account[subdomain]", "apfitness")])
    from test_amocrm import connector
    [event] = connector().parse(inbound(body))
    assert (event.type, event.delivery_id) == ("client.updated", "contact:77@1772442000")
    assert event.data == {"name": "Анна", "phone": "+79161234567", "responsible": "9", "tags": []}


def test_contact_update_sets_fields_keeping_the_other_phones_and_reports_the_webhooks_change(servers: Any) -> None:
    world = World(servers, roles={"senior": 777})
    made_lead(world)
    contact = str(next(iter(world.emulator.records.contacts)))
    params = {"contact": contact, "fields": {"phone": "8 903 555-00-11", "email": "anna@example.com",
                                             "responsible": "senior", "tags": ["VIP"], "name": "Анна Иванова"}}
    result = world.run(lambda c: c.perform("contact.update", params, "k"))

    kept = world.emulator.records.contacts[int(contact)]
    phones = next(cf for cf in kept["custom_fields_values"] if cf["field_code"] == "PHONE")["values"]
    assert [v["value"] for v in phones] == ["+79035550011", "+79161234567"]  # the new one first, the old kept
    assert kept["responsible_user_id"] == 777 and kept["name"] == "Анна Иванова"
    [event] = result.events
    assert event.type == "client.updated" and event.entity == EntityRef("client", contact)
    assert event.data == {"name": "Анна Иванова", "phone": "+79035550011", "email": "anna@example.com",
                          "responsible": "777", "tags": ["VIP"], "modified_by": "123123"}
    hook = world.receiver.one(3, "contacts[update]")
    assert [e.delivery_id for e in world.connector.parse(hook)] == [event.delivery_id]


def test_contact_update_by_phone_creates_the_contact_none_has_and_refuses_unknown_fields_first(servers: Any) -> None:
    world = World(servers)
    result = world.run(lambda c: c.perform("contact.update", {"contact": "+79035550011",
                                                              "fields": {"name": "Ольга"}}, "k"))
    [contact] = world.emulator.records.contacts.values()
    assert result.data["id"] == str(contact["id"]) and contact["name"] == "Ольга"
    calls = len(world.calls())
    with pytest.raises(Rejected, match="contact_fields"):
        world.run(lambda c: c.perform("contact.update", {"contact": str(contact["id"]),
                                                         "fields": {"colour": "red"}}, "k2"))
    assert [c.method for c in world.calls()[calls:]] == ["GET"]  # read, then refused: nothing written


def test_contact_fields_setting_maps_a_custom_field_of_contacts(servers: Any) -> None:
    world = World(servers, contact_fields={"birthday": {"id": 700100, "type": "date"}})
    made_lead(world)
    contact = str(next(iter(world.emulator.records.contacts)))
    result = world.run(lambda c: c.perform("contact.update", {"contact": contact,
                                                              "fields": {"birthday": "1990-05-01"}}, "k"))
    assert result.events[0].data["birthday"] == "1990-05-01T00:00:00+00:00"


# ---- deal.assign, note.add ---------------------------------------------------------------------------------------

def test_deal_assign_gives_the_lead_to_a_role_or_a_user_and_echoes_its_responsible(servers: Any) -> None:
    world = World(servers, roles={"senior": 777})
    lead = made_lead(world)

    async def go(c: Amocrm) -> Any:
        return [await c.perform("deal.assign", {"deal": lead, "to": to}, f"k-{to}") for to in ("senior", 555)]
    by_role, by_id = world.run(go)
    assert world.emulator.records.leads[int(lead)]["responsible_user_id"] == 555
    assert by_role.events[0].data == {"responsible": "777"} and by_id.data["responsible"] == "555"
    hooks = [e for h in world.receiver.wait(4) for e in world.connector.parse(h) if e.type == "deal.updated"]
    assert {e.delivery_id for e in hooks} == {by_role.events[0].delivery_id, by_id.events[0].delivery_id}
    assert expected_echo("deal.assign", {"deal": lead, "to": 555}) == (EntityRef("deal", lead),
                                                                       {"responsible": "555"})
    # A role's user id is the connector's to know: nothing is expected before the call (a manager's change within
    # the window would pass for ours); the answer's delivery id, shared with the webhook (above), recognises it.
    assert expected_echo("deal.assign", {"deal": lead, "to": "senior"}) is None
    with pytest.raises(Rejected, match="roles"):
        world.run(lambda c: c.perform("deal.assign", {"deal": lead, "to": "nobody"}, "k"))


def test_note_add_puts_a_common_note_on_the_contact_else_the_lead(servers: Any) -> None:
    world = World(servers)
    lead = made_lead(world)
    contact = str(next(iter(world.emulator.records.contacts)))

    async def go(c: Amocrm) -> Any:
        on_lead = await c.perform("note.add", {"deal": lead, "text": "Просил перезвонить"}, "n1")
        on_contact = await c.perform("note.add", {"deal": lead, "contact": contact, "text": "VIP"}, "n2")
        return on_lead, on_contact
    on_lead, on_contact = world.run(go)
    notes = world.emulator.state()["notes"]
    assert [(n["entity_type"], str(n["entity_id"]), n["note_type"], n["params"]) for n in notes] == [
        ("leads", lead, "common", {"text": "Просил перезвонить"}), ("contacts", contact, "common", {"text": "VIP"})]
    assert on_lead.data == {"id": str(notes[0]["id"]), "deal": lead} and on_contact.data["contact"] == contact
    posted = [c for c in world.calls("POST") if c.path.endswith("/notes")]
    assert posted[0].path == f"/api/v4/leads/{lead}/notes"
    assert posted[0].json() == [{"note_type": "common", "params": {"text": "Просил перезвонить"}, "request_id": "n1"}]
    with pytest.raises(Rejected, match="NotFound"):  # amoCRM's validation error for a lead it does not have
        world.run(lambda c: c.perform("note.add", {"lead": "1", "text": "x"}, "n3"))


# ---- task.completed ----------------------------------------------------------------------------------------------

def test_a_task_completed_in_amocrm_is_one_task_completed_event_with_its_deal(servers: Any) -> None:
    world = World(servers)
    lead = made_lead(world)
    contact = str(next(iter(world.emulator.records.contacts)))

    async def go(c: Amocrm) -> Any:
        on_deal = await c.perform("task.create", {"title": "Перезвонить", "assignee": "admin", "deal": lead}, "t1")
        on_contact = await c.perform("task.create", {"title": "Поздравить", "assignee": "admin",
                                                     "client": contact}, "t2")
        return on_deal.data["id"], on_contact.data["id"]
    on_deal, on_contact = world.run(go)
    manager(world, "complete", {"task": int(on_deal), "result": {"text": "Записан на 15.03"}})
    manager(world, "complete", {"task": int(on_deal), "result": {"text": "Записан на 16.03"}})  # edited after
    manager(world, "complete", {"task": int(on_contact)})
    # contacts[add], leads[add], 2 × task[add], 3 × task[update]
    events = [e for h in world.receiver.wait(7) for e in world.connector.parse(h) if e.type == "task.completed"]
    assert [(e.entity, e.delivery_id) for e in events] == [
        (EntityRef("task", on_deal), f"task:{on_deal}:completed"),
        (EntityRef("task", on_deal), f"task:{on_deal}:completed"),  # one delivery id: journaled once
        (EntityRef("task", on_contact), f"task:{on_contact}:completed")]
    assert events[0].data["deal"] == lead and events[0].data["title"] == "Перезвонить"
    assert events[0].data["responsible"] == "555" and events[0].data["completed_at"].endswith("+00:00")
    assert events[2].data["contact"] == contact and "deal" not in events[2].data


def test_task_webhooks_under_either_key_report_only_completed_tasks() -> None:
    from test_amocrm import connector

    def item(key: str, status: str) -> str:
        return urlencode([(f"{key}[update][0][id]", "4745251"), (f"{key}[update][0][element_id]", "10185151"),
                          (f"{key}[update][0][element_type]", "2"), (f"{key}[update][0][text]", "Перезвонить"),
                          (f"{key}[update][0][status]", status), (f"{key}[update][0][last_modified]", "1759600800"),
                          ("account[subdomain]", "apfitness")])
    assert connector().parse(inbound(item("task", "0"))) == []
    [singular] = connector().parse(inbound(item("task", "1")))
    [plural] = connector().parse(inbound(item("tasks", "1")))
    assert singular.delivery_id == plural.delivery_id == "task:4745251:completed"
    assert singular.data == {"deal": "10185151", "title": "Перезвонить", "completed_at": "2025-10-04T18:00:00+00:00"}


# ---- validate ----------------------------------------------------------------------------------------------------

def test_validate_reports_what_amocrm_would_refuse_in_the_new_actions(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text(textwrap.dedent("""\
        timezone: Europe/Moscow
        connectors:
          crm: {type: amocrm, subdomain: clinic, token: "${env:AMO}", hook_secret: "${env:AMO_HOOK}",
                users: {olga: 42}, roles: {senior: 7}}
        """))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "main.yaml").write_text(textwrap.dedent("""\
        rules:
          - id: r
            when: {event: deal.created}
            do:
              - deal.assign: {deal: "{{ deal.id }}", to: boss}
              - deal.assign: {to: senior}
              - note.add: {deal: "{{ deal.id }}", contact: "{{ deal.contact }}", text: x}
              - contact.update: {contact: "{{ deal.contact }}", fields: {colour: red, tags: VIP}}
              - deal.update: {deal: "{{ deal.id }}", fields: {tags: [VIP], utm_source: yandex}}
        """))
    code, out = invoke("validate", str(tmp_path))
    assert code == 1
    lines = [line.replace(f"{tmp_path}/", "") for line in out.splitlines() if ": error: " in line]
    assert lines == [
        "rules/main.yaml:5:50: error: to 'boss' is neither a name under `users:` or `roles:` of connector 'crm' "
        "(amocrm) nor an amoCRM user id",
        "rules/main.yaml:7:52: error: note.add names deal and contact: amoCRM puts a note on one record",
        "rules/main.yaml:8:66: error: connector 'crm' (amocrm) has no contact field for 'colour'",
        "rules/main.yaml:8:85: error: tags must be a list of tag names, such as [VIP, повторный], not 'VIP'"]


def test_validate_takes_a_contact_update_for_the_runs_client(tmp_path: Path) -> None:
    # The run's client is a person: the engine sends amoCRM its own contact id of them, or their phone (identity.py),
    # never the YCLIENTS id, so no `contact:` is needed.
    from test_connector_checks import rule, validate

    code, out, _ = validate(tmp_path, rule("{contact.update: {fields: {email: a@b.ru}}, via: amo}"))
    assert code == 0, out
    code, out, _ = validate(tmp_path, rule('{contact.update: {contact: "{{ client.phone }}", fields: {email: a@b.ru}}, '
                                           "via: amo}"))
    assert code == 0, out
