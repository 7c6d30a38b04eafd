"""`automator validate`: every mistake an admin can make, reported at its exact file:line:col with a hint."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import automator.config.load as load_module
from automator.cli import cli
from automator.config.load import builtin_connectors, load_project
from automator.config.problems import Problem
from automator.config.schemas import SchemaSet
from automator.connector import Connector, action
from automator_connectors.local import LocalConnector

RULES = "rules/main.yaml"
PIPELINES = "pipelines/rehabilitation.yaml"
CONFIG = "automator.yaml"

AUTOMATOR_YAML = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sat}
connectors:
  crm: {type: local}
  sms: {type: local}
  forms:
    type: local
    secret: "${env:FORMS_TOKEN}"
    events:
      nps.received: {entity: client, data: {score: {type: number}}}
settings:
  review_url: https://example.com/review
"""

PIPELINES_YAML = """\
pipelines:
  rehabilitation:
    connector: crm
    stages:
      new: {id: "C4:NEW"}
      thinking: {id: "C4:PREPARATION"}
      warmed_up: {id: "C4:UC_WARM", sla: 1d}
      booked: {id: "C4:UC_BOOKED"}
      won: {id: "C4:WON", outcome: won}
      lost: {id: "C4:LOSE", outcome: lost}
"""

CLEAN_RULES = """\
rules:
  - id: welcome
    when: {event: booking.created}
    do:
      - sms.send: {to: "{{ client.phone }}", text: "Ждём вас, {{ client.name }}"}
"""

_SCHEMAS = SchemaSet()
CRON_HINT = "cron is 'minute hour day-of-month month day-of-week', e.g. '0 10 * * *'"
HOURS_HINT = "add `branches:` with hours to automator.yaml (or name a `branch:`)"


def P(line: int, col: int, message: str, hint: str | None = None, path: str = RULES) -> Problem:
    """A problem as the admin should read it (in the rules file unless `path` says otherwise)."""
    return Problem(path, line, col, message, hint)


@pytest.fixture(autouse=True)
def shared_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    """One SchemaSet for the whole file: building one checks every schema (~0.1 s), and they never change."""
    monkeypatch.setattr(load_module, "SchemaSet", lambda *a, **k: SchemaSet(*a, **k) if a or k else _SCHEMAS)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """write(rules=..., config=..., pipelines=..., files={...}) -> the project folder; paths show relative."""
    monkeypatch.chdir(tmp_path)  # problems name files relative to the working directory, as an admin types them

    def write(rules: str | None = CLEAN_RULES, *, config: str = AUTOMATOR_YAML, pipelines: str = PIPELINES_YAML,
              files: dict[str, str | bytes] | None = None) -> Path:
        (tmp_path / CONFIG).write_text(textwrap.dedent(config), encoding="utf-8")
        (tmp_path / "pipelines").mkdir(exist_ok=True)
        (tmp_path / PIPELINES).write_text(textwrap.dedent(pipelines), encoding="utf-8")
        (tmp_path / "rules").mkdir(exist_ok=True)
        if rules is not None:
            (tmp_path / RULES).write_text(textwrap.dedent(rules), encoding="utf-8")
        for name, content in (files or {}).items():
            target = tmp_path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(textwrap.dedent(content), encoding="utf-8")
        return tmp_path
    return write


def validate_cli(root: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", str(root)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def assert_problems(root: Path, expected: list[Problem], **load_kwargs: Any) -> None:
    """Exactly these problems, in this order, from load_project and from `automator validate`."""
    project, problems = load_project(root, **load_kwargs)
    assert problems == expected
    assert project is None
    if load_kwargs:  # the CLI always uses the installed connector types
        return
    code, out, err = validate_cli(root)
    assert code == 1
    assert out == "".join(p.format() + "\n" for p in expected)
    assert err == f"{len(expected)} problem{'' if len(expected) == 1 else 's'} found\n"


# ---------------------------------------------------------------- a clean project, and the output format

def test_a_clean_project_exits_0_with_a_one_line_summary(project: Any) -> None:
    root = project(config=AUTOMATOR_YAML.replace("sms: {type: local}", 'sms: {type: local, secret: "${env:SMS_HOOK}"}'))
    loaded, problems = load_project(root)
    assert problems == [] and loaded is not None
    assert [r.id for r in loaded.rules] == ["welcome"]
    code, out, err = validate_cli(root)
    assert (code, out) == (0, "ok: 1 rule, 1 pipeline, 3 connectors in 3 files\n")
    assert err == OPEN_CRM_WARNING  # crm has no secret (below); sms has one


OPEN_CRM_WARNING = ("automator.yaml:5:3: warning: connector 'crm' (local) has no `secret` set: it accepts no webhooks "
                    "(it still performs actions)\n    hint: set `secret: \"${env:NAME}\"` to receive them\n")


def test_a_connector_that_cannot_authenticate_webhooks_is_a_warning(project: Any) -> None:
    root = project()  # crm and sms: local, no secret
    code, out, err = validate_cli(root)
    assert (code, out) == (0, "ok: 1 rule, 1 pipeline, 3 connectors in 3 files\n")
    assert err == OPEN_CRM_WARNING + OPEN_CRM_WARNING.replace(":5:3:", ":6:3:").replace("'crm'", "'sms'")


def test_a_type_that_names_no_webhook_authentication_is_a_warning(project: Any) -> None:
    from automator.config.webhooks import unauthenticated_webhooks
    from automator.model import Event

    class Unsigned(Connector):
        type = "unsigned"

        def parse(self, request: Any) -> list[Event]:
            return []

    class Signed(Unsigned):
        type = "signed"
        webhook_auth = ("key",)

        @action("sms.send")
        def sms_send(self, params: Any, key: str) -> Any:
            return None

    root = project(config=AUTOMATOR_YAML.replace("crm: {type: local}", "crm: {type: unsigned}")
                   .replace("sms: {type: local}", 'sms: {type: signed, key: "${env:K}"}'))
    types = {"local": LocalConnector, "unsigned": Unsigned, "signed": Signed}
    loaded, problems = load_project(root, connector_types=types)
    assert loaded is not None, problems
    assert unauthenticated_webhooks(loaded, types) == [Problem(
        CONFIG, 5, 3, "connector 'crm' (unsigned) declares no way to authenticate webhooks: it accepts none "
        "(it still performs actions)", severity="warning")]


def test_each_problem_is_one_line_with_an_indented_hint_line(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {event: booking.created}
            if: "event.score >="
            do:
              - deal.mvoe: {stage: won}
        """)
    code, out, _ = validate_cli(root)
    assert code == 1
    assert out.splitlines() == [
        "rules/main.yaml:4:9: error: expression 'event.score >=': invalid syntax",
        "rules/main.yaml:6:9: error: unknown action 'deal.mvoe'",
        "    hint: did you mean 'deal.move'?",
    ]


# ---------------------------------------------------------------- mistakes inside one rules file

RULE_MISTAKES = [
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - sms.send: {to: "{{ client.phone }}", text: Hi}
                via: smss
        """, [P(6, 14, "unknown connector 'smss'", "did you mean 'sms'?")], id="via-unknown-connector-typo"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - sms.send: {to: "{{ client.phone }}", text: Hi}
                via: telegram
        """, [P(6, 14, "unknown connector 'telegram'", "define it under `connectors:` in automator.yaml")],
        id="via-unknown-connector"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - deal.mvoe: {stage: won}
        """, [P(5, 9, "unknown action 'deal.mvoe'", "did you mean 'deal.move'?")], id="unknown-action"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - crm.call: {to: "{{ client.phone }}"}
        """, [P(5, 9, "unknown action 'crm.call'",
                "actions are deal.create, deal.move, task.create, sms.send, … (see `automator connectors`)")],
        id="unknown-action-no-close-name"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - deal.create: {pipeline: rehabilitaton, stage: new, title: Hi}
        """, [P(5, 33, "unknown pipeline 'rehabilitaton'", "did you mean 'rehabilitation'?")],
        id="unknown-pipeline-in-deal.create"),
    pytest.param("""\
        rules:
          - id: r
            when: {changed: deal.stage, pipeline: rehab, to: won}
            do:
              - deal.move: {stage: booked}
              - deal.move: {stage: new}
        """, [P(3, 43, "unknown pipeline 'rehab'", "known pipelines: rehabilitation")],
        id="unknown-pipeline-in-trigger-reported-once"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.updated}
            do:
              - deal.create: {pipeline: rehabilitation, stage: warmed, title: Hi}
        """, [P(5, 56, "unknown stage 'warmed' in pipeline 'rehabilitation'", "did you mean 'warmed_up'?")],
        id="unknown-stage-in-deal.create"),
    pytest.param("""\
        rules:
          - id: r
            when: {changed: deal.stage, pipeline: rehabilitation, to: thinking}
            do:
              - deal.move: {stage: warmed}
        """, [P(5, 28, "unknown stage 'warmed' in pipeline 'rehabilitation'", "did you mean 'warmed_up'?")],
        id="unknown-stage-in-deal.move-of-the-trigger-pipeline"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - deal.move: {stage: warmed}
        """, [P(5, 28, "unknown stage 'warmed'", "did you mean 'warmed_up'?")],
        id="unknown-stage-in-deal.move-any-pipeline"),
    pytest.param("""\
        rules:
          - id: r
            when: {changed: deal.stage, pipeline: rehabilitation, from: thinkng, to: warmed}
            do:
              - stop: true
        """, [P(3, 65, "unknown stage 'thinkng' in pipeline 'rehabilitation'", "did you mean 'thinking'?"),
              P(3, 78, "unknown stage 'warmed' in pipeline 'rehabilitation'", "did you mean 'warmed_up'?")],
        id="unknown-stage-in-changed-from-and-to"),
    pytest.param("""\
        rules:
          - id: r
            when:
              changed: deal.stage
              pipeline: rehabilitation
              to: [won, warmed]
            do:
              - stop: true
        """, [P(6, 17, "unknown stage 'warmed' in pipeline 'rehabilitation'", "did you mean 'warmed_up'?")],
        id="unknown-stage-in-a-list-points-at-the-item"),
    pytest.param("""\
        rules:
          - id: r
            when: {held: deal.stage, pipeline: rehabilitation, is: warmed, for: 1d}
            do:
              - stop: true
        """, [P(3, 60, "unknown stage 'warmed' in pipeline 'rehabilitation'", "did you mean 'warmed_up'?")],
        id="unknown-stage-in-held-is"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            if: "cliet.name == 'Анна'"
            do:
              - stop: true
        """, [P(4, 9, "expression \"cliet.name == 'Анна'\": unknown name 'cliet'", "did you mean 'client'?")],
        id="unknown-variable-in-expression"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - sms.send: {to: "{{ cliet.phone }}", text: Hi}
        """, [P(5, 24, "template '{{ cliet.phone }}': unknown name 'cliet'", "did you mean 'client'?")],
        id="unknown-variable-in-template"),
    pytest.param("""\
        rules:
          - id: r
            when: {schedule: "0 10 * * *"}
            for_each: {kind: client, where: "days_sinse(client.last_visit_at) > 60"}
            do:
              - stop: true
        """, [P(4, 37, "expression 'days_sinse(client.last_visit_at) > 60': unknown function 'days_sinse'",
                "did you mean 'days_since'?")], id="unknown-function"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.updated}
            do:
              - sms.send: {to: "{{ client.phone }}", text: "{{ days_sinse(client.last_visit_at) }} days"}
        """, [P(5, 52, "template '{{ days_sinse(client.last_visit_at) }} days': unknown function 'days_sinse'",
                "did you mean 'days_since'?")], id="unknown-function-in-template"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - sms.send: {to: "{{ client.phone }}", text: "Отзыв: {{ settings.reviw_url }}"}
        """, [P(5, 52, "unknown setting 'reviw_url'", "did you mean 'review_url'?")], id="unknown-setting"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            if: "settings.ads_url != ''"
            do:
              - stop: true
        """, [P(4, 9, "unknown setting 'ads_url'", "add it under `settings:` in automator.yaml")],
        id="unknown-setting-no-close-name"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - set: {count: 1}
              - sms.send: {to: "{{ client.phone }}", text: "{{ vars.x }}"}
        """, [P(6, 52, "unknown variable 'vars.x'", "set it first with a `set:` step")], id="vars-never-set"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - set: {count: 1}
              - if: "vars.cuont > 1"
                then: [{stop: true}]
        """, [P(6, 13, "unknown variable 'vars.cuont'", "did you mean 'count'?")], id="vars-typo"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            if: "event.score >="
            do:
              - stop: true
        """, [P(4, 9, "expression 'event.score >=': invalid syntax")], id="expression-syntax"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            if: "days_since(client.last_visit_at > 60"
            do:
              - stop: true
        """, [P(4, 9, "expression 'days_since(client.last_visit_at > 60': invalid syntax: '(' was never closed")],
        id="expression-unclosed-paren"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - sms.send: {to: "{{ client.phone }}", text: "Привет, {{ client.name "}
        """, [P(5, 52, "template 'Привет, {{ client.name ': '{{' is never closed",
                "close the placeholder with '}}'")],
        id="template-unbalanced-open"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - sms.send: {to: "{{ client.phone }}", text: "Привет, client.name }}"}
        """, [P(5, 52, "template 'Привет, client.name }}': '}}' without a matching '{{'",
                "remove it or open a placeholder with '{{'")], id="template-unbalanced-close"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            if: "().__class__"
            do:
              - stop: true
        """, [P(4, 9, "expression '().__class__': fields starting with '_' cannot be read ('__class__')")],
        id="sandbox-escape-in-condition"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - sms.send: {to: "{{ client.__class__ }}", text: Hi}
        """, [P(5, 24, "template '{{ client.__class__ }}': fields starting with '_' cannot be read ('__class__')")],
        id="sandbox-escape-in-template"),
    pytest.param("""\
        rules:
          - id: r
            when: {schedule: "0 10 * *"}
            do:
              - stop: true
        """, [P(3, 22, 'schedule: expected a cron line such as "0 10 * * *" (minute hour day month weekday), '
                       "end_of_day or start_of_day, got '0 10 * *'")], id="cron-malformed"),
    pytest.param("""\
        rules:
          - id: r
            when: {schedule: "61 10 * * *"}
            do:
              - stop: true
        """, [P(3, 22, "bad cron expression '61 10 * * *': minute 61 is out of range 0-59", CRON_HINT)],
        id="cron-out-of-range"),
    pytest.param("""\
        rules:
          - id: r
            when: {schedule: "0 0 30 2 *"}
            do:
              - stop: true
        """, [P(3, 22, "never fires: February has no day 30", CRON_HINT)], id="cron-never-matches"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - wait: 14x
        """, [P(5, 15, "wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '14x'")],
        id="duration-wait"),
    pytest.param("""\
        rules:
          - id: r
            when: {held: booking.status, is: waiting, for: 5 minutes}
            do:
              - stop: true
        """, [P(3, 52, "for: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '5 minutes'", "write '5m'")],
        id="duration-held-for"),
    pytest.param("""\
        rules:
          - id: welcome
            when: {event: booking.created}
            do:
              - stop: true
          - id: welcome
            when: {event: booking.updated}
            do:
              - stop: true
        """, [P(6, 9, "duplicate rule id 'welcome'", "first defined at rules/main.yaml:2:5")],
        id="duplicate-rule-id-in-one-file"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - stop: first
            do:
              - stop: second
        """, [P(6, 5, "duplicate key 'do' (first defined at line 4)",
                "the file is refused: a key may appear once in a mapping; keep the 'do' of line 4 or of line 6, "
                "or merge the two")], id="duplicate-yaml-key"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            per: clinet
            mode: restrat
            do:
              - stop: true
        """, [P(4, 10, "per: expected client, booking, deal, entity or a template such as \"{{ client.phone }}\", "
                       "got 'clinet'", "did you mean 'client'?"),
              P(5, 11, "mode: 'restrat' is not one of single, restart, queued, parallel", "did you mean 'restart'?")],
        id="per-and-mode"),
    pytest.param("""\
        rules:
          - id: r
            when: {held: booking.status, is: waiting, for: 2h, until: end_of_day}
            do:
              - stop: true
        """, [P(3, 11, "use either 'for' or 'until' in 'held', not both",
                "'for' waits a duration from the change; 'until' waits for a moment")], id="held-for-and-until"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created}
            for_each: {items: "client.tags"}
            do:
              - stop: true
        """, [P(4, 23, "`items` 'client.tags' does not give records a run can be about",
                "write a lookup of bookings or deals, such as bookings_of(client, status='confirmed') or "
                "where(deals_of(client), stage='new'); the kinds are booking, deal")], id="for_each-items-not-records"),
    pytest.param("""\
        rules:
          - id: r
            when: {event: booking.created, wehre: "client.vip"}
            do:
              - stop: true
        """, [P(3, 36, "unknown key 'wehre'", "did you mean 'where'?")], id="unknown-key-in-trigger"),
    pytest.param("""\
        rules:
          - id: r
            when: {held: booking.status, is: waiting, for: 2 hours}
            do:
              - wait: 3 дня
              - stop: true
        """, [P(3, 52, "for: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '2 hours'", "write '2h'"),
              P(5, 15, "wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '3 дня'", "write '3d'")],
                 id="durations-spelled-out"),
]


@pytest.mark.parametrize(("rules", "expected"), RULE_MISTAKES)
def test_rule_mistake(project: Any, rules: str, expected: list[Problem]) -> None:
    assert_problems(project(rules), expected)


def test_a_sandbox_escape_is_refused_at_load_not_at_run(project: Any) -> None:
    root = project("""\
        rules:
          - id: escape
            when: {event: booking.created}
            if: "().__class__.__base__.__subclasses__()"
            do:
              - stop: true
        """)
    loaded, problems = load_project(root)
    assert loaded is None
    assert problems == [P(4, 9, "expression '().__class__.__base__.__subclasses__()': methods cannot be called "
                                "(.__subclasses__())", "use library functions such as get(), lower(), contains()")]


# ---------------------------------------------------------------- end_of_day without business hours

NO_BRANCHES = """\
timezone: Europe/Moscow
connectors:
  crm: {type: local}
"""


def test_end_of_day_needs_business_hours(project: Any) -> None:
    root = project("""\
        rules:
          - id: nightly
            when: {schedule: end_of_day}
            do:
              - stop: true
          - id: unconfirmed
            when: {held: booking.status, is: waiting, until: end_of_day}
            do:
              - wait: {until: start_of_day}
        """, config=NO_BRANCHES)
    assert_problems(root, [
        P(3, 22, "'end_of_day' needs business hours", HOURS_HINT),
        P(7, 54, "'end_of_day' needs business hours", HOURS_HINT),
        P(9, 23, "'start_of_day' needs business hours", "add `branches:` with hours to automator.yaml"),
    ])


def test_unknown_branch(project: Any) -> None:
    root = project("""\
        rules:
          - id: nightly
            when: {schedule: end_of_day, branch: mian}
            do:
              - wait: {until: start_of_day, branch: spb}
        """)
    assert_problems(root, [
        P(3, 42, "unknown branch 'mian'", "did you mean 'main'?"),
        P(5, 45, "unknown branch 'spb'", "known branches: main"),
    ])


# ---------------------------------------------------------------- unknown keys

def test_unknown_key_is_reported_at_the_key_with_a_hint(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            whn: {event: booking.created}
            do:
              - stop: true
        """)
    _, problems = load_project(root)
    assert P(3, 5, "unknown key 'whn'", "did you mean 'when'?") in problems
    code, out, _ = validate_cli(root)
    assert code == 1
    assert "rules/main.yaml:3:5: error: unknown key 'whn'\n    hint: did you mean 'when'?\n" in out


def test_a_misspelt_required_key_is_one_problem(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            whn: {event: booking.created}
            do:
              - stop: true
        """)
    assert_problems(root, [P(3, 5, "unknown key 'whn'", "did you mean 'when'?")])


# ---------------------------------------------------------------- automator.yaml and pipelines

def test_unknown_connector_in_a_pipeline(project: Any) -> None:
    root = project(pipelines=PIPELINES_YAML.replace("connector: crm", "connector: crmm"))
    assert_problems(root, [P(3, 16, "unknown connector 'crmm'", "did you mean 'crm'?", path=PIPELINES)])


def test_unknown_connector_in_a_pipeline_without_a_close_name(project: Any) -> None:
    root = project(pipelines=PIPELINES_YAML.replace("connector: crm", "connector: bitrix"))
    assert_problems(root, [P(3, 16, "unknown connector 'bitrix'", "define it under `connectors:` in automator.yaml",
                             path=PIPELINES)])


def test_unknown_connector_type_lists_the_installed_types(project: Any) -> None:
    root = project(config=AUTOMATOR_YAML.replace("sms: {type: local}", "sms: {type: sendgrid}"))
    installed = ", ".join(sorted(builtin_connectors()))
    assert_problems(root, [P(6, 15, "unknown connector type 'sendgrid'", f"installed types: {installed}",
                             path=CONFIG)])


class TelegramStub(Connector):
    """A connector type that performs one action only."""

    type = "telegram"

    @action("message.send")
    def send(self, params: Any, key: str) -> Any:
        raise NotImplementedError


def test_unknown_connector_type_with_given_types(project: Any) -> None:
    root = project(config=AUTOMATOR_YAML.replace("sms: {type: local}", "sms: {type: sendgrid}"))
    assert_problems(root, [P(6, 15, "unknown connector type 'sendgrid'", "installed types: local, telegram",
                             path=CONFIG)],
                    connector_types={"local": LocalConnector, "telegram": TelegramStub})


def test_misspelt_connector_type_gets_did_you_mean(project: Any) -> None:
    root = project(config=AUTOMATOR_YAML.replace("sms: {type: local}", "sms: {type: lcoal}"))
    assert_problems(root, [P(6, 15, "unknown connector type 'lcoal'", "did you mean 'local'?", path=CONFIG)])


def test_an_unknown_connector_type_is_not_echoed_where_the_connector_is_used(project: Any) -> None:
    # One mistake (a type that is not installed), one problem: not "unknown connector 'crm'" in the pipeline,
    # nor "unknown action 'sms.send'" at every step the connector would perform.
    root = project("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - sms.send: {to: "{{ client.phone }}", text: Hi}
                via: sms
              - deal.move: {stage: won}
        """, config=AUTOMATOR_YAML.replace("crm: {type: local}", "crm: {type: bitrix24}")
                                  .replace("sms: {type: local}", "sms: {type: smsru}"))
    assert_problems(root, [
        P(5, 15, "unknown connector type 'bitrix24'", "installed types: local, telegram", path=CONFIG),
        P(6, 15, "unknown connector type 'smsru'", "installed types: local, telegram", path=CONFIG),
    ], connector_types={"local": LocalConnector, "telegram": TelegramStub})


def test_an_action_no_configured_connector_performs(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {event: segment.changed}
            do:
              - message.send: {to: "{{ client.phone }}", text: Hi}
              - sms.send: {to: "{{ client.phone }}", text: Hi}
        """, config="timezone: Europe/Moscow\nconnectors:\n  tg: {type: telegram}\n", pipelines="pipelines: {}\n")
    assert_problems(root, [P(6, 9, "no configured connector can perform 'sms.send'",
                             "add a connector that performs it under `connectors:` in automator.yaml "
                             "(`automator connectors` lists them)")],
                    connector_types={"local": LocalConnector, "telegram": TelegramStub})


@pytest.mark.parametrize(("zone", "hint"), [
    ("Europe/Moskow", "did you mean 'Europe/Moscow'?"),
    ("europe/moscow", "did you mean 'Europe/Moscow'?"),
    ("Mars/Olympus", "use an IANA name such as Europe/Moscow"),
    ("MSK", "use an IANA name such as Europe/Moscow"),  # not "did you mean 'MST'?", a US time zone
])
def test_unknown_timezone(project: Any, zone: str, hint: str) -> None:
    root = project(config=AUTOMATOR_YAML.replace("Europe/Moscow", zone))
    assert_problems(root, [P(1, 11, f"unknown timezone '{zone}'", hint, path=CONFIG)])


def test_branch_mistakes_are_each_reported_once_at_their_place(project: Any) -> None:
    root = project(config="""\
        timezone: Europe/Moscow
        branches:
          main: {hours: "09:00-21:00", days: mon-sat, timezone: MSK}
          spb: {hours: "9-21"}
        default_branch: mian
        connectors:
          crm: {type: local}
          sms: {type: local}
        settings:
          review_url: https://example.com/review
        """)
    assert_problems(root, [
        P(3, 57, "unknown timezone 'MSK'", "use an IANA name such as Europe/Moscow", path=CONFIG),
        P(4, 16, "hours: expected opening and closing time such as \"09:00-21:00\", got '9-21'", path=CONFIG),
        P(5, 17, "unknown branch 'mian'", "did you mean 'main'?", path=CONFIG),
    ])


def test_a_stage_requirement_no_action_sets(project: Any) -> None:
    pipelines = PIPELINES_YAML.replace('booked: {id: "C4:UC_BOOKED"}',
                                       'booked: {id: "C4:UC_BOOKED", requires: [visit_at, service]}')
    root = project("""\
        rules:
          - id: r
            when: {changed: deal.stage, pipeline: rehabilitation, to: thinking}
            do:
              - deal.update: {fields: {service: Массаж}}
        """, pipelines=pipelines)
    assert_problems(root, [P(8, 47, "stage 'booked' requires 'visit_at', but no action sets it",
                             "set it with `deal.update: {fields: {visit_at: ...}}` or in deal.create `fields:`",
                             path=PIPELINES)])


def test_a_bad_sla_is_reported_once(project: Any) -> None:
    root = project(pipelines=PIPELINES_YAML.replace("sla: 1d", "sla: 1 day"))
    assert_problems(root, [P(7, 42, "sla: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '1 day'",
                             "write '1d'", path=PIPELINES)])


def test_yaml_1_1_gotchas_load_as_written(project: Any) -> None:
    root = project(config=AUTOMATOR_YAML + """\
  opens: 9:30
  phone: +79161234567
  country: NO
  confirm: yes
  code: 0755
  since: 2026-03-02
""")
    loaded, problems = load_project(root)
    assert problems == [] and loaded is not None
    settings = loaded.config.settings
    assert settings["opens"] == "9:30"
    assert settings["phone"] == "+79161234567"
    assert settings["country"] == "NO"
    assert settings["confirm"] == "yes"
    assert settings["code"] == "0755"
    assert settings["since"] == "2026-03-02"
    assert validate_cli(root)[0] == 0


# ---------------------------------------------------------------- duplicate ids across files

def test_duplicate_rule_id_across_two_files_names_the_first(project: Any) -> None:
    root = project(files={"rules/other/more.yaml": """\
        rules:
          - id: welcome
            when: {event: booking.updated}
            do:
              - stop: true
        """})
    assert_problems(root, [P(2, 9, "duplicate rule id 'welcome'", "first defined at rules/main.yaml:2:5",
                             path="rules/other/more.yaml")])


# ---------------------------------------------------------------- every problem in one run

def test_five_mistakes_in_one_file_give_five_problems_in_line_order(project: Any) -> None:
    root = project("""\
        rules:
          - id: five
            when: {changed: deal.stage, pipeline: rehabilitation, to: warmed}
            if: "cliet.vip"
            mode: restrat
            do:
              - deal.mvoe: {stage: won}
              - wait: 14x
        """)
    assert_problems(root, [
        P(3, 63, "unknown stage 'warmed' in pipeline 'rehabilitation'", "did you mean 'warmed_up'?"),
        P(4, 9, "expression 'cliet.vip': unknown name 'cliet'", "did you mean 'client'?"),
        P(5, 11, "mode: 'restrat' is not one of single, restart, queued, parallel", "did you mean 'restart'?"),
        P(7, 9, "unknown action 'deal.mvoe'", "did you mean 'deal.move'?"),
        P(8, 15, "wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '14x'"),
    ])
    _, out, _ = validate_cli(root)
    assert len([line for line in out.splitlines() if ": error: " in line]) == 5


def test_a_broken_rule_file_does_not_hide_problems_in_another(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - deal.mvoe: {stage: won}
        """, files={"rules/broken.yaml": """\
        rules:
          - id: broken
            when: {event: booking.created
            do:
              - stop: true
        """})
    assert_problems(root, [
        P(4, 7, "did not find expected ',' or '}'", "the { at line 3, column 11 is not closed: end it with '}'",
          path="rules/broken.yaml"),
        P(5, 9, "unknown action 'deal.mvoe'", "did you mean 'deal.move'?"),
    ])


def test_a_schema_problem_in_a_step_does_not_hide_its_other_mistakes(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - deal.move: {stage: warmed, dael: 5}
              - deal.create: {pipeline: rehabilitation, stage: nw}
              - sms.send: {to: "{{ cliet.phone }}"}
        """)
    assert_problems(root, [
        P(5, 28, "unknown stage 'warmed'", "did you mean 'warmed_up'?"),
        P(5, 36, "unknown key 'dael'", "did you mean 'deal'?"),
        P(6, 22, "missing required key 'title'",
          "title: the deal's title; may use templates, such as \"Реабилитация: {{ client.name }}\""),
        P(6, 56, "unknown stage 'nw' in pipeline 'rehabilitation'", "did you mean 'new'?"),
        P(7, 19, "missing required key 'text'", "text: the message (up to 2000 characters); may use templates"),
        P(7, 24, "template '{{ cliet.phone }}': unknown name 'cliet'", "did you mean 'client'?"),
    ])


def test_a_schema_problem_in_an_if_branch_does_not_hide_the_rest_of_the_if(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - if: "cliet.vip"
                then:
                  - deal.mvoe: {stage: won}
                else:
                  - wait: 3x
        """)
    assert_problems(root, [
        P(5, 13, "expression 'cliet.vip': unknown name 'cliet'", "did you mean 'client'?"),
        P(7, 13, "unknown action 'deal.mvoe'", "did you mean 'deal.move'?"),
        P(9, 19, "wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '3x'"),
    ])


def test_a_broken_trigger_does_not_hide_the_rest_of_the_rule(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {evnt: booking.created}
            if: "cliet.vip"
            per: "{{ cliet.id }}"
            do:
              - deal.mvoe: {stage: won}
        """)
    assert_problems(root, [
        P(3, 11, "'when' needs one of: event, changed, held, schedule", "did you mean 'event'?"),
        P(4, 9, "expression 'cliet.vip': unknown name 'cliet'", "did you mean 'client'?"),
        P(5, 10, "template '{{ cliet.id }}': unknown name 'cliet'", "did you mean 'client'?"),
        P(7, 9, "unknown action 'deal.mvoe'", "did you mean 'deal.move'?"),
    ])


def test_a_rule_with_a_bad_id_or_no_steps_is_still_checked(project: Any) -> None:
    root = project("""\
        rules:
          - id: Bad Id
            when: {event: booking.created, where: "cliet.x"}
            do:
              - stop: true
          - id: no-steps
            when: {event: booking.created, where: "cliet.y"}
          - when: {event: booking.created}
            do:
              - stop: true
          - when: {event: booking.updated}
            do:
              - stop: true
        """)
    assert_problems(root, [
        P(2, 9, "id: expected an id in lower-case letters, digits, '-', '_' and '.', such as "
                "no-show-to-rehabilitation, got 'Bad Id'"),
        P(3, 43, "expression 'cliet.x': unknown name 'cliet'", "did you mean 'client'?"),
        P(6, 5, "missing required key 'do'",
          "do: the steps to run, in order: actions such as deal.move, and wait, if, set, emit, stop"),
        P(7, 43, "expression 'cliet.y': unknown name 'cliet'", "did you mean 'client'?"),
        P(8, 5, "missing required key 'id'",
          "id: the rule's id, unique in the project, such as no-show-to-rehabilitation"),
        P(11, 5, "missing required key 'id'",
          "id: the rule's id, unique in the project, such as no-show-to-rehabilitation"),
    ])


def test_a_single_equals_sign_gets_a_hint(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {event: booking.created}
            if: "client.name = 'Анна'"
            do:
              - stop: true
        """)
    _, problems = load_project(root)
    assert len(problems) == 1 and (problems[0].line, problems[0].col) == (4, 9)
    assert "==" in (problems[0].hint or "")


def test_params_that_are_not_a_mapping_are_one_problem(project: Any) -> None:
    root = project("""\
        rules:
          - id: r
            when: {event: booking.created}
            do:
              - deal.create: 5
        """)
    _, problems = load_project(root)
    assert [(p.line, p.col) for p in problems] == [(5, 22)]


# ---------------------------------------------------------------- files that cannot be read

def test_an_alias_bomb_is_refused_with_one_problem(project: Any) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    root = project(files={"rules/bomb.yaml": "\n".join(lines) + "\nrules: []\n"})
    # The 8th alias of line 5 takes the expansion over 100,000 nodes: that alias is named.
    assert_problems(root, [P(5, 36, "too many alias expansions (more than 100,000 nodes)",
                             "anchors and aliases may share blocks, not build huge documents",
                             path="rules/bomb.yaml")])


def test_a_50_mb_rule_file_is_refused_with_one_problem(project: Any) -> None:
    size = 50 * 1024 * 1024
    head = b"rules:\n"
    filler = b"# " + b"x" * 97 + b"\n"
    body = head + filler * ((size - len(head)) // len(filler))
    body += b"#" * (size - len(body) - 1) + b"\n"
    assert len(body) == size
    root = project(files={"rules/huge.yaml": body})
    assert_problems(root, [P(1, 1, "file is too large (52,428,800 bytes; the limit is 2,000,000)",
                             "split it into several files", path="rules/huge.yaml")])


def test_a_rule_file_that_is_not_utf8(project: Any) -> None:
    text = "rules:\n  - id: r\n    description: Напоминание\n"
    root = project(files={"rules/cp1251.yaml": text.encode("cp1251")})
    assert_problems(root, [P(3, 18, "file is not valid UTF-8 (byte 0xcd)", "save the file in UTF-8 encoding",
                             path="rules/cp1251.yaml")])


def test_an_env_reference_in_a_rule_is_refused_with_the_connector_setting_as_the_way(project: Any) -> None:
    # Params are rendered with webhook data and sent out: the environment is read in automator.yaml only.
    root = project("""\
        rules:
          - id: report
            when: {event: booking.created}
            do:
              - http.request:
                  method: POST
                  url: "https://api.example.com/hook"
                  headers: {Authorization: "Bearer ${env:API_TOKEN}", X-Trace: "{{ event.id }}"}
                via: api
        """, config=AUTOMATOR_YAML.replace("  sms: {type: local}\n", '  sms: {type: local}\n'
                                           '  api: {type: http, allow: ["api.example.com"]}\n'))
    hint = ("put the secret in the connector's settings in automator.yaml (the http connector: "
            "`headers: {Authorization: \"Bearer ${env:API_TOKEN}\"}`) and call it with `via:`")
    assert_problems(root, [P(8, 36, "`${env:…}` is not read in a rule: a rule's params are sent as written", hint)])
