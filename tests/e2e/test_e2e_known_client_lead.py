"""A known client's new lead goes to their manager (issue 13's done-when): the rule finds the person by the lead's
phone (`client_by_phone`) and gives the lead to the Bitrix24 user who owns that person's contact (`lead.assign`).
Through `automator test` on the project's files, and the daemon in --sandbox: the contact and the lead are made in
the Bitrix24 emulator as a manager would, their webhooks come in, and the lead's owner is read back from it."""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

from cli_support import invoke
from clinic import clinic, config
from e2e_support import Daemon, get_json, post_json, query, wait_for, wait_outbox_drained

ANNA = "+79161234567"
RULES = """\
rules:
  - id: known-client-lead-to-their-manager
    when: {event: lead.created}
    if: "client_by_phone(event.phone) != None"
    do:
      - lead.assign: {to: "{{ client_by_phone(event.phone).responsible }}"}
"""
TEST = """\
now: 2026-03-02T10:00:00+03:00
given:
  - {kind: client, id: 5, name: Анна, phone: "+79161234567", responsible: 7}
tests:
  - name: a known client's lead goes to the manager who owns their contact
    when:
      - {event: lead.created, data: {lead_id: 301, phone: "+79161234567", title: "Заявка с сайта"}}
      - {event: lead.created, data: {lead_id: 302, phone: "+79035556677", title: "Заявка с сайта"}}
    expect:
      - {action: lead.assign, params: {lead: "301", to: "7"}, count: 1}
      - {no_action: lead.assign, params: {lead: "302"}}
"""


def test_a_known_clients_lead_is_assigned_to_their_manager_in_automator_test(tmp_path: Path) -> None:
    project = clinic(tmp_path / "clinic", config("admin"), RULES)
    (project.root / "rules" / "clinic.test.yaml").write_text(textwrap.dedent(TEST))
    # Plain `automator test` (every connector played by `local`): a test's `given:` holds no leads for the
    # sandbox's Bitrix24 to know, so the emulator's side is the daemon's test below.
    code, out = invoke("test", str(project.root / "rules"))
    assert code == 0 and "1 passed, 0 failed" in out, out


def test_a_known_clients_lead_is_assigned_to_their_manager_by_the_daemon(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(clinic(tmp_path / "clinic", config("admin"), RULES), args=("--sandbox",))
    crm = f"http://127.0.0.1:{daemon.port}/_sandbox/crm/_emulator"
    # A manager adds Anna's contact, owned by user 7: its webhook makes her a known client.
    post_json(f"{crm}/manager/contact", {"fields": {"NAME": "Анна", "ASSIGNED_BY_ID": 7,
                                                    "PHONE": [{"VALUE": ANNA, "VALUE_TYPE": "MOBILE"}]}})
    wait_for(lambda: query(daemon.project.db, "select client from links where system = 'phone' and ext_id = ?",
                           (ANNA,)), 20, "Anna known by her phone")
    known = post_json(f"{crm}/manager/lead", {"fields": {"TITLE": "Заявка с сайта", "NAME": "Анна",
                                                         "PHONE": [{"VALUE": "8 (916) 123-45-67"}]}})["id"]
    stranger = post_json(f"{crm}/manager/lead", {"fields": {"TITLE": "Заявка с сайта", "NAME": "Глеб",
                                                            "PHONE": [{"VALUE": "+79035556677"}]}})["id"]

    def owner(lead: object) -> str:
        return next(str(x.get("ASSIGNED_BY_ID")) for x in get_json(f"{crm}/state")["leads"]
                    if str(x["ID"]) == str(lead))
    wait_for(lambda: owner(known) == "7", 20, "Anna's lead given to user 7")
    wait_for(lambda: query(daemon.project.db, "select count(*) from journal where type = 'lead.created' and status = 'done'") == [(2,)],
             20, "both leads decided")
    wait_outbox_drained(daemon.project.db, 10)
    assert owner(stranger) != "7"
    assert query(daemon.project.db, "select action, status from effects") == [("lead.assign", "done")]
    assert daemon.terminate() == 0
