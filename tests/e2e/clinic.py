"""The clinic the connector e2e tests share: YCLIENTS bookings feeding a Bitrix24 rehabilitation pipeline, run
with --sandbox, each test with its own rules and staff role."""
from __future__ import annotations

import textwrap
from pathlib import Path

from e2e_support import Daemon, Project, get_json, post_json

PIPELINES = """\
pipelines:
  rehabilitation:
    connector: crm
    id: 4
    stages:
      new: {id: "C4:NEW"}
      called: {id: "C4:PREPARATION"}
      won: {id: "C4:WON", outcome: won}
      lost: {id: "C4:LOSE", outcome: lost}
"""


def config(role: str, more: str = "") -> str:
    """automator.yaml with the two systems, Bitrix24's staff `role` being user 1; `more` adds connector lines."""
    return f"""\
timezone: Europe/Moscow
branches:
  main: {{hours: "09:00-21:00", days: mon-sun}}
connectors:
  crm: {{type: bitrix24, webhook_url: "${{env:B24_WEBHOOK_URL}}", application_token: "${{env:B24_APP_TOKEN}}",
        roles: {{{role}: 1}}, poll_every: 1h}}
  booking: {{type: yclients, company_id: 777, partner_token: "${{env:YC_PARTNER}}", user_token: "${{env:YC_USER}}",
            hook_secret: "${{env:YC_HOOK}}", branch: main, poll_every: "off"}}
{more}"""


def clinic(root: Path, config: str, rules: str) -> Project:
    """The project written into `root`: automator.yaml, the pipeline and `rules` as rules/clinic.yaml."""
    root.mkdir(parents=True)
    (root / "automator.yaml").write_text(config)
    (root / "pipelines").mkdir()
    (root / "pipelines" / "rehabilitation.yaml").write_text(PIPELINES)
    (root / "rules").mkdir()
    (root / "rules" / "clinic.yaml").write_text(textwrap.dedent(rules))
    return Project(root, 0)


def no_show(daemon: Daemon, phone: str = "+79161234567") -> str:
    """An administrator marks the client's visit a no-show in the sandboxed YCLIENTS, which sends its record
    webhook; the sandbox's base URL, to read the other emulators' state."""
    base = f"http://127.0.0.1:{daemon.port}/_sandbox"
    record = next(r for r in get_json(f"{base}/booking/_emulator/state")["records"] if r["client"]["phone"] == phone)
    post_json(f"{base}/booking/_emulator/attendance", {"record_id": record["id"], "attendance": -1})
    return base
