"""Done-when of issue 13 for YCLIENTS: a tier change leaves one tier category, through `automator test --sandbox` on
a project's real files (the yclients connector performs the rule against its emulator)."""
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
  booking: {type: yclients, company_id: 42, partner_token: "${env:YC_P}", user_token: "${env:YC_U}",
            hook_secret: "${env:YC_H}", branch: main, category_groups: {tier: [Gold, Silver, Bronze]}}
  forms: {type: local, events: {loyalty.tier: {entity: client, data: {tier: text}}, loyalty.check: {entity: client}}}
"""

RULES = """\
rules:
  - id: promote
    when: {event: loyalty.tier}
    do:
      - client.set_category: {category: "{{ event.tier }}"}
        via: booking
  - id: report
    when: {event: loyalty.check}
    do:
      - notify: {to: admin, text: "{{ len(client.categories) }} categories; gold: {{ contains(client.categories, 'Gold') }}, silver: {{ contains(client.categories, 'Silver') }}, allergy: {{ contains(client.categories, 'Аллергия') }}"}
"""

TEST = """\
name: a tier change leaves one tier category
load: ..
now: 2026-03-02T10:00:00+03:00
given:
  - {kind: client, id: 77, name: Анна, phone: "+79161234567", categories: [Silver, Аллергия]}
when:
  - {event: loyalty.tier, entity: {kind: client, id: 77}, data: {tier: %s}}
  - {event: loyalty.check, entity: {kind: client, id: 77}}
expect:
  - {action: client.set_category, params: {category: %s}, count: 1}
  - {action: notify, params: {text: "%s"}, count: 1}
"""


def project(tmp_path: Path, test: str) -> Path:
    (tmp_path / "automator.yaml").write_text(CONFIG)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "loyalty.yaml").write_text(RULES)
    (tmp_path / "rules" / "loyalty.test.yaml").write_text(textwrap.dedent(test))
    return tmp_path


def run(root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["test", str(root / "rules"), "--sandbox"], catch_exceptions=False)
    return result.exit_code, result.output


def test_a_tier_change_leaves_one_tier_category(tmp_path: Path) -> None:
    # Silver gives way to Gold; the allergy staff noted as a category stays. What the client has afterwards is
    # what YCLIENTS answered the PUT with, read back into the store by the action's client.updated.
    root = project(tmp_path, TEST % ("Gold", "Gold", "2 categories; gold: true, silver: false, allergy: true"))
    assert run(root) == (0, "1 passed, 0 failed\n")


def test_the_test_fails_when_the_tiers_would_pile_up(tmp_path: Path) -> None:
    # The same expectation of a client who kept Silver beside Gold fails: the test above can fail.
    root = project(tmp_path, TEST % ("Gold", "Gold", "3 categories; gold: true, silver: true, allergy: true"))
    code, out = run(root)
    assert code == 1 and "2 categories; gold: true, silver: false, allergy: true" in out
