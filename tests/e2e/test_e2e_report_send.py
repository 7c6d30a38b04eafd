"""A rule's `report.send` in the daemon (`automator run --sandbox`): an e-mail with the report's page attached reaches
the SMTP emulator, a Telegram document reaches the Bot API emulator, each composed by a child process; a report the
child refuses is dead at once, one it keeps failing is retried and then dead.

The first two use the stand-in child tests/reports/report_standin.py (AUTOMATOR_REPORT_COMPOSER: failures on
demand, a page of a known size); the last runs the real one, `automator.reports.compose`, over what the daemon kept
of the deals its webhooks brought."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from e2e_support import TOKEN, Project, wait_for, write_project

STANDIN = Path(__file__).resolve().parents[1] / "reports"

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {{type: local}}
  forms:
    type: local
    secret: "${{env:{token_env}}}"
    events:
      report.requested: {{data: {{who: text}}}}
      report.broken: {{data: {{how: text}}}}
      report.today: {{data: {{who: text}}}}
  mail:
    type: smtp
    host: smtp.yandex.ru
    security: tls
    username: reports@salon.example
    password: "${{env:SMTP_PASSWORD}}"
    from: reports@salon.example
    recipients: {{owner: owner@salon.example}}
  tg:
    type: telegram
    token: "${{env:TELEGRAM_BOT_TOKEN}}"
    chats: {{owner: 111111111}}
store: automator.db
daemon:
  retry: {{attempts: 2, first_delay: 1s, max_delay: 2s}}
"""

RULES = """\
rules:
  - id: weekly-report
    when: {event: report.requested}
    do:
      - report.send: {report: channels, period: last_week, to: owner, text: "Итоги недели:"}
        via: mail
      - report.send: {report: channels, period: last_week, to: owner, text: "Итоги недели:"}
        via: tg

  - id: this-week-report
    when: {event: report.today}
    do:
      - report.send: {report: channels, period: this_week, to: owner}
        via: mail

  - id: broken-report
    when: {event: report.broken}
    do:
      - report.send: {report: funnel, period: last_week, to: owner, pipeline: "{{ event.how }}"}
        via: mail
"""


def _project(root: Path) -> Project:
    return write_project(root, 0, RULES, config=CONFIG)


def _env() -> dict[str, str]:
    return {"AUTOMATOR_REPORT_COMPOSER": "report_standin",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(STANDIN), os.environ.get("PYTHONPATH")]))}


def test_a_rule_sends_the_report_by_email_and_telegram(tmp_path: Path, start_daemon) -> None:
    daemon = start_daemon(_project(tmp_path / "salon"), args=("--sandbox",), env=_env())
    assert daemon.post("forms", {"event": "report.requested", "data": {"who": "owner"}}).status == 200
    done = wait_for(lambda: (rows := daemon.query("select connector, status, result from effects "
                                                  "where action = 'report.send' order by connector"))
                    and all(r[1] == "done" for r in rows) and len(rows) == 2 and rows, 30, "both reports sent")
    assert [r[0] for r in done] == ["mail", "tg"]

    mail = daemon.get("/_sandbox/mail/_emulator/state").body["messages"]
    assert len(mail) == 1 and mail[0]["to"] == ["owner@salon.example"]
    assert mail[0]["subject"] == "Отчёт «Каналы» за 24.11–30.11.2026"
    assert mail[0]["text"].startswith("Итоги недели:\n\nКаналы: откуда приходят клиенты, 24.11.2026 — 30.11.2026\n"
                                      "Лиды: 12\nВыручка: 84 000,00 ₽")
    assert "period=last_week" in mail[0]["text"] and "db=automator.db" in mail[0]["text"]
    assert mail[0]["attachments"][0]["filename"] == "report-channels.html"
    assert mail[0]["attachments"][0]["content_type"] == "text/html" and mail[0]["attachments"][0]["size"] > 300_000

    telegram = daemon.get("/_sandbox/tg/_emulator/state").body["messages"]["111111111"]
    assert len(telegram) == 1 and telegram[0]["document"]["file_name"] == "report-channels.html"
    assert telegram[0]["document"]["file_size"] == mail[0]["attachments"][0]["size"]
    assert telegram[0]["caption"].startswith("Итоги недели:\n\nКаналы: откуда приходят клиенты")
    # The child ran at lower priority than the daemon.
    assert int(telegram[0]["caption"].split("nice=")[1].split("\n")[0]) >= 10
    assert json.loads(done[1][2])["file_name"] == "report-channels.html"


def test_a_refused_report_is_dead_at_once_and_a_failing_one_after_its_tries(tmp_path: Path, start_daemon) -> None:
    daemon = start_daemon(_project(tmp_path / "salon"), args=("--sandbox",), env=_env())
    for made, how in enumerate(("refuse", "crash"), start=1):
        assert daemon.post("forms", {"event": "report.broken", "data": {"how": how}}, token=TOKEN).status == 200
        # The newest effect, once there are `made` of them (the one before is dead already).
        row = wait_for(lambda: (found := daemon.query("select status, attempts, error from effects "
                                                      "where action = 'report.send' order by rowid desc")) and
                       len(found) == made and found[0][0] == "dead" and found[0], 30, f"the {how} report dead")
        if how == "refuse":
            assert row[1] == 1 and "rejected" in row[2] and "unknown report 'refuse'" in row[2], row
        else:
            assert row[1] == 2 and "gave up after 2 attempts" in row[2] and "exit 1" in row[2], row
    assert daemon.get("/_sandbox/mail/_emulator/state").body["messages"] == []


def test_the_real_child_reports_what_the_webhooks_brought(tmp_path: Path, start_daemon) -> None:
    daemon = start_daemon(_project(tmp_path / "salon"), args=("--sandbox",))
    now = datetime.now(timezone.utc).isoformat()
    for ident, source in (("1", "vk"), ("2", "vk"), ("3", "instagram")):
        posted = daemon.post("forms", {"event": "deal.created", "entity": {"kind": "deal", "id": ident}, "at": now,
                                       "data": {"stage": "new", "client": f"7{ident}", "utm_source": source},
                                       "delivery_id": f"deal-{ident}"}, token=TOKEN)
        assert posted.status == 200
    wait_for(lambda: daemon.query("select count(*) from leads")[0][0] == 3, 30, "the three deals kept")
    assert daemon.post("forms", {"event": "report.today", "data": {"who": "owner"}}, token=TOKEN).status == 200
    wait_for(lambda: daemon.query("select status from effects where action = 'report.send'") == [("done",)], 60,
             "the report sent")
    mail = daemon.get("/_sandbox/mail/_emulator/state").body["messages"]
    assert len(mail) == 1 and mail[0]["subject"].startswith("Отчёт «Каналы» за ")
    assert "Лиды: 3" in mail[0]["text"], mail[0]["text"]
    page = mail[0]["attachments"][0]
    assert page["filename"].startswith("report-channels") and page["content_type"] == "text/html"
