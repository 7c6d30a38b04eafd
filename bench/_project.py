"""Builds realistic generated projects in a temporary folder for the benchmarks."""
from __future__ import annotations

import shutil
from pathlib import Path

from _loadgen import TOKEN_ENV  # the webhook token the load generator sends; daemons inherit its variable

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sat}
settings: {review_url: "https://example.com/review"}
connectors:
  booking: {type: local}
  sms: {type: local}
  crm:
    type: local
    secret: "${env:%s}"
""" % TOKEN_ENV

TEMPLATES = [
    """\
  - id: r{i}-event
    when: {{event: custom.type_{i}, where: "event.score >= {n}"}}
    if: ["client.visits > 1", "days_since(client.last_visit_at) < 90"]
    do:
      - sms.send: {{to: "{{{{ client.phone }}}}", text: "Спасибо, {{{{ client.name }}}}! {{{{ settings.review_url }}}}"}}
      - wait: {n}d
      - task.create: {{assignee: admin, title: "Позвонить {{{{ client.name }}}}"}}
""",
    """\
  - id: r{i}-changed
    when: {{changed: deal.field_{i}, to: [a, b], pipeline: rehabilitation}}
    do:
      - if: "deal.amount > {n}00"
        then: [{{deal.move: {{stage: warmed_up}}}}, {{deal.update: {{fields: {{visit_at: "{{{{ now }}}}", service: x}}}}}}]
        else: [{{notify: {{to: "{{{{ deal.responsible }}}}", text: "Сделка {{{{ deal.id }}}}"}}}}]
""",
    """\
  - id: r{i}-held
    when: {{held: booking.field_{i}, is: waiting, for: {n}m}}
    per: client
    mode: single
    do:
      - notify: {{to: admin, text: "Запись {{{{ booking.id }}}} ждёт"}}
""",
    """\
  - id: r{i}-schedule
    when: {{schedule: "{m} {h} * * 1-5"}}
    for_each: {{kind: client, where: "days_since(client.last_visit_at) > {n}"}}
    do:
      - task.create: {{assignee: admin, title: "Вернуть {{{{ client.name }}}}"}}
      - set: {{tries: 1}}
      - emit: {{event: client.reminded, data: {{tries: "{{{{ vars.tries }}}}"}}}}
""",
]

MATCHING = """\
  - id: m{i}-arrived
    when: {{changed: booking.status, to: arrived}}
    if: "client.visits >= 1"
    do:
      - notify: {{to: admin, text: "{{{{ client.name }}}} пришла ({i})"}}
"""


def rule_text(i: int) -> str:
    """One generated rule, cycling through the trigger kinds."""
    return TEMPLATES[i % len(TEMPLATES)].format(i=i, n=i % 50 + 1, m=i % 60, h=9 + i % 10)


def declared(count: int) -> str:
    """The crm connector's `events:`: the generated rules' own event types and the entity fields they watch, as
    an admin declares what their forms and CRM send (validate refuses rules on events and fields nothing sends)."""
    kinds = {0: "events", 1: "deal", 2: "booking"}
    found: dict[str, list[int]] = {name: [] for name in kinds.values()}
    for i in range(count):
        if i % len(TEMPLATES) in kinds:
            found[kinds[i % len(TEMPLATES)]].append(i)
    lines = ["    events:"]
    lines += [f"      custom.type_{i}: {{entity: client, data: {{score: number}}}}" for i in found["events"]]
    for kind in ("deal", "booking"):
        if found[kind]:
            fields = ", ".join(f"field_{i}: text" for i in found[kind])
            lines.append(f"      {kind}.updated: {{entity: {kind}, data: {{{fields}}}}}")
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""


def write_project(root: Path, count: int, *, matching: int = 0, files: int = 20) -> Path:
    """A project with `count` generated rules spread over `files` files, `matching` of which match
    `booking.updated {status: arrived}`."""
    (root / "automator.yaml").write_text(CONFIG + declared(count - matching))
    shutil.copytree(ROOT / "pipelines", root / "pipelines", dirs_exist_ok=True)
    (root / "rules").mkdir(exist_ok=True)
    bodies: list[list[str]] = [[] for _ in range(files)]
    for i in range(count - matching):
        bodies[i % files].append(rule_text(i))
    for i in range(matching):
        bodies[i % files].append(MATCHING.format(i=i))
    for index, body in enumerate(bodies):
        if body:
            (root / "rules" / f"pack{index:02}.yaml").write_text("rules:\n" + "".join(body))
    return root
