"""Issue 13's "a task completed moves its deal", with amoCRM as the CRM: the rule reads `task.completed` (amoCRM's
task webhook) and moves the task's lead, through `automator test --sandbox` on a project in a temporary folder, the
real connector against its emulator (the move is a PATCH the emulator answers, and its `leads[status]` webhook
comes back as our own echo: it starts no rule)."""
from __future__ import annotations

import textwrap
from pathlib import Path

from cli_support import invoke

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {type: amocrm, subdomain: clinic, token: "${env:AMO_TOKEN}", hook_secret: "${env:AMO_HOOK}",
        roles: {admin: 5}}
"""
PIPELINE = """\
pipelines:
  sales:
    connector: crm
    id: 7001
    stages:
      new: {id: 142001}
      called: {id: 142002}
      booked: {id: 142003}
"""
RULES = """\
rules:
  - id: call-done-books
    when: {event: task.completed}
    if: "'deal' in event.data"
    do:
      - deal.move: {deal: "{{ event.deal }}", stage: booked}
  - id: booked-note
    when: {changed: deal.stage, to: booked}
    do:
      - note.add: {deal: "{{ deal.id }}", text: "Записан после звонка"}
"""
TEST = """\
load: ..
now: 2026-03-02T10:00:00+03:00
connectors: sandbox
given:
  - {kind: deal, id: 10185200, pipeline: sales, stage: called, title: "Анна, массаж"}
when:
  - {event: task.completed, entity: {kind: task, id: 4745300},
     data: {deal: "10185200", title: "Перезвонить", responsible: "5", completed_at: "2026-03-02T07:00:00+00:00"}}
  - {event: task.completed, entity: {kind: task, id: 4745301}, data: {contact: "12117300", title: "Поздравить"}}
expect:
  - {action: deal.move, params: {deal: "10185200", stage: booked}, count: 1}
  - {action: note.add, count: 1}
"""


def project(root: Path) -> Path:
    (root / "automator.yaml").write_text(CONFIG)
    (root / "pipelines").mkdir()
    (root / "pipelines" / "sales.yaml").write_text(PIPELINE)
    (root / "rules").mkdir()
    (root / "rules" / "sales.yaml").write_text(RULES)
    (root / "rules" / "sales.test.yaml").write_text(TEST)
    return root


def test_a_task_completed_moves_its_deal(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert invoke("validate", str(root)) == (0, invoke("validate", str(root))[1])
    assert invoke("test", str(root / "rules"), "-v", "--sandbox") == (
        0, f"PASSED {root}/rules/sales.test.yaml::sales.test\n1 passed, 0 failed\n")
