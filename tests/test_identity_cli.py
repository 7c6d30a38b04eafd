"""One client across systems, through `automator test` and `automator dry-run` on real files: events from a
connector whose ids are its own name persons, a rule reads every system's id of one, each action's system is sent
its own id of the person or their phone (never another system's id), and a deal and its booking read each other."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from cli_support import invoke
from test_test_sandbox import CONFIG as SANDBOX_CONFIG, PIPELINE  # the clinic: rehab on Bitrix24, YCLIENTS

ANNA = "+79161234567"
CONFIG = SANDBOX_CONFIG + "  staff: {type: local}\n"  # Bitrix24 `crm`, YCLIENTS `booking`, and notify
RULES = """\
rules:
  - id: deal-for-booking
    when: {event: booking.created}
    do:
      - deal.create: {pipeline: rehab, stage: new, title: "Запись {{ booking.id }}"}
  - id: known-to-both
    when: {event: client.updated}
    if: "get(client.ids, 'crm', '') != '' and get(client.ids, 'booking', '') != ''"
    do:
      - notify: {to: admin, text: "{{ client.name }}: crm {{ client.ids.crm }}, booking {{ contact.ids.booking }}"}
  - id: vip
    when: {event: deal.updated, pipeline: rehab}
    if: "deal.stage == 'called'"
    do:
      - client.set_category: {category: VIP}
  - id: across
    when: {event: booking.updated}
    if: "has(booking, 'deal') and booking.deal.pipeline == 'rehab'"
    do:
      - notify: {to: admin, text: "{{ booking.deal }} {{ booking.deal.stage }}"}
"""
HEAD = """\
    load: ..
    now: 2026-03-02T10:00:00+03:00
"""


def project(root: Path, test: str) -> Path:
    (root / "automator.yaml").write_text(CONFIG)
    (root / "pipelines").mkdir()
    (root / "pipelines" / "rehab.yaml").write_text(PIPELINE)
    (root / "rules").mkdir()
    (root / "rules" / "clinic.yaml").write_text(RULES)
    (root / "rules" / "clinic.test.yaml").write_text(textwrap.dedent(test))
    return root


def passes(root: Path) -> None:
    code, out = invoke("test", str(root / "rules"))
    assert code == 0, out


def test_one_phone_from_the_booking_system_and_the_crm_is_one_client_who_keeps_both_ids(tmp_path: Path) -> None:
    passes(project(tmp_path, HEAD + f"""\
    when:
      - {{event: client.updated, source: crm, entity: {{kind: client, id: 5}}, data: {{name: Анна, phone: "{ANNA}"}}}}
      - {{event: client.updated, source: booking, entity: {{kind: client, id: 77}}, data: {{name: Анна П., phone: "{ANNA}"}}}}
    expect:
      - {{action: notify, params: {{text: "Анна П.: crm 5, booking 77"}}, count: 1}}
    """))


def test_a_deal_for_a_booking_clients_booking_goes_to_the_crm_by_phone_never_by_the_booking_systems_id(
        tmp_path: Path) -> None:
    # YCLIENTS client 77 is unknown to the CRM: the CRM is given the phone, to find or create its contact by;
    # the deal carries the booking it was created for.
    passes(project(tmp_path, HEAD + f"""\
    when:
      - {{event: client.created, source: booking, entity: {{kind: client, id: 77}}, data: {{name: Анна, phone: "{ANNA}"}}}}
      - {{event: booking.created, source: booking, entity: {{kind: booking, id: 1001}}, data: {{client: 77, status: confirmed}}}}
    expect:
      - {{action: deal.create, params: {{contact: "{ANNA}", booking: 1001}}, count: 1}}
      - {{no_action: deal.create, params: {{contact: "77"}}}}
    """))


def test_a_deal_for_a_client_the_crm_knows_goes_to_their_crm_contact(tmp_path: Path) -> None:
    passes(project(tmp_path, HEAD + f"""\
    when:
      - {{event: client.created, source: crm, entity: {{kind: client, id: 5}}, data: {{name: Анна, phone: "{ANNA}"}}}}
      - {{event: client.created, source: booking, entity: {{kind: client, id: 77}}, data: {{name: Анна, phone: "{ANNA}"}}}}
      - {{event: booking.created, source: booking, entity: {{kind: booking, id: 1001}}, data: {{client: 77, status: confirmed}}}}
    expect:
      - {{action: deal.create, params: {{contact: "5", booking: 1001}}, count: 1}}
    """))


def test_the_booking_system_is_sent_its_own_id_of_a_client_the_crm_reported(tmp_path: Path) -> None:
    passes(project(tmp_path, HEAD + f"""\
    when:
      - {{event: client.created, source: crm, entity: {{kind: client, id: 5}}, data: {{name: Анна, phone: "{ANNA}"}}}}
      - {{event: client.created, source: booking, entity: {{kind: client, id: 77}}, data: {{name: Анна, phone: "{ANNA}"}}}}
      - {{event: deal.updated, source: crm, entity: {{kind: deal, id: 9}}, data: {{pipeline: rehab, stage: called, contact: 5}}}}
    expect:
      - {{action: client.set_category, params: {{client: "77", category: VIP}}, count: 1}}
    """))


def test_a_person_known_to_the_crm_only_by_id_is_sent_by_phone_or_not_at_all(tmp_path: Path) -> None:
    # Contact 5 without a phone: the booking system could only be sent the CRM's id, which names no one there.
    passes(project(tmp_path, HEAD + """\
    when:
      - {event: client.created, source: crm, entity: {kind: client, id: 5}, data: {name: Анна}}
      - {event: deal.updated, source: crm, entity: {kind: deal, id: 9}, data: {pipeline: rehab, stage: called, contact: 5}}
    expect:
      - {error: "client 5 has no id in booking and no phone", rule: vip}
      - {no_action: client.set_category}
    """))


def test_a_deal_and_its_booking_read_each_other(tmp_path: Path) -> None:
    passes(project(tmp_path, HEAD + """\
    given:
      - {kind: client, id: 77, name: Анна}
      - {kind: deal, id: 9, pipeline: rehab, stage: called, title: Реабилитация, client: 77}
      - {kind: booking, id: 1001, client: 77, status: confirmed, deal: 9}
    when:
      - {event: booking.updated, entity: {kind: booking, id: 1001}, data: {status: arrived}}
    expect:
      - {action: notify, params: {text: "9 called"}, count: 1}
    """))


def test_dry_run_resolves_an_event_from_a_system_and_shows_what_the_crm_is_sent(tmp_path: Path) -> None:
    root = project(tmp_path, HEAD + "when: []\n")
    event, state = tmp_path / "event.json", tmp_path / "state.json"
    event.write_text(json.dumps({"event": "booking.created", "source": "booking",
                                 "entity": {"kind": "booking", "id": "1001"},
                                 "data": {"client": "77", "status": "confirmed"}}))
    state.write_text(json.dumps([{"kind": "client", "id": "77", "name": "Анна", "phone": ANNA}]))
    code, out = invoke("dry-run", "--event", str(event), "--state", str(state), "--project", str(root),
                       "--format", "json", "--at", "2026-03-02T10:00:00+03:00")
    assert code == 0, out
    run = next(r for r in json.loads(out)["runs"] if r["rule"] == "deal-for-booking")
    created = next(s for s in run["steps"] if s.get("action") == "deal.create")
    # YCLIENTS client 77 is now linked to the person 77, whom the CRM knows by no id: it is given the phone.
    assert created["params"]["contact"] == ANNA and created["params"]["booking"] == "1001"


def test_a_booking_reads_the_deal_a_rule_created_for_it(tmp_path: Path) -> None:
    passes(project(tmp_path, HEAD + f"""\
    when:
      - {{event: client.created, source: booking, entity: {{kind: client, id: 77}}, data: {{name: Анна, phone: "{ANNA}"}}}}
      - {{event: booking.created, source: booking, entity: {{kind: booking, id: 1001}}, data: {{client: 77, status: confirmed}}}}
      - {{event: booking.updated, source: booking, entity: {{kind: booking, id: 1001}}, data: {{status: arrived}}}}
    expect:
      - {{action: notify, params: {{text: "1 new"}}, count: 1}}
    """))
