"""`automator test --sandbox` and a test file's `connectors: sandbox`: the same tests, performed by the real
connectors against their emulators (field mappings, roles, given state, echoes), through the CLI on real files."""
from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from automator.cli import cli

CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sun}
default_branch: main
connectors:
  crm: {type: bitrix24, webhook_url: "${env:B24_URL}", application_token: "${env:B24_TOKEN}",
        roles: {consultant: 5}, fields: {visit_at: UF_CRM_VISIT_AT}}
  booking: {type: yclients, company_id: 42, partner_token: "${env:YC_P}", user_token: "${env:YC_U}",
            hook_secret: "${env:YC_H}", branch: main}
  forms: {type: local, events: {nps.received: {entity: client, data: {booking: id, score: number}}}}
"""

PIPELINE = """\
pipelines:
  rehab:
    connector: crm
    id: 4
    stages:
      new: {id: "C4:NEW"}
      called: {id: "C4:PREPARATION"}
      booked: {id: "C4:UC_BOOKED"}
"""

RULES = """\
rules:
  - id: no-show-deal
    when: {changed: booking.status, to: no_show}
    do:
      - deal.create: {pipeline: rehab, stage: new, title: "Реабилитация: {{ client.name }}", contact: "{{ client.phone }}"}
  - id: new-deal-task
    when: {event: deal.created, pipeline: rehab}
    do:
      - task.create: {assignee: consultant, title: "Позвонить по сделке {{ deal.id }}", deal: "{{ deal.id }}"}
  - id: booked
    when: {event: booking.created, where: "has(event, 'deal')"}
    do:
      - deal.move: {deal: "{{ event.deal }}", pipeline: rehab, stage: booked, fields: {visit_at: "{{ booking.starts_at }}"}}
  - id: mark-no-show
    when: {event: nps.received}
    do:
      - booking.set_status: {booking: "{{ event.booking }}", status: no_show}
"""


def project(tmp_path: Path, test: str, *, rules: str = RULES) -> Path:
    (tmp_path / "automator.yaml").write_text(CONFIG)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "rehab.yaml").write_text(PIPELINE)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "clinic.yaml").write_text(textwrap.dedent(rules))
    (tmp_path / "rules" / "clinic.test.yaml").write_text(textwrap.dedent(test))
    return tmp_path


def run(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["test", str(root / "rules"), *args], catch_exceptions=False)
    return result.exit_code, result.output


OLGA = "assignee: \"{{ get(deal, 'manager', 'olga') }}\""

GIVEN = """\
    load: ..
    now: 2026-03-02T10:00:00+03:00
    given:
      - {kind: client, id: 77, name: Анна, phone: "+79161234567"}
      - {kind: booking, id: 1001, client: 77, status: waiting, branch: main, starts_at: 2026-03-02T15:00:00+03:00}
      - {kind: deal, id: 501, pipeline: rehab, stage: called, client: 77}
"""


def test_a_deal_our_rule_creates_starts_the_deal_created_rule_once_though_the_crm_reports_it_back(
        tmp_path: Path) -> None:
    root = project(tmp_path, GIVEN + """\
    when:
      - {event: nps.received, entity: {kind: client, id: 77}, data: {booking: 1001}}
    expect:
      - {action: booking.set_status, params: {booking: 1001, status: no_show}, count: 1}
      - {action: deal.create, params: {pipeline: rehab, contact: "+79161234567"}, count: 1}
      - {action: task.create, params: {assignee: consultant}, count: 1}
    """)
    # The booking and the deal exist in the emulators (given), the status change and the new deal each come back
    # as YCLIENTS' and Bitrix24's webhooks: recognised as our own, they start nothing a second time.
    assert run(root, "--sandbox") == (0, "1 passed, 0 failed\n")
    assert run(root) == (0, "1 passed, 0 failed\n")


def test_an_event_of_the_test_is_a_change_made_in_the_system_the_connector_then_acts_on(tmp_path: Path) -> None:
    root = project(tmp_path, GIVEN + """\
    when:
      - {event: booking.created, entity: {kind: booking, id: 3001},
         data: {client: 77, deal: 501, status: confirmed, starts_at: 2026-03-05T11:00:00+03:00}}
      - {event: nps.received, entity: {kind: client, id: 77}, data: {booking: 3001}}
    expect:
      - {action: deal.move, params: {deal: 501, stage: booked, fields: {visit_at: "2026-03-05T11:00:00+03:00"}},
         count: 1}
      - {action: booking.set_status, params: {booking: 3001}, count: 1}
    """)
    assert run(root, "--sandbox") == (0, "1 passed, 0 failed\n")


def test_what_the_real_connector_refuses_fails_the_test_in_the_sandbox_only(tmp_path: Path) -> None:
    # The assignee is read from the deal, so validate cannot see that Bitrix24 has no such user: only the sandbox.
    rules = RULES.replace("assignee: consultant", OLGA)
    root = project(tmp_path, GIVEN + """\
    when:
      - {event: booking.created, entity: {kind: booking, id: 3001},
         data: {client: 77, deal: 501, status: confirmed, starts_at: 2026-03-05T11:00:00+03:00}}
      - {event: deal.created, entity: {kind: deal, id: 502}, data: {pipeline: rehab, stage: new}}
    expect:
      - {action: deal.move, params: {deal: 501}, count: 1}
      - {action: task.create, count: 1}
    """, rules=rules)
    assert run(root) == (0, "1 passed, 0 failed\n")
    code, out = run(root, "--sandbox")
    assert code == 1
    assert out.splitlines()[1:] == [
        "    task.create {assignee: 'olga', title: 'Позвонить по сделке 502', deal: '502'} at 2026-03-02 10:00 failed "
        "in connector 'crm': 'olga' is not a Bitrix24 user id nor a role under `roles:` in the connector's settings",
        "0 passed, 1 failed"]


def test_a_test_file_asks_for_the_sandbox_itself(tmp_path: Path) -> None:
    root = project(tmp_path, "    connectors: sandbox\n" + GIVEN + """\
    when:
      - {event: deal.created, entity: {kind: deal, id: 502}, data: {pipeline: rehab, stage: new}}
    expect:
      - {action: task.create, count: 1}
    """, rules=RULES.replace("assignee: consultant", OLGA))
    code, out = run(root)
    assert code == 1 and "failed in connector 'crm': 'olga' is not a Bitrix24 user id" in out


def test_connectors_takes_local_or_sandbox(tmp_path: Path) -> None:
    root = project(tmp_path, "    connectors: emulators\n" + GIVEN + """\
    when:
      - {event: deal.created, entity: {kind: deal, id: 502}, data: {pipeline: rehab, stage: new}}
    expect:
      - {action: task.create, count: 1}
    """)
    code, out = run(root)
    assert code == 1
    assert out.splitlines()[1] == (f"    {root}/rules/clinic.test.yaml:1:13: error: connectors: 'emulators' is not "
                                   "one of local, sandbox")


def test_an_amocrm_lead_our_rule_creates_starts_the_deal_created_rule_once(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text(textwrap.dedent("""\
        timezone: Europe/Moscow
        connectors:
          crm: {type: amocrm, subdomain: clinic, token: "${env:AMO_TOKEN}", hook_secret: "${env:AMO_HOOK}",
                users: {consultant: 5}}
          forms: {type: local, events: {nps.received: {entity: client, data: {score: number}}}}
        """))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "sales.yaml").write_text(
        "pipelines:\n  sales:\n    connector: crm\n    id: 7001\n    stages:\n      new: {id: 142001}\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "sales.yaml").write_text(textwrap.dedent("""\
        rules:
          - id: make-deal
            when: {event: nps.received}
            do:
              - deal.create: {pipeline: sales, stage: new, title: "Низкая оценка"}
          - id: new-deal-task
            when: {event: deal.created}
            do:
              - task.create: {assignee: consultant, title: "Позвонить по сделке {{ deal.id }}", deal: "{{ deal.id }}"}
        """))
    (tmp_path / "rules" / "sales.test.yaml").write_text(textwrap.dedent("""\
        load: ..
        now: 2026-03-02T10:00:00+03:00
        connectors: sandbox
        when:
          - {event: nps.received, entity: {kind: client, id: 77}, data: {score: 3}}
        expect:
          - {action: deal.create, count: 1}
          - {action: task.create, params: {assignee: consultant}, count: 1}
        """))
    assert run(tmp_path, "-v") == (0, f"PASSED {tmp_path}/rules/sales.test.yaml::sales.test\n1 passed, 0 failed\n")
