"""`automator validate` knows what a rule can read: unknown fields and event types, the envelope trap, types.

Every case is a project written into a folder and checked with the CLI, as an admin runs it; the problem is
compared with its exact `path:line:col: error: message` and hint lines.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from automator.cli import cli
from automator.config.problems import Problem

RULES = "rules/main.yaml"

# A Bitrix24 CRM, YCLIENTS bookings and a form that posts NPS scores: the catalogue the rules are checked by.
CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sat}
connectors:
  crm: {type: bitrix24, webhook_url: "${env:B24}", application_token: "${env:B24_TOKEN}", roles: {admin: 1}}
  booking: {type: yclients, company_id: 1, partner_token: "${env:P}", user_token: "${env:U}", hook_secret: "${env:H}"}
  sms: {type: local}
  forms:
    type: local
    secret: "${env:FORMS_TOKEN}"
    events:
      nps.received: {entity: client, data: {score: number, comment: text, lead_source: text}}
settings:
  review_url: https://example.com/review
"""

PIPELINES = """\
pipelines:
  rehabilitation:
    connector: crm
    stages:
      new: {id: "C4:NEW"}
      booked: {id: "C4:UC_BOOKED"}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """write(rules, files=...) -> the project folder, with the working directory in it (paths show relative)."""
    monkeypatch.chdir(tmp_path)

    def write(rules: str, *, files: dict[str, str] | None = None, config: str = CONFIG) -> Path:
        (tmp_path / "automator.yaml").write_text(config, encoding="utf-8")
        (tmp_path / "pipelines").mkdir(exist_ok=True)
        (tmp_path / "pipelines" / "main.yaml").write_text(PIPELINES, encoding="utf-8")
        for name, text in {RULES: rules, **(files or {})}.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
        return tmp_path
    return write


def validate(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["validate", *(args or (str(root),))])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout


def P(line: int, col: int, message: str, hint: str | None = None) -> str:
    return Problem(RULES, line, col, message, hint).format() + "\n"


def rule(when: str, *steps: str, condition: str | None = None) -> str:
    lines = ["rules:", "  - id: r", f"    when: {when}"]
    if condition is not None:
        lines.append(f"    if: {condition}")
    lines += ["    do:", *(f"      - {step}" for step in steps)]
    return "\n".join(lines) + "\n"


MISTAKES = [
    pytest.param(rule("{event: booking.created}", 'sms.send: {to: "{{ client.phnoe }}", text: Hi}'),
                 P(5, 24, "template '{{ client.phnoe }}': unknown field 'client.phnoe'", "did you mean 'phone'?"),
                 id="client-field-in-template"),
    pytest.param(rule("{event: booking.created}", "stop: true", condition="\"booking.strats_at < now\""),
                 P(4, 9, "expression 'booking.strats_at < now': unknown field 'booking.strats_at'",
                   "did you mean 'starts_at'?"), id="booking-field-in-condition"),
    pytest.param(rule("{event: booking.created, where: \"deal.stgae == 'new'\"}", "stop: true"),
                 P(3, 43, "expression \"deal.stgae == 'new'\": unknown field 'deal.stgae'", "did you mean 'stage'?"),
                 id="deal-field-in-where"),
    pytest.param(rule("{event: nps.received}", "stop: true", condition="\"event.scroe >= 9\""),
                 P(4, 9, "expression 'event.scroe >= 9': unknown field 'event.scroe'", "did you mean 'score'?"),
                 id="event-data-field"),
    pytest.param(rule("{event: booking.created}", 'notify: {to: admin, text: "{{ event.sorce }}"}'),
                 P(5, 35, "template '{{ event.sorce }}': unknown field 'event.sorce'", "did you mean 'source'?"),
                 id="envelope-typo"),
    pytest.param("rules:\n  - id: r\n    when: {schedule: \"0 10 * * *\"}\n"
                 "    for_each: {kind: client, where: \"days_since(client.last_vist_at) > 60\"}\n"
                 "    do:\n      - notify: {to: admin, text: \"{{ entity.nmae }}\"}\n",
                 P(4, 37, "expression 'days_since(client.last_vist_at) > 60': unknown field 'client.last_vist_at'",
                   "did you mean 'last_visit_at'?")
                 + P(6, 35, "template '{{ entity.nmae }}': unknown field 'entity.nmae'", "did you mean 'name'?"),
                 id="for-each-kind"),
    pytest.param(rule("{changed: booking.stauts, to: arrived}", "stop: true"),
                 P(3, 21, "unknown field 'booking.stauts'", "did you mean 'status'?"), id="changed-field"),
    pytest.param(rule("{changed: booking.status, to: arrived}", 'notify: {to: admin, text: "{{ entity.strats_at }}"}'),
                 P(5, 35, "template '{{ entity.strats_at }}': unknown field 'entity.strats_at'",
                   "did you mean 'starts_at'?"), id="entity-is-the-trigger-kind"),
    pytest.param(rule("{event: booking.created}", 'notify: {to: admin, text: "{{ booking.client.name }}"}'),
                 P(5, 35, "template '{{ booking.client.name }}': booking.client is the id of a client, not the "
                          "client itself: it has no field 'name'", "read the linked client directly: client.name"),
                 id="a-field-of-an-id"),
    pytest.param(rule("{event: booking.create}", "stop: true"),
                 P(3, 19, "unknown event type 'booking.create'", "did you mean 'booking.created' (from booking, sms, forms)?"),
                 id="unknown-event-type"),
    pytest.param(rule("{event: invoice.overdue}", "stop: true"),
                 P(3, 19, "unknown event type 'invoice.overdue': no connector of this project produces it and no rule "
                          "emits it",
                   "known events: abonement.ending, booking.created, booking.deleted, booking.updated, "
                   "certificate.created, certificate.expiring, certificate.refused, client.created, client.deleted, "
                   "client.updated, deal.created, deal.deleted …; declare your own under the `events:` setting of a "
                   "`local` connector in automator.yaml"), id="unknown-event-type-no-guess"),
    # The envelope trap: event.source is the connector that sent the event, never the lead's channel.
    pytest.param(rule("{event: nps.received}", "stop: true", condition="\"event.source == 'instagram'\""),
                 P(4, 9, "expression \"event.source == 'instagram'\": event.source is the name of the connector "
                         "that sent the event (crm, booking, sms, forms, engine, timer), never 'instagram'",
                   "where the request came from is a data field: event.lead_source"), id="event-source-as-channel"),
    pytest.param(rule("{event: booking.updated}", "stop: true", condition="\"event.data.source == 'site'\""),
                 P(4, 9, "expression \"event.data.source == 'site'\": unknown field 'event.data.source': "
                         "booking.updated carries no data field 'source'",
                   "event.source (without .data) is the connector that sent the event"), id="event-data-source"),
    pytest.param(rule("{event: booking.updated}", 'notify: {to: admin, text: "{{ event.data.id }}"}'),
                 P(5, 35, "template '{{ event.data.id }}': unknown field 'event.data.id': booking.updated carries no "
                          "data field 'id'", "event.id (without .data) is the event's own id"), id="event-data-id"),
    # Types: what cannot be computed at run time.
    pytest.param(rule("{event: booking.created}", "wait: {until: \"booking.starts_at - 2\"}"),
                 P(5, 23, "expression 'booking.starts_at - 2': cannot apply '-' to a date-time (booking.starts_at) "
                          "and a number (2)",
                   "add or subtract a duration, such as booking.starts_at - duration('2h')"), id="datetime-minus-number"),
    pytest.param(rule("{event: booking.created}", "stop: true", condition="\"client.phone > 5\""),
                 P(4, 9, "expression 'client.phone > 5': cannot compare a text (client.phone) with a number (5)",
                   "convert with int(...) or float(...), or str(...)"), id="phone-greater-than-number"),
    pytest.param(rule("{event: booking.created}", "stop: true", condition="\"days_since(client.name) > 30\""),
                 P(4, 9, "expression 'days_since(client.name) > 30': days_since() expects a date-time or a date as "
                         "its first argument, got a text (client.name)",
                   "days_since() takes a date or date-time field, such as booking.starts_at or "
                   "client.last_visit_at"), id="days-since-a-name"),
    pytest.param(rule("{event: booking.created}", "stop: true", condition="\"len(booking.amount) > 0\""),
                 P(4, 9, "expression 'len(booking.amount) > 0': len() expects a text, a list or a record as its "
                         "first argument, got a number (booking.amount)",
                   "convert the number first: str(...)"), id="len-of-money"),
    pytest.param(rule("{event: nps.received}", "stop: true", condition="\"event.score >= 'nine'\""),
                 P(4, 9, "expression \"event.score >= 'nine'\": cannot compare a number (event.score) with a text "
                         "('nine')", "compare with a number, written without quotes, such as 9"),
                 id="score-against-text"),
    pytest.param(rule("{event: booking.created}", "stop: true", condition="\"booking.starts_at > '2026-03-01'\""),
                 P(4, 9, "expression \"booking.starts_at > '2026-03-01'\": cannot compare a date-time "
                         "(booking.starts_at) with a text ('2026-03-01')",
                   "convert the text: datetime('2026-03-01') or date('2026-03-01')"), id="datetime-against-text"),
    pytest.param(rule("{event: booking.created}", "stop: true", condition="\"booking.starts_at == today\""),
                 P(4, 9, "expression 'booking.starts_at == today': booking.starts_at is a date-time and today is a "
                         "date: they are never equal",
                   "compare dates with date(x), such as date(booking.starts_at) == today"),
                 id="datetime-equals-date"),
    # Values: a field with a few fixed values (a status) compared with one it never takes never fires.
    pytest.param(rule("{event: booking.created}", "stop: true", condition="\"booking.status == 'confirmd'\""),
                 P(4, 9, "expression \"booking.status == 'confirmd'\": booking.status is never 'confirmd': it is one "
                         "of confirmed, arrived, waiting, no_show, cancelled", "did you mean 'confirmed'?"),
                 id="status-typo-in-condition"),
    pytest.param(rule("{event: booking.updated, where: \"event.status in ['arrived', 'came']\"}", "stop: true"),
                 P(3, 43, "expression \"event.status in ['arrived', 'came']\": event.status is never 'came': it is "
                          "one of confirmed, arrived, waiting, no_show, cancelled"), id="status-list-in-where"),
    pytest.param(rule("{changed: booking.status, to: noshow}", "stop: true"),
                 P(3, 41, "booking.status is never 'noshow': it is one of confirmed, arrived, waiting, no_show, "
                          "cancelled", "did you mean 'no_show'?"), id="status-typo-in-changed"),
    pytest.param(rule("{held: booking.status, is: waitng, for: 1h}", "stop: true"),
                 P(3, 38, "booking.status is never 'waitng': it is one of confirmed, arrived, waiting, no_show, "
                          "cancelled", "did you mean 'waiting'?"), id="status-typo-in-held"),
]


@pytest.mark.parametrize(("rules", "expected"), MISTAKES)
def test_a_mistake_is_reported_at_its_place(project: Any, rules: str, expected: str) -> None:
    root = project(rules)
    assert validate(root) == (1, expected)


KNOWN = [
    # Dates and times are datetimes: the schemas' own example works, and so do comparisons with now.
    rule("{event: booking.created}", "wait: {until: \"booking.starts_at - duration('2h')\"}",
         condition="[\"booking.starts_at > now\", \"days_until(booking.starts_at) < 3\", \"date(booking.starts_at) == today\"]"),
    # get() and has() read optional fields; has() makes the field known to the rest of the rule.
    rule("{event: booking.created, where: \"has(event, 'deal')\"}", 'deal.move: {deal: "{{ event.deal }}", stage: new}',
         condition="\"not get(client, 'do_not_call', false)\""),
    # The envelope: event.source is compared with a connector's name.
    rule("{event: booking.created}", "stop: true", condition="\"event.source == 'booking' and event.entity.kind == 'booking'\""),
    # Unknown types are never errors: variables, get() results, the fields of an object.
    rule("{event: booking.created}", "set: {n: 1}", "stop: true",
         condition="\"vars.n > 'x' or get(client, 'x') - 2 > 0 or client.rfm.r > 3\""),
    # A listed value, and a value compared with something that is not a literal, are fine.
    rule("{changed: booking.status, from: waiting, to: no_show}", "stop: true",
         condition="\"booking.status != 'cancelled' and booking.status == prev.status\""),
    # A held rule's event is the fired timer.
    rule("{held: booking.status, is: waiting, for: 1h}", 'notify: {to: admin, text: "{{ event.data.rule }} {{ prev.status }}"}'),
]


@pytest.mark.parametrize("rules", KNOWN)
def test_what_can_be_read_is_not_an_error(project: Any, rules: str) -> None:
    root = project(rules)
    code, out = validate(root)
    assert (code, out.startswith("ok: ")) == (0, True), out


def test_fields_a_rule_emits_or_sets_are_known_to_every_rule(project: Any) -> None:
    root = project("""\
        rules:
          - id: thanks
            when: {event: nps.received}
            do:
              - emit: {event: visit.rated, entity: {kind: client, id: "{{ client.id }}"}, data: {rating: "{{ event.score }}"}}
              - emit: {event: client.updated, data: {loyal_since: "{{ now }}"}}
              - deal.update: {fields: {visit_at: "{{ now }}", service: massage}}
        """, files={"rules/other/more.yaml": """\
        rules:
          - id: rated
            when: {event: visit.rated}
            if: "event.rating >= 9 and has(client, 'loyal_since')"
            do:
              - notify: {to: admin, text: "{{ deal.service }} {{ client.loyal_since }} {{ entity.loyal_since }}"}
        """}, config=CONFIG.replace("roles: {admin: 1}}", "roles: {admin: 1},\n        fields: {visit_at: UF_CRM_1, service: UF_CRM_2}}"))
    code, out = validate(root)
    assert (code, out.startswith("ok: ")) == (0, True), out
    # Checked alone, the folder still knows what the rules elsewhere emit and set.
    code, out = validate(root, "rules/other")
    assert (code, out.startswith("ok: 1 rule")) == (0, True), out


def test_a_typo_in_an_emitted_field_is_found_where_it_is_read(project: Any) -> None:
    root = project("""\
        rules:
          - id: thanks
            when: {event: nps.received}
            do:
              - emit: {event: visit.rated, data: {rating: "{{ event.score }}"}}
          - id: rated
            when: {event: visit.rated}
            if: "event.ratng >= 9"
            do:
              - stop: true
        """)
    assert validate(root) == (1, P(8, 9, "expression 'event.ratng >= 9': unknown field 'event.ratng'",
                                     "did you mean 'rating'?"))


def test_an_event_no_connector_declares_is_declared_with_local_events(project: Any) -> None:
    rules = rule("{event: review.left}", 'notify: {to: admin, text: "{{ event.stars }}"}')
    config = CONFIG.replace("      nps.received:", "      review.left: {entity: client, data: {stars: number}}\n"
                                                  "      nps.received:")
    code, out = validate(project(rules, config=config))
    assert (code, out.startswith("ok: ")) == (0, True), out


def test_a_connector_that_declares_nothing_leaves_fields_and_events_unchecked(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook type with no catalogue may send anything: nothing can be said about what rules read."""
    from automator.config.load import load_project
    from automator.connector import Connector
    from automator_connectors.local import LocalConnector

    class Anything(Connector):
        type = "anything"
        webhook_auth = ("key",)

        def parse(self, request: Any) -> list[Any]:
            return []

    (tmp_path / "automator.yaml").write_text("timezone: Europe/Moscow\nconnectors:\n  crm: {type: local}\n"
                                             "  hook: {type: anything, key: \"${env:K}\"}\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(rule("{event: review.left}", 'notify: {to: a, text: "{{ client.nick }}"}'))
    loaded, problems = load_project(tmp_path, connector_types={"local": LocalConnector, "anything": Anything})
    assert problems == [] and loaded is not None
