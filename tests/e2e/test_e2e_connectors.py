"""The real connectors in the daemon: YCLIENTS → rules → Bitrix24 and SMS.ru in --sandbox, and catch-up polling."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clinic import clinic, config, no_show
from e2e_support import Daemon, Project, get_json, post_json, query, wait_for, wait_outbox_drained

from automator.emulator import serve
from automator_connectors.bitrix24.emulator import Bitrix24Emulator

CONFIG = config("admin", '  sms: {type: smsru, api_id: "${env:SMSRU_API_ID}", sender: Clinic}\n')

RULES = """\
rules:
  - id: no-show-to-rehabilitation
    when: {changed: booking.status, to: no_show}
    do:
      - deal.create: {pipeline: rehabilitation, stage: new, title: "Реабилитация: {{ client.name }}",
                      contact: "{{ client.phone }}"}
      - sms.send: {to: "{{ client.phone }}", text: "{{ client.name }}, мы скучаем! Запишитесь снова."}

  - id: called-gets-a-task
    when: {changed: deal.stage, pipeline: rehabilitation, to: called}
    do:
      - task.create: {assignee: admin, title: "Перезвонить по сделке {{ deal.id }}"}
"""


def _project(root: Path) -> Project:
    return clinic(root, CONFIG, RULES)


def test_a_yclients_no_show_makes_one_bitrix24_deal_and_one_sms_in_the_sandbox(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(_project(tmp_path / "clinic"), args=("--sandbox",))
    base = no_show(daemon)

    deals = wait_for(lambda: get_json(f"{base}/crm/_emulator/state")["deals"], 20, "a deal in the Bitrix24 emulator")
    messages = wait_for(lambda: get_json(f"{base}/sms/_emulator/state")["messages"], 20, "an SMS in the SMS.ru emulator")
    assert [d["TITLE"] for d in deals] == ["Реабилитация: Анна"]
    assert deals[0]["STAGE_ID"] == "C4:NEW" and deals[0]["ORIGINATOR_ID"] == "automator"
    assert [m["text"] for sent in messages.values() for m in sent] == ["Анна, мы скучаем! Запишитесь снова."]

    # The portal's ONCRMDEALADD for our own deal comes back and is known as ours.
    wait_for(lambda: query(daemon.project.db, "select count(*) from journal where source = 'crm' and "
                                              "status = 'done'")[0][0] >= 1, 10, "the CRM's echo to be decided")
    wait_outbox_drained(daemon.project.db, 10)
    # Nothing more happens however long we look: one deal, one SMS, every effect done.
    assert len(get_json(f"{base}/crm/_emulator/state")["deals"]) == 1
    assert sum(len(v) for v in get_json(f"{base}/sms/_emulator/state")["messages"].values()) == 1
    assert query(daemon.project.db, "select action, status from effects order by action") == [
        ("deal.create", "done"), ("sms.send", "done")]
    assert daemon.terminate() == 0


def test_changes_made_while_the_daemon_was_down_are_caught_up_once(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    portal = Bitrix24Emulator(user_id="1", code="k3y", application_token="app-token")
    portal.add_pipeline(4, "Реабилитация", [("C4:NEW", "Новая"), ("C4:PREPARATION", "Позвонили"),
                                            ("C4:WON", "Успех"), ("C4:LOSE", "Провал")])
    with serve(portal) as served:
        # Only the Bitrix24 portal exists here: YCLIENTS must not be polled (it would be the real one).
        project = _project(tmp_path / "clinic")
        env = {"B24_WEBHOOK_URL": f"{served.url}/rest/1/k3y/", "B24_APP_TOKEN": "app-token", "YC_PARTNER": "p", "YC_USER": "u", "YC_HOOK": "h",
               "SMSRU_API_ID": "x"}
        daemon = start_daemon(project, env=env)
        portal.hook_url = f"http://127.0.0.1:{daemon.port}/hooks/crm"
        first = post_json(f"{served.url}/_emulator/manager/deal",
                      {"fields": {"TITLE": "Первая", "CATEGORY_ID": 4, "STAGE_ID": "C4:NEW"}})["id"]
        second = post_json(f"{served.url}/_emulator/manager/deal",
                       {"fields": {"TITLE": "Вторая", "CATEGORY_ID": 4, "STAGE_ID": "C4:NEW"}})["id"]
        wait_for(lambda: query(project.db, "select count(*) from entities where kind = 'deal'")[0][0] == 2, 15,
                 "both deals known from their webhooks")
        # The start-up poll has noted where the portal is: catching up starts from there.
        wait_for(lambda: query(project.db, "select value from meta where name = 'poll:crm'"), 15, "the first poll")
        assert daemon.terminate() == 0
        portal.skew += 2  # the daemon is down for a while: later changes carry a later DATE_MODIFY (1 s resolution)

        # While the daemon is down, managers move both deals: Bitrix24's webhooks go nowhere and are never resent.
        for deal in (first, second):
            post_json(f"{served.url}/_emulator/manager/move", {"id": deal, "stage_id": "C4:PREPARATION"})
        assert all(w["status"] != 200 for w in portal.webhooks[-2:])

        daemon = start_daemon(project, env=env, log_name="daemon2.log")
        tasks = wait_for(lambda: len(portal.portal.tasks) == 2 and portal.portal.tasks, 20,
                         "a task per deal moved while the daemon was down")
        titles = sorted(t["title"] for t in tasks.values())
        assert titles == sorted(f"Перезвонить по сделке {d}" for d in (first, second))
        runs = query(project.db, "select count(*) from runs where rule_id = 'called-gets-a-task'")[0][0]
        assert runs == 2
        assert daemon.terminate() == 0
