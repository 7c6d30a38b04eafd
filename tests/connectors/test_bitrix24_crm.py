"""The bitrix24 connector's CRM depth against its emulator over real HTTP: contacts read (client.* events, a deal's
contact before the deal) and written (contact.update's multifield semantics), deal/lead.assign, note.add,
task.completed from ONTASKUPDATE; their validate-time checks and `automator test --sandbox` through the CLI."""
from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner

from automator.actions import expected_echo
from automator.cli import cli
from automator.errors import Rejected
from automator.model import same
from automator_connectors.bitrix24 import Bitrix24
from automator_connectors.bitrix24.emulator import Bitrix24Emulator
from test_bitrix24 import TOKEN, Sink, emu, rest_calls, run, server, sink, wait_hooks  # noqa: F401
from test_bitrix24_events import REAL_TASK, body_of, control, inbound
from test_test_sandbox import PIPELINE  # the rehab pipeline: new, called, booked

NOW = datetime.now(timezone.utc)


def _contact(emu: Bitrix24Emulator, **fields: Any) -> str:
    """A contact a manager made in the portal (its ONCRMCONTACTADD sent), by id."""
    return str(control(emu, "manager/contact", {"fields": fields})["id"])


def _hook_events(emu: Bitrix24Emulator, sink: Sink, count: int, **settings: Any) -> list[list[Any]]:
    """The first `count` webhooks the emulator sent, each read by the connector's parse."""
    hooks = wait_hooks(sink, count)[:count]

    async def each(c: Bitrix24) -> list[list[Any]]:
        return [await c.parse(inbound(body_of(hook))) for hook in hooks]
    return run(emu, each, **settings)


# ---- contacts in ------------------------------------------------------------------------------------------

def test_contact_webhooks_are_client_events_with_canonical_data(emu: Bitrix24Emulator, sink: Sink) -> None:
    contact = _contact(emu, NAME="Анна", LAST_NAME="Иванова", SOURCE_ID="WEB", ASSIGNED_BY_ID=6,
                       BIRTHDATE="1990-05-01T00:00:00+03:00", UF_CRM_CARD="A-17",
                       PHONE=[{"VALUE": "8 (916) 123-45-67", "VALUE_TYPE": "MOBILE"}],
                       EMAIL=[{"VALUE": "anna@example.com", "VALUE_TYPE": "WORK"}])
    emu.skew += 2
    control(emu, "manager/contact-update", {"id": contact, "fields": {"POST": "врач"}})
    [[created], [updated]] = _hook_events(emu, sink, 2, contact_fields={"card": "UF_CRM_CARD"})
    row = emu.state()["contacts"][0]
    assert (created.type, created.entity.id, created.delivery_id) == (
        "client.created", contact, f"contact:{contact}@{row['DATE_CREATE']}")
    assert (updated.type, updated.delivery_id) == ("client.updated", f"contact:{contact}@{row['DATE_MODIFY']}")
    assert {k: updated.data[k] for k in ("name", "last_name", "phone", "phones", "email", "responsible",
                                         "lead_source", "birthday", "card", "post")} == {
        "name": "Анна", "last_name": "Иванова", "phone": "+79161234567", "phones": ["+79161234567"],
        "email": "anna@example.com", "responsible": "6", "lead_source": "WEB", "birthday": "1990-05-01",
        "card": "A-17", "post": "врач"}
    assert created.caused_by is None  # a manager's contact, not ours


def test_a_deals_contact_comes_first_read_in_the_same_batch(emu: Bitrix24Emulator, sink: Sink) -> None:
    contact = _contact(emu, NAME="Анна", PHONE=[{"VALUE": "+79161234567", "VALUE_TYPE": "MOBILE"}])
    emu.skew += 2
    deal = control(emu, "manager/deal", {"fields": {"TITLE": "Иванова", "CATEGORY_ID": 4, "CONTACT_ID": contact}})["id"]
    emu.calls.clear()
    [[from_contact], [of_deal, made]] = _hook_events(emu, sink, 2)
    assert [c.path.rsplit("/", 1)[-1] for c in emu.calls if c.path.startswith("/rest/")] == [
        "crm.contact.get", "batch"]  # the contact's own webhook, then one request for the deal and its contact
    assert (of_deal.type, of_deal.entity.id, of_deal.data["phone"]) == ("client.created", contact, "+79161234567")
    # The contact read with its deal is the same report as its own webhook: the journal keeps one.
    assert (of_deal.id, of_deal.delivery_id) == (from_contact.id, from_contact.delivery_id)
    assert (made.type, made.entity.id, made.data["contact"]) == ("deal.created", str(deal), contact)
    assert "client" not in made.data  # the journal adds the person


def test_a_contact_our_deal_create_made_is_its_echo(emu: Bitrix24Emulator, sink: Sink) -> None:
    run(emu, lambda c: c.perform("deal.create", {"pipeline": "rehabilitation", "stage": "new", "title": "T",
                                                 "contact": "+7 916 123-45-67"}, "run-9/do/0"))
    [[contact], [_, deal]] = _hook_events(emu, sink, 2)
    assert (contact.type, contact.caused_by, contact.data["phone"]) == ("client.created", "run-9/do/0", "+79161234567")
    assert deal.caused_by == "run-9/do/0" and deal.data["contact"] == contact.entity.id


# ---- contact.update ---------------------------------------------------------------------------------------

def test_contact_update_replaces_the_main_phone_and_adds_nothing_twice(emu: Bitrix24Emulator) -> None:
    contact = _contact(emu, NAME="Анна", PHONE=[{"VALUE": "+7 916 000-00-00", "VALUE_TYPE": "MOBILE"},
                                                {"VALUE": "+74951234567", "VALUE_TYPE": "WORK"}])
    emu.calls.clear()
    result = run(emu, lambda c: c.perform("contact.update", {"contact": contact, "fields": {
        "phone": "8 916 123-45-67", "email": "anna@example.com", "responsible": "admin", "name": "Анна"}}, "k1"))
    calls = rest_calls(emu)
    assert [m for m, _ in calls] == ["crm.contact.get", "crm.contact.update"]
    phones = emu.state()["contacts"][0]["PHONE"]
    first_id = phones[0]["ID"]
    assert calls[1][1] == {"id": int(contact), "fields": {
        "NAME": "Анна", "ASSIGNED_BY_ID": "6",
        "PHONE": [{"ID": first_id, "VALUE": "+79161234567", "VALUE_TYPE": "MOBILE"}],
        "EMAIL": [{"VALUE": "anna@example.com", "VALUE_TYPE": "WORK"}]}, "params": {"REGISTER_SONET_EVENT": "N"}}
    assert [p["VALUE"] for p in phones] == ["+79161234567", "+74951234567"]
    [event] = result.events
    assert (event.type, event.entity.id) == ("client.updated", contact)
    assert event.data == {"name": "Анна", "phone": "+79161234567", "phones": ["+79161234567", "+74951234567"],
                          "email": "anna@example.com", "emails": ["anna@example.com"], "responsible": "6"}
    # The same phone again, written another way, is a phone the contact has: nothing is sent for it.
    emu.calls.clear()
    again = run(emu, lambda c: c.perform("contact.update", {"contact": contact, "fields": {"phone": "+74951234567"}},
                                         "k2"))
    assert [m for m, _ in rest_calls(emu)] == ["crm.contact.get"] and again.data["changed"] == []


def test_contact_update_with_a_list_makes_exactly_those_values(emu: Bitrix24Emulator) -> None:
    contact = _contact(emu, PHONE=[{"VALUE": "+79160000000", "VALUE_TYPE": "MOBILE"},
                                   {"VALUE": "+74951234567", "VALUE_TYPE": "WORK"}],
                       EMAIL=[{"VALUE": "old@example.com", "VALUE_TYPE": "WORK"}])
    kept, dropped = (p["ID"] for p in emu.state()["contacts"][0]["PHONE"][::-1])
    email = emu.state()["contacts"][0]["EMAIL"][0]["ID"]
    emu.calls.clear()
    run(emu, lambda c: c.perform("contact.update", {"contact": contact, "fields": {
        "phone": ["+74951234567", "+79161234567"], "email": ""}}, "k"))
    sent = rest_calls(emu)[1][1]["fields"]
    assert sent["PHONE"] == [{"ID": dropped, "DELETE": "Y"}, {"VALUE": "+79161234567", "VALUE_TYPE": "MOBILE"}]
    assert sent["EMAIL"] == [{"ID": email, "DELETE": "Y"}]
    row = emu.state()["contacts"][0]
    assert [(p["ID"], p["VALUE"]) for p in row["PHONE"]][0] == (kept, "+74951234567")
    assert [p["VALUE"] for p in row["PHONE"]] == ["+74951234567", "+79161234567"]
    assert row["EMAIL"] == [] and row["HAS_EMAIL"] == "N"


def test_contact_update_by_phone_finds_the_contact_or_makes_it(emu: Bitrix24Emulator) -> None:
    older = _contact(emu, NAME="Анна", PHONE=[{"VALUE": "8 916 123-45-67", "VALUE_TYPE": "MOBILE"}])
    _contact(emu, NAME="Анна (дубль)", PHONE=[{"VALUE": "+79161234567", "VALUE_TYPE": "WORK"}])
    found = run(emu, lambda c: c.perform("contact.update", {"contact": "+79161234567",
                                                            "fields": {"lead_source": "CALL"}}, "k1"))
    assert found.data["id"] == older and emu.state()["contacts"][0]["SOURCE_ID"] == "CALL"
    emu.calls.clear()
    made = run(emu, lambda c: c.perform("contact.update", {"contact": "+7 903 111-22-33", "fields": {
        "name": "Борис", "email": "boris@example.com", "responsible": "admin"}}, "run-2/do/0"))
    assert [m for m, _ in rest_calls(emu)] == ["crm.duplicate.findbycomm", "crm.contact.add", "crm.contact.get"]
    row = emu.state()["contacts"][-1]
    assert (row["NAME"], row["ASSIGNED_BY_ID"], row["ORIGIN_ID"]) == ("Борис", "6", "run-2/do/0:contact")
    assert [p["VALUE"] for p in row["PHONE"]] == ["+79031112233"] and row["EMAIL"][0]["VALUE"] == "boris@example.com"
    [event] = made.events
    assert (event.type, event.entity.id, event.data["phone"]) == ("client.created", row["ID"], "+79031112233")


def test_contact_update_refuses_what_bitrix24_would_drop_before_any_call(emu: Bitrix24Emulator) -> None:
    contact = _contact(emu, NAME="Анна")
    emu.calls.clear()
    for params, why in [({"contact": contact, "fields": {"colour": "red"}}, "no Bitrix24 contact field for 'colour'"),
                        ({"contact": contact, "fields": {"phone": "12"}}, "not a valid phone number"),
                        ({"contact": contact, "fields": {"email": "anna"}}, "not an e-mail address"),
                        ({"contact": contact, "fields": {"responsible": "olga"}}, "not a Bitrix24 user id"),
                        ({"contact": "Анна", "fields": {"name": "x"}}, "not a Bitrix24 contact id"),
                        ({"contact": contact, "fields": {"ID": 5}}, "set by Bitrix24 or the connector")]:
        with pytest.raises(Rejected, match=why):
            run(emu, lambda c, p=params: c.perform("contact.update", p, "k"))
    assert rest_calls(emu) == []


def test_the_emulator_keeps_multifield_semantics(emu: Bitrix24Emulator) -> None:
    """Contract part 2 §2.2: an item with ID and VALUE changes it, with DELETE or without VALUE deletes it (the
    trap), without ID adds one; values not named stay; a missing contact is `Contact is not found`."""
    contact = _contact(emu, PHONE=[{"VALUE": "+79160000001"}, {"VALUE": "+79160000002"}, {"VALUE": "+79160000003"}])
    one, two, three = (p["ID"] for p in emu.state()["contacts"][0]["PHONE"])
    run(emu, lambda c: c.api.call("crm.contact.update", {"id": contact, "fields": {"PHONE": [
        {"ID": one, "VALUE": "+79160000009", "VALUE_TYPE": "HOME"}, {"ID": two}, {"VALUE": "+79160000004"}]}}))
    assert [(p["ID"] == one, p["VALUE"], p["VALUE_TYPE"]) for p in emu.state()["contacts"][0]["PHONE"]] == [
        (True, "+79160000009", "HOME"), (False, "+79160000003", "WORK"), (False, "+79160000004", "WORK")]
    assert three in [p["ID"] for p in emu.state()["contacts"][0]["PHONE"]]
    with pytest.raises(Rejected, match="Contact is not found"):
        run(emu, lambda c: c.api.call("crm.contact.update", {"id": 999, "fields": {"NAME": "x"}}))


# ---- deal.assign, lead.assign, note.add ------------------------------------------------------------------

def test_deal_assign_to_a_role_and_its_webhook_carries_what_it_reported(emu: Bitrix24Emulator, sink: Sink) -> None:
    deal = control(emu, "manager/deal", {"fields": {"TITLE": "x", "CATEGORY_ID": 4}})["id"]
    emu.skew += 2
    result = run(emu, lambda c: c.perform("deal.assign", {"deal": deal, "to": "admin"}, "k"))
    assert rest_calls(emu)[-2] == ("crm.deal.update", {"id": str(deal), "fields": {"ASSIGNED_BY_ID": "6"},
                                                       "params": {"REGISTER_SONET_EVENT": "N"}})
    [reported] = result.events
    assert (reported.type, reported.data) == ("deal.updated", {"responsible": "6"})
    [_, [webhook]] = _hook_events(emu, sink, 2)
    assert all(same(webhook.data.get(k), v) for k, v in reported.data.items())
    # A role's user id is the connector's: nothing is expected before the call; the webhook is the answer's repeat.
    assert reported.delivery_id == webhook.delivery_id is not None
    assert expected_echo("deal.assign", {"deal": deal, "to": "admin"}) is None
    with pytest.raises(Rejected, match="'olga' is not a Bitrix24 user id"):
        run(emu, lambda c: c.perform("deal.assign", {"deal": deal, "to": "olga"}, "k2"))


def test_lead_assign_updates_the_lead(emu: Bitrix24Emulator) -> None:
    lead = control(emu, "manager/lead", {"fields": {"TITLE": "Заявка", "NAME": "Анна"}})["id"]
    result = run(emu, lambda c: c.perform("lead.assign", {"lead": lead, "to": 7}, "k"))
    assert emu.state()["leads"][0]["ASSIGNED_BY_ID"] == "7"
    [event] = result.events
    assert (event.type, event.data) == ("lead.updated", {"lead_id": str(lead), "responsible": "7"})
    with pytest.raises(Rejected, match="Not found"):
        run(emu, lambda c: c.perform("lead.assign", {"lead": 99999, "to": 7}, "k2"))


def test_note_add_to_a_deal_a_lead_or_a_contact_by_phone(emu: Bitrix24Emulator) -> None:
    deal = control(emu, "manager/deal", {"fields": {"TITLE": "x"}})["id"]
    lead = control(emu, "manager/lead", {"fields": {"TITLE": "y"}})["id"]
    contact = _contact(emu, PHONE=[{"VALUE": "+79161234567"}])

    async def three(c: Bitrix24) -> list[Any]:
        return [await c.perform("note.add", {"deal": deal, "text": "про сделку"}, "k1"),
                await c.perform("note.add", {"lead": lead, "text": "про заявку"}, "k2"),
                await c.perform("note.add", {"contact": "8 916 123-45-67", "text": "про клиента"}, "k3")]
    results = run(emu, three)
    assert [(c["ENTITY_TYPE"], c["ENTITY_ID"], c["COMMENT"]) for c in emu.state()["comments"]] == [
        ("deal", str(deal), "про сделку"), ("lead", str(lead), "про заявку"), ("contact", contact, "про клиента")]
    assert results[2].data["contact"] == contact
    for params, why in [({"text": "x"}, "exactly one of deal, lead, contact; got none"),
                        ({"deal": deal, "lead": lead, "text": "x"}, "got deal, lead"),
                        ({"deal": deal, "text": " "}, "the text is empty"),
                        ({"contact": "+79031112233", "text": "x"}, "no Bitrix24 contact has the phone")]:
        with pytest.raises(Rejected, match=why):
            run(emu, lambda c, p=params: c.perform("note.add", p, "k"))
    with pytest.raises(Rejected, match="OWNER_NOT_FOUND"):
        run(emu, lambda c: c.perform("note.add", {"lead": 12345, "text": "x"}, "k"))


# ---- task.completed ---------------------------------------------------------------------------------------

def _task(emu: Bitrix24Emulator, *bindings: str) -> str:
    return str(control(emu, "manager/task", {"fields": {"TITLE": "Перезвонить", "RESPONSIBLE_ID": 6,
                                                        "UF_CRM_TASK": list(bindings)}})["id"])


def test_a_completed_task_is_reported_once_with_its_deal(emu: Bitrix24Emulator, sink: Sink) -> None:
    task = _task(emu, "D_394", "C_75")
    control(emu, "manager/task-update", {"id": task, "fields": {"TITLE": "Перезвонить сегодня"}})
    assert _hook_events(emu, sink, 1) == [[]]  # an edit of an open task: no event
    emu.skew += 2
    control(emu, "manager/task-complete", {"id": task, "by": 7})
    emu.skew += 2
    control(emu, "manager/task-update", {"id": task, "fields": {"TITLE": "Перезвонил"}})  # an edit after
    _, [completed], [again] = _hook_events(emu, sink, 3)
    closed = emu.state()["tasks"][0]["closedDate"]
    assert (completed.type, completed.entity.id, completed.delivery_id) == ("task.completed", task,
                                                                             f"task:{task}@{closed}")
    assert completed.data == {"title": "Перезвонил", "responsible": "6", "completed_at": closed,
                              "deal": "394", "contact": "75", "completed_by": "7"}
    # The edit reads the same closedDate: the same delivery id, which the journal drops as a repeat.
    assert (again.id, again.delivery_id) == (completed.id, completed.delivery_id)
    task_calls = [c.json() for c in emu.calls if c.path.endswith("tasks.task.get")]
    assert task_calls[0] == {"taskId": int(task), "select": ["ID", "TITLE", "STATUS", "RESPONSIBLE_ID", "CLOSED_DATE",
                                                             "CLOSED_BY", "CHANGED_DATE", "UF_CRM_TASK"]}


def test_a_task_completed_long_ago_or_gone_reports_nothing(emu: Bitrix24Emulator) -> None:
    from automator_connectors.bitrix24.events import task_completed

    closed = datetime.fromisoformat(REAL_TASK["closedDate"])
    assert task_completed("crm", REAL_TASK, closed + timedelta(hours=3)) is not None
    assert task_completed("crm", REAL_TASK, closed + timedelta(days=2)) is None  # an edit, not the completion
    assert task_completed("crm", {**REAL_TASK, "status": "3"}, closed) is None
    gone = urlencode({"event": "ONTASKUPDATE", "data[FIELDS_BEFORE][ID]": "777", "data[FIELDS_AFTER][ID]": "777",
                      "auth[application_token]": TOKEN}).encode()
    assert run(emu, lambda c: c.parse(inbound(gone))) == []  # tasks.task.get answers [] for a missing task


# ---- validate and the sandbox, through the CLI --------------------------------------------------------------

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {type: bitrix24, webhook_url: "${env:B24_URL}", application_token: "${env:B24_TOKEN}",
        roles: {admin: 1}, contact_fields: {card: UF_CRM_CARD}}
"""


def project(root: Path, rules: str, test: str | None = None) -> Path:
    (root / "automator.yaml").write_text(CONFIG)
    (root / "pipelines").mkdir()
    (root / "pipelines" / "rehab.yaml").write_text(PIPELINE)
    (root / "rules").mkdir()
    (root / "rules" / "crm.yaml").write_text(textwrap.dedent(rules))
    if test is not None:
        (root / "rules" / "crm.test.yaml").write_text(textwrap.dedent(test))
    return root


def test_validate_finds_what_the_crm_actions_would_refuse(tmp_path: Path) -> None:
    root = project(tmp_path, """\
        rules:
          - id: r
            when: {event: deal.created, pipeline: rehab}
            do:
              - contact.update: {fields: {card: A1, colour: red, phone: "12", responsible: amdin}}
              - deal.assign: {to: amdin}
              - lead.assign: {lead: abc, to: 1}
              - note.add: {deal: "{{ deal.id }}", lead: 5, text: x}
        """)
    result = CliRunner().invoke(cli, ["validate", str(root)], catch_exceptions=False)
    lines = [line.replace(f"{root}/", "") for line in result.stdout.splitlines() if ": error:" in line]
    assert result.exit_code == 1
    assert lines == [
        "rules/crm.yaml:5:45: error: connector 'crm' (bitrix24): no Bitrix24 contact field for 'colour': map it "
        "under `contact_fields:` in the connector's settings (e.g. colour: UF_CRM_…) or use the Bitrix24 field code",
        "rules/crm.yaml:5:65: error: phone: not a valid phone number: '12'",
        "rules/crm.yaml:5:84: error: responsible 'amdin' is neither a role under `roles:` of connector 'crm' "
        "(bitrix24) nor a Bitrix24 user id",
        "rules/crm.yaml:6:27: error: to 'amdin' is neither a role under `roles:` of connector 'crm' (bitrix24) nor "
        "a Bitrix24 user id",
        "rules/crm.yaml:7:29: error: 'abc' is not a Bitrix24 lead id (a number)",
        "rules/crm.yaml:8:43: error: note.add goes to one timeline, but names deal and lead"]


def test_a_task_completed_moves_its_deal_in_the_sandbox(tmp_path: Path) -> None:
    root = project(tmp_path, """\
        rules:
          - id: task-done
            when: {event: task.completed}
            do:
              - deal.move: {deal: "{{ event.deal }}", stage: called}
        """, """\
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given:
          - {kind: deal, id: 501, pipeline: rehab, stage: new, title: Иванова}
        when:
          - {event: task.completed, entity: {kind: task, id: 9}, data: {deal: 501, title: Перезвонить,
             completed_at: 2026-03-02T09:55:00+03:00}}
        expect:
          - {action: deal.move, params: {deal: 501, stage: called}, count: 1}
        """)
    for args in ([], ["--sandbox"]):
        result = CliRunner().invoke(cli, ["test", str(root / "rules"), *args], catch_exceptions=False)
        assert (result.exit_code, result.output) == (0, "1 passed, 0 failed\n"), args


def test_a_given_client_with_a_crm_id_is_that_contact_in_the_sandbox(tmp_path: Path) -> None:
    root = project(tmp_path, """\
        rules:
          - id: new-deal-card
            when: {event: deal.created, pipeline: rehab}
            do:
              - contact.update: {contact: "75", fields: {card: "{{ deal.title }}"}}
        """, """\
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given:
          - {kind: client, id: 77, name: Анна, phone: "+79161234567", ids: {crm: "75"}}
        when:
          - {event: deal.created, entity: {kind: deal, id: 502}, data: {pipeline: rehab, stage: new, title: A-17}}
        expect:
          - {action: contact.update, params: {contact: "75", fields: {card: A-17}}, count: 1}
        """)
    # Performed by the real connector: contact 75 exists in the portal only as the given client's contact.
    result = CliRunner().invoke(cli, ["test", str(root / "rules"), "--sandbox"], catch_exceptions=False)
    assert (result.exit_code, result.output) == (0, "1 passed, 0 failed\n")
    (root / "rules" / "crm.test.yaml").write_text((root / "rules" / "crm.test.yaml").read_text().replace(
        'ids: {crm: "75"}', 'ids: {crm: "76"}'))
    result = CliRunner().invoke(cli, ["test", str(root / "rules"), "--sandbox"], catch_exceptions=False)
    assert result.exit_code == 1 and "crm.contact.get: HTTP 400 -: Not found" in result.output, result.output
