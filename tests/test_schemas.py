"""Tests for schemas/, automator.config.schemas and its explainer (automator.config.explain): valid schemas, clean
examples, readable problems, no fetching, patterns that do not backtrack."""
from __future__ import annotations

import json
import re
import socket
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing.exceptions import NoSuchResource

from automator.config.explain import Issue, explain, non_text_keys
from automator.config.problems import Problem
from automator.config.schemas import BASE_URI, SCHEMA_DIR, SchemaSet, _refuse

SCHEMA_FILES = sorted(p.relative_to(SCHEMA_DIR).as_posix() for p in SCHEMA_DIR.rglob("*.json"))
ACTIONS = ["deal.create", "deal.move", "deal.update", "booking.set_status", "client.set_category", "task.create",
           "sms.send", "message.send", "notify", "http.request", "segment.recompute"]
EXPECTED_FILES = {
    "common.json", "automator.schema.json", "pipelines.schema.json", "rules.schema.json", "segments.schema.json",
    "test.schema.json", *(f"triggers/{k}.json" for k in ("event", "changed", "held", "schedule")),
    *(f"steps/{k}.json" for k in ("wait", "if", "set", "emit", "stop")), *(f"actions/{a}.json" for a in ACTIONS),
}


# ---------------------------------------------------------------- stand-ins for automator.config.source

class SourceInt(int):
    """An int the admin wrote, with its original text (stand-in for source.SourceInt)."""

    source: str

    def __new__(cls, value: int, source: str) -> SourceInt:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


@dataclass(frozen=True)
class Mark:
    line: int
    col: int


@dataclass
class Document:
    """Stand-in for source.Document: data, marks by path, and a record of every problem asked for."""

    path: str
    data: Any
    marks: dict[tuple[tuple[Any, ...], bool], Mark] = field(default_factory=dict)
    calls: list[tuple[tuple[Any, ...], bool, str, str | None]] = field(default_factory=list)

    def mark(self, path: tuple[Any, ...], key: bool = False) -> Mark:
        while (path, key) not in self.marks and path:
            path, key = path[:-1], False
        return self.marks.get((path, key), Mark(1, 1))

    def problem(self, path: tuple[Any, ...], message: str, hint: str | None = None, key: bool = False) -> Problem:
        self.calls.append((tuple(path), key, message, hint))
        mark = self.mark(tuple(path), key)
        return Problem(self.path, mark.line, mark.col, message, hint)


def load(text: str, path: str = "rules/test.yaml") -> Document:
    """Parse YAML keeping marks and the source text of plain integers (as source.py will)."""
    ctor = yaml.SafeLoader("")
    doc = Document(path, None)

    def build(node: yaml.Node, where: tuple[Any, ...]) -> Any:
        doc.marks[(where, False)] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = build(key_node, ("<key>",))
                doc.marks[(where + (key,), True)] = Mark(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = build(value_node, where + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, where + (i,)) for i, item in enumerate(node.value)]
        value = ctor.construct_object(node)
        if type(value) is int and node.style is None:
            return SourceInt(value, node.value)
        return value

    doc.data = build(yaml.compose(text), ())
    return doc


SCHEMAS = SchemaSet()


def problems(name: str, text: str) -> list[tuple[tuple[Any, ...], str]]:
    doc = load(text)
    SCHEMAS.validate(doc, name)
    return [(path, message) for path, _key, message, _hint in doc.calls]


def calls(name: str, text: str) -> list[tuple[tuple[Any, ...], bool, str, str | None]]:
    doc = load(text)
    SCHEMAS.validate(doc, name)
    return doc.calls


# ---------------------------------------------------------------- the schema files themselves

def walk(node: Any, pointer: str = "") -> Any:
    """Every (json pointer, dict) in a schema document."""
    if isinstance(node, dict):
        yield pointer, node
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


def test_all_expected_files_exist() -> None:
    assert EXPECTED_FILES <= set(SCHEMA_FILES)


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_file_is_valid_and_documented(name: str) -> None:
    text = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert "\t" not in text
    assert all((len(line) - len(line.lstrip(" "))) % 2 == 0 for line in text.splitlines())
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == BASE_URI + name
    assert schema["title"] and schema["description"]
    if name != "common.json":
        assert schema.get("examples"), "every file but common.json has examples"


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_property_has_a_description(name: str) -> None:
    schema = SCHEMAS.schema(name)
    for pointer, node in walk(schema):
        if pointer.endswith(("/examples", "/x-dispatch")) or "/examples/" in pointer:
            continue
        for keyword in ("properties", "patternProperties"):
            for prop, sub in node.get(keyword, {}).items() if isinstance(node.get(keyword), dict) else ():
                assert isinstance(sub, dict) and sub.get("description"), f"{name}{pointer}/{keyword}/{prop}"
        if "$defs" in node:
            for key, sub in node["$defs"].items():
                assert sub.get("description"), f"{name}{pointer}/$defs/{key}"


@pytest.mark.parametrize("action", ACTIONS)
def test_action_schemas_are_closed_with_examples(action: str) -> None:
    schema = SCHEMAS.action_schema(action)
    assert schema is not None and schema["additionalProperties"] is False
    assert schema["title"] == action and schema["examples"]


def test_every_examples_entry_validates() -> None:
    registry = SCHEMAS._registry
    checked = 0
    for name in SCHEMA_FILES:
        for pointer, node in walk(SCHEMAS.schema(name)):
            if "/examples" in pointer or not isinstance(node.get("examples"), list):
                continue
            validator = Draft202012Validator({"$ref": f"{BASE_URI}{name}#{pointer}"}, registry=registry)
            for example in node["examples"]:
                errors = [e.message for e in validator.iter_errors(example)]
                assert not errors, f"{name}#{pointer}: {example!r}: {errors}"
                checked += 1
    assert checked > 60


@pytest.mark.parametrize("name", [n for n in SCHEMA_FILES if n != "common.json"])
def test_top_level_examples_validate_with_action_params(name: str) -> None:
    for example in SCHEMAS.schema(name)["examples"]:
        doc = Document(name, json.loads(json.dumps(example)))
        assert SCHEMAS.validate(doc, name) == []


# ---------------------------------------------------------------- the design's own files validate clean

AUTOMATOR_YAML = """\
# yaml-language-server: $schema=schemas/automator.schema.json
timezone: Europe/Moscow
branches:                       # business hours give end_of_day / start_of_day per branch
  main: {hours: "09:00-21:00", days: mon-sat}
  north: {hours: "10:00-20:00", days: [mon, tue, wed, thu, fri], timezone: Europe/Moscow}
  south: {hours: "09:00-21:00", days: "mon-fri,sun"}
default_branch: main
connectors:
  crm:     {type: bitrix24, webhook_url: "${env:B24_WEBHOOK_URL}"}
  booking: {type: yclients, company_id: 123456, partner_token: "${env:YCLIENTS_PARTNER_TOKEN}",
            user_token: "${env:YCLIENTS_USER_TOKEN}"}
  sms:     {type: smsru, api_id: "${env:SMSRU_API_ID}", sender: Clinic}
  local:   {type: local}
store: automator.db             # SQLite by default
settings: {review_url: "https://example.com/review"}
limits: {chain_depth: 10}
"""

PIPELINES_YAML = """\
# pipelines/rehabilitation.yaml
pipelines:
  rehabilitation:
    connector: crm
    id: 4                                     # the CRM's own pipeline (category) id
    stages:
      new:         {id: "C4:NEW", title: Новая сделка}
      thinking:    {id: "C4:PREPARATION", title: Я подумаю}
      ad_launched: {id: "C4:UC_ADS", title: Реклама запущена}
      warmed_up:   {id: "C4:UC_WARM", title: Клиент прогрет, sla: 1d}
      booked:      {id: "C4:UC_BOOKED", title: Записан в YCLIENTS, requires: [visit_at, service]}
      won:         {id: "C4:WON", title: Сделка успешно закрыта, outcome: won}
      lost:        {id: "C4:LOSE", title: Сделка не успешна, outcome: lost}
"""

RULES_YAML = """\
rules:
  # A booking still unconfirmed at the end of its branch's working day becomes a no-show.
  - id: unconfirmed-becomes-no-show
    when: {held: booking.status, is: waiting, until: end_of_day}
    do:
      - booking.set_status: {status: no_show}

  # A no-show goes to the rehabilitation funnel.
  - id: no-show-to-rehabilitation
    when: {changed: booking.status, to: no_show}
    do:
      - deal.create:
          pipeline: rehabilitation
          stage: new
          title: "Реабилитация: {{ client.name }}"
          contact: "{{ client.id }}"

  # "I'll think about it" starts a 14-day ad campaign, then the client is warmed up.
  - id: warm-up-after-ads
    when: {changed: deal.stage, pipeline: rehabilitation, to: ad_launched}
    do:
      - http.request: {method: POST, url: "{{ settings.ads_audience_url }}", json: {phone: "{{ client.phone }}"}}
      - wait: 14d
      - deal.move: {stage: warmed_up}
      - task.create: {assignee: "{{ deal.responsible }}", title: "Позвонить: {{ client.name }}", due: 1d}

  # A visit: recompute the segment, and invite back at 2/3 of the segment's average recency.
  - id: regular-client-follow-up
    when: {changed: booking.status, to: arrived}
    per: client                 # a newer run for the same client replaces this one (mode: restart)
    do:
      - segment.recompute: {client: "{{ client.id }}"}
      - wait: {for: "segment_avg_recency(client) * 2 / 3"}
      - deal.create: {pipeline: regular_client, stage: new, title: "Повторный визит: {{ client.name }}"}

  # A lead nobody touched within 5 minutes pushes the manager.
  - id: lead-sla-5-minutes
    when: {held: deal.stage, pipeline: first_sales, is: new, for: 5m}
    do:
      - notify: {to: "{{ deal.responsible }}", text: "Лид {{ deal.id }} ждёт 5 минут"}

  # NPS: 9-10 asks for a public review, 0-8 asks what went wrong.
  - id: nps-branches
    when: {event: nps.received}
    do:
      - if: "event.score >= 9"
        then: [{sms.send: {to: "{{ client.phone }}", text: "Спасибо! Оставьте отзыв: {{ settings.review_url }}"}}]
        else: [{task.create: {assignee: quality, title: "NPS {{ event.score }}: узнать, что пошло не так"}}]

  # Every night: clients not seen for 60 days get a call task.
  - id: lost-clients-call
    when: {schedule: "0 10 * * *"}
    for_each: {kind: client, where: "days_since(client.last_visit_at) > 60 and not client.do_not_call"}
    do:
      - task.create: {assignee: admin, title: "Вернуть клиента {{ client.name }}"}
"""

MORE_RULES_YAML = """\
rules:
  - id: every-step-kind
    description: all the step kinds at once
    enabled: false
    when: {schedule: end_of_day, branch: main, catch_up: skip}
    if: ["settings.review_url", "true"]
    per: "{{ client.phone }}"
    mode: queued
    do:
      - set: {attempts: 1, note: "{{ client.name }}"}
      - wait: {until: end_of_day, branch: main}
      - wait: 3600
      - emit: {event: client.reactivated, entity: {kind: client, id: 77}, data: {why: test}}
      - sms.send: {to: "{{ client.phone }}", text: hi}
        via: sms
      - segment.recompute:
          client: 77
      - if: "vars.attempts > 3"
        then: [{stop: too many attempts}]
      - stop: true
"""

SEGMENTS_YAML = """\
rfm:
  window: 365d
  recency:   [14, 30, 60, 120]
  frequency: [8, 5, 3, 2]
  monetary:  [50000, 20000, 10000, 5000]
segments:
  champions: {when: "r >= 4 and f >= 4", category: VIP, loyalty: gold, title: Чемпионы}
  loyal:     {when: "f >= 3", category: Постоянный, loyalty: silver}
  at_risk:   {when: "r <= 2 and f >= 2", category: Под угрозой}
  new:       {when: "f == 1", category: Новый}
  others:    {when: "true", category: Прочие}
"""

TEST_YAML = """\
load: ../rules/clinic          # rules, pipelines and settings to load
now: 2026-03-02T09:00:00+03:00
given:                          # entities as the store knows them
  - {kind: client, id: 77, name: Анна, phone: "+79161234567"}
  - {kind: booking, id: 1001, client: 77, status: waiting, branch: main,
     starts_at: 2026-03-02T15:00:00+03:00}
when:                           # events, in order, and time passing
  - {event: booking.updated, entity: {kind: booking, id: 1001}, data: {status: arrived}}
  - {advance: 14d}
expect:
  - {action: segment.recompute, params: {client: 77}}
  - {action: deal.create, params: {pipeline: regular_client}, after: 2026-03-20T00:00:00+03:00}
  - {no_action: sms.send}
"""

CASES_TEST_YAML = """\
name: several cases
now: "2026-03-02T09:00:00+03:00"
tests:
  - name: arrives
    when: [{event: booking.updated, entity: {kind: booking, id: 1}, data: {status: arrived}, at: 2026-03-02T10:00:00Z}]
    expect: [{action: deal.create, count: 1}]
  - name: nothing happens
    now: 2026-03-03T09:00:00+03:00
    when: [{advance_to: 2026-03-05T09:00:00+03:00}]
    expect: [{no_action: sms.send, params: {to: "+79161234567"}}]
"""


@pytest.mark.parametrize(("name", "text"), [
    ("automator.schema.json", AUTOMATOR_YAML),
    ("pipelines.schema.json", PIPELINES_YAML),
    ("rules.schema.json", RULES_YAML),
    ("rules.schema.json", MORE_RULES_YAML),
    ("segments.schema.json", SEGMENTS_YAML),
    ("test.schema.json", TEST_YAML),
    ("test.schema.json", CASES_TEST_YAML),
])
def test_design_examples_validate_clean(name: str, text: str) -> None:
    assert problems(name, text) == []


def test_plain_pyyaml_data_validates_too() -> None:
    # Without source.py, yaml.safe_load gives datetimes for unquoted timestamps: they become ISO text.
    doc = Document("t.test.yaml", yaml.safe_load(TEST_YAML))
    assert SCHEMAS.validate(doc, "test.schema.json") == []
    assert doc.data["now"] == "2026-03-02T09:00:00+03:00"
    assert doc.data["expect"][1]["after"] == "2026-03-20T00:00:00+03:00"


# ---------------------------------------------------------------- bad documents, readable problems

def rule(body: str) -> str:
    return "rules:\n  - id: r1\n" + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())


BAD = [
    pytest.param(rule("whn: {event: nps.received}\ndo: [{stop: true}]"),
                 ("rules", 0, "whn"), True, "unknown key 'whn'", "did you mean 'when'?", id="unknown-key"),
    pytest.param(rule("when: {event: nps.received}"),
                 ("rules", 0), False, "missing required key 'do'",
                 "do: the steps to run, in order: actions such as deal.move, and wait, if, set, emit, stop",
                 id="missing-do"),
    pytest.param(rule("when: {event: nps.received}\nmode: sometimes\ndo: [{stop: true}]"),
                 ("rules", 0, "mode"), False, "mode: 'sometimes' is not one of single, restart, queued, parallel",
                 None, id="bad-mode"),
    pytest.param(rule("when: {event: nps.received}\nmode: restrat\ndo: [{stop: true}]"),
                 ("rules", 0, "mode"), False, "mode: 'restrat' is not one of single, restart, queued, parallel",
                 "did you mean 'restart'?", id="bad-mode-hint"),
    pytest.param(rule("when: {held: deal.stage, is: new, for: 5 minutes}\ndo: [{stop: true}]"),
                 ("rules", 0, "when", "for"), False,
                 "for: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '5 minutes'", "write '5m'",
                 id="bad-duration"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{wait: 2 weeks}]"),
                 ("rules", 0, "do", 0, "wait"), False,
                 "wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '2 weeks'", "write '2w'",
                 id="bad-wait-duration"),
    pytest.param(rule("when: {evnt: nps.received}\ndo: [{stop: true}]"),
                 ("rules", 0, "when"), False, "'when' needs one of: event, changed, held, schedule",
                 "did you mean 'event'?", id="trigger-without-kind"),
    pytest.param(rule("when: {pipeline: sales}\ndo: [{stop: true}]"),
                 ("rules", 0, "when"), False, "'when' needs one of: event, changed, held, schedule", None,
                 id="trigger-without-kind-no-hint"),
    pytest.param(rule("when: {event: nps.received, changed: deal.stage}\ndo: [{stop: true}]"),
                 ("rules", 0, "when"), False, "'when' has more than one trigger: event, changed",
                 "a rule has exactly one trigger; write one rule per trigger", id="two-trigger-kinds"),
    pytest.param(rule("when: booking.created\ndo: [{stop: true}]"),
                 ("rules", 0, "when"), False,
                 "when: expected a trigger such as {event: booking.created} or {changed: booking.status, to: arrived},"
                 " got 'booking.created'", None, id="trigger-not-a-mapping"),
    pytest.param(rule("when: {event: nps.received}\ndo:\n  - deal.move: {stage: won}\n    sms.send: {to: x, text: y}"),
                 ("rules", 0, "do", 0), False, "a step does one thing, but this one has deal.move, sms.send",
                 "put each one in its own list item, starting with '-'", id="step-with-two-actions"),
    pytest.param(rule("when: {event: nps.received}\ndo:\n  - wait: 1d\n    stop: true"),
                 ("rules", 0, "do", 0), False, "a step does one thing, but this one has wait, stop",
                 "put each one in its own list item, starting with '-'", id="step-with-two-kinds"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{wiat: 1d}]"),
                 ("rules", 0, "do", 0), False,
                 "a step needs an action such as deal.move, or one of: wait, if, set, emit, stop",
                 "did you mean 'wait'?", id="step-without-kind"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{deal_move: {stage: won}}]"),
                 ("rules", 0, "do", 0), False,
                 "a step needs an action such as deal.move, or one of: wait, if, set, emit, stop",
                 "an action is written <kind>.<verb>, such as deal.move or sms.send", id="action-without-dot"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{sms.send: {to: x, text: y}, vai: sms}]"),
                 ("rules", 0, "do", 0, "vai"), True, "unknown key 'vai'", "did you mean 'via'?", id="via-typo"),
    pytest.param(rule("when: {held: booking.status, is: waiting, for: 1h, until: end_of_day}\ndo: [{stop: true}]"),
                 ("rules", 0, "when"), False, "use either 'for' or 'until' in 'held', not both",
                 "'for' waits a duration from the change; 'until' waits for a moment", id="held-for-and-until"),
    pytest.param(rule("when: {held: booking.status, is: waiting}\ndo: [{stop: true}]"),
                 ("rules", 0, "when"), False,
                 "'held' needs 'for' (a duration such as 5m) or 'until' (end_of_day, start_of_day or an expression)",
                 None, id="held-without-for-or-until"),
    pytest.param(rule("when: {held: booking.status, is: waiting, for: 1h, branch: main}\ndo: [{stop: true}]"),
                 ("rules", 0, "when", "branch"), True, "'branch' only works together with 'until'", None,
                 id="held-branch-without-until"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{wait: {for: 1d, until: end_of_day}}]"),
                 ("rules", 0, "do", 0, "wait"), False, "use either 'for' or 'until' in 'wait', not both", None,
                 id="wait-for-and-until"),
    pytest.param(rule("when: {changed: stage}\ndo: [{stop: true}]"),
                 ("rules", 0, "when", "changed"), False,
                 "changed: expected a field such as booking.status or deal.stage (client, booking, deal or task, "
                 "a dot, then the field), got 'stage'", None, id="bad-field"),
    pytest.param(rule("when: {event: nps.received}\nper: clinet\ndo: [{stop: true}]"),
                 ("rules", 0, "per"), False,
                 "per: expected client, booking, deal, entity or a template such as \"{{ client.phone }}\","
                 " got 'clinet'",
                 "did you mean 'client'?", id="bad-per"),
    pytest.param(rule("when: {event: nps.received}\ndo: []"),
                 ("rules", 0, "do"), False, "do: must not be empty", None, id="empty-do"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{stop: false}]"),
                 ("rules", 0, "do", 0, "stop"), False, "stop: expected a reason in words, or true, got false",
                 'write it in quotes ("false") to mean the text', id="stop-false"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{set: {Total: 1}}]"),
                 ("rules", 0, "do", 0, "set", "Total"), True,
                 "set: expected a name in lower-case letters, digits and _, such as last_score, got 'Total'", None,
                 id="bad-var-name"),
    pytest.param(rule("when: {event: nps.received}\ndo: [deal.move]"),
                 ("rules", 0, "do", 0), False,
                 "do item 1: expected a step such as {deal.move: {stage: won}} or {wait: 14d}, got 'deal.move'", None,
                 id="step-not-a-mapping"),
    pytest.param(rule("when: {event: nps.received}\nif: {score: 9}\ndo: [{stop: true}]"),
                 ("rules", 0, "if"), False, "if: expected an expression in quotes, or a list of them, got a mapping",
                 None, id="bad-condition"),
    pytest.param(rule("id: Bad Id\nwhen: {event: nps.received}\ndo: [{stop: true}]").replace("  - id: r1\n", "  -\n"),
                 ("rules", 0, "id"), False,
                 "id: expected an id in lower-case letters, digits, '-', '_' and '.', such as "
                 "no-show-to-rehabilitation,"
                 " got 'Bad Id'", None, id="bad-rule-id"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{deal.move: {stag: won}}]"),
                 ("rules", 0, "do", 0, "deal.move", "stag"), True, "unknown key 'stag'", "did you mean 'stage'?",
                 id="action-param-typo"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{segment.recompute: }]"),
                 ("rules", 0, "do", 0, "segment.recompute"), False, "missing required key 'client'",
                 "client: which client, such as \"{{ client.id }}\"", id="action-null-params"),
    pytest.param(rule("when: {event: nps.received}\ndo:\n  - if: x\n"
                      "    then: [{booking.set_status: {status: noshow}}]"),
                 ("rules", 0, "do", 0, "then", 0, "booking.set_status", "status"), False,
                 "status: 'noshow' is not one of confirmed, arrived, waiting, no_show, cancelled",
                 "did you mean 'no_show'?", id="nested-action-enum"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{deal.move: won}]"),
                 ("rules", 0, "do", 0, "deal.move"), False,
                 "deal.move: expected the action's params as a mapping (key: value), got 'won'", None,
                 id="action-params-not-mapping"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{task.create: {title: x, assignee: y, due: tomorrow}}]"),
                 ("rules", 0, "do", 0, "task.create", "due"), False,
                 "due: expected a duration such as 1d, or a date and time such as 2026-03-02T18:00:00+03:00, "
                 "got 'tomorrow'", None, id="bad-due"),
    pytest.param(rule("when: {event: nps.received}\ndo: [{http.request: {method: POST, url: example.com}}]"),
                 ("rules", 0, "do", 0, "http.request", "url"), False,
                 "url: expected an address starting with https:// (or http://), or a template such as "
                 "\"{{ settings.url }}\", got 'example.com'", None, id="bad-url"),
    pytest.param("rule:\n  - id: x\n", ("rule",), True, "unknown key 'rule'", "did you mean 'rules'?",
                 id="no-rules-key"),
]


@pytest.mark.parametrize(("text", "path", "key", "message", "hint"), BAD)
def test_bad_rules(text: str, path: tuple[Any, ...], key: bool, message: str, hint: str | None) -> None:
    found = calls("rules.schema.json", text)
    assert (path, key, message, hint) in found, found


BAD_OTHER = [
    pytest.param("automator.schema.json",
                 "timezone: Europe/Moscow\nconnectors:\n"
                 "  crm: {type: bitrix24, webhook_url: 'https://x.bitrix24.ru/rest/1/s3cr3t/'}\n",
                 ("connectors", "crm", "webhook_url"), False,
                 "webhook_url: expected a secret written as \"${env:NAME}\", never the secret itself",
                 "put the value into an environment variable such as CRM_WEBHOOK_URL and write "
                 "\"${env:CRM_WEBHOOK_URL}\"",
                 id="secret-not-env"),
    pytest.param("automator.schema.json",
                 "timezone: Europe/Moscow\nconnectors:\n  booking: {type: yclients, partner_token: abc123}\n",
                 ("connectors", "booking", "partner_token"), False,
                 "partner_token: expected a secret written as \"${env:NAME}\", never the secret itself",
                 "put the value into an environment variable such as BOOKING_PARTNER_TOKEN and write "
                 "\"${env:BOOKING_PARTNER_TOKEN}\"", id="secret-token-pattern"),
    pytest.param("automator.schema.json", "timezone: Europe/Moscow\nconnectors:\n  crm: {webhook: x}\n",
                 ("connectors", "crm"), False, "missing required key 'type'",
                 "type: the kind of system: bitrix24, yclients, amocrm, smsru, smsc, telegram, http or local",
                 id="connector-without-type"),
    pytest.param("automator.schema.json", "timezone: Europe/Moscow\nconnectors:\n  CRM: {type: local}\n",
                 ("connectors", "CRM"), True,
                 "connectors: expected a connector name in lower-case letters, digits and _, such as crm, got 'CRM'",
                 None, id="bad-connector-name"),
    pytest.param("automator.schema.json",
                 "timezone: Europe/Moscow\nbranches: {main: {hours: 9-21, days: mon-sun-fri}}\n",
                 ("branches", "main", "hours"), False,
                 "hours: expected opening and closing time such as \"09:00-21:00\", got '9-21'", None, id="bad-hours"),
    pytest.param("automator.schema.json",
                 "timezone: Europe/Moscow\nbranches: {main: {hours: '9:00-21:00', days: weekdays}}\n",
                 ("branches", "main", "days"), False,
                 "days: expected working days such as daily, mon-sat or mon-fri,sun, got 'weekdays'", None,
                 id="bad-days"),
    pytest.param("automator.schema.json", "timezone: Europe/Moscow\nlimits: {chain_depth: 0}\n",
                 ("limits", "chain_depth"), False, "chain_depth: must be at least 1, got 0", None, id="bad-limit"),
    pytest.param("automator.schema.json", "connectors: {}\n", (), False, "missing required key 'timezone'",
                 "timezone: the time zone for schedules and business hours, such as Europe/Moscow", id="no-timezone"),
    pytest.param("pipelines.schema.json",
                 "pipelines:\n  sales:\n    connector: crm\n    stages:\n      new: {id: 'C1:NEW', outcome: success}\n",
                 ("pipelines", "sales", "stages", "new", "outcome"), False,
                 "outcome: 'success' is not one of won, lost",
                 None, id="bad-outcome"),
    pytest.param("pipelines.schema.json",
                 "pipelines:\n  sales:\n    connector: crm\n    stages:\n      new: {title: New}\n",
                 ("pipelines", "sales", "stages", "new"), False, "missing required key 'id'",
                 "id: the CRM's own id of this stage, such as \"C4:NEW\" (Bitrix24) or 142 (amoCRM)", id="stage-no-id"),
    pytest.param("segments.schema.json",
                 "rfm: {recency: [1, 2, 3, 4], frequency: [4, 3, 2, 1], monetary: [4, 3, 2, 1]}\n"
                 "rescore: 4am\nsegments: {a: {when: 'true'}}\n",
                 ("rescore",), False, "rescore: expected a time of day such as 04:00, got '4am'", None,
                 id="rescore-time"),
    pytest.param("segments.schema.json",
                 "rfm: {recency: [1, 2, 3, 4], frequency: [4, 3, 2, 1], monetary: [4, 3, 2, 1]}\n"
                 "segments: {a: {f: about}}\n",
                 ("segments", "a", "f"), False, "f: expected a comparison such as >=3, got 'about'", None,
                 id="score-text"),
    pytest.param("test.schema.json", "now: 2026-03-02T09:00:00+03:00\nwhen: [{advance: 1d}]\n", (), False,
                 "a test needs 'when' and 'expect', or a list of cases under 'tests'", None, id="test-no-expect"),
    pytest.param("test.schema.json",
                 "now: 2026-03-02T09:00:00+03:00\nwhen: [{advanse: 1d}]\nexpect: [{no_action: sms.send}]\n",
                 ("when", 0), False, "each item of 'when' needs one of: event, advance, advance_to",
                 "did you mean 'advance'?", id="test-when-typo"),
    pytest.param("test.schema.json",
                 "now: 2026-03-02T09:00:00\nwhen: [{advance: 1d}]\nexpect: [{no_action: sms.send}]\n",
                 ("now",), False,
                 "now: expected a date and time with its offset, such as 2026-03-02T09:00:00+03:00,"
                 " got '2026-03-02T09:00:00'",
                 None, id="test-now-without-offset"),
    pytest.param("test.schema.json",
                 "now: 2026-03-02T09:00:00+03:00\nwhen: [{advance: 1d}]\nexpect: [{action: sms.send, count: -1}]\n",
                 ("expect", 0, "count"), False, "count: must be at least 0, got -1", None, id="test-bad-count"),
]


@pytest.mark.parametrize(("name", "text", "path", "key", "message", "hint"), BAD_OTHER)
def test_bad_other_files(name: str, text: str, path: tuple[Any, ...], key: bool, message: str,
                         hint: str | None) -> None:
    found = calls(name, text)
    assert (path, key, message, hint) in found, found


def test_secret_value_is_never_echoed() -> None:
    doc = load("timezone: UTC\nconnectors:\n  tg: {type: telegram, token: '12345:SECRET-abc'}\n")
    found = SCHEMAS.validate(doc, "automator.schema.json")
    assert len(found) == 1 and "SECRET" not in found[0].format()


def test_all_problems_are_reported_at_their_marks() -> None:
    text = rule("whn: {event: nps.received}\nmode: sometimes\ndo: [{wait: soon}]")
    doc = load(text, "rules/a.yaml")
    found = SCHEMAS.validate(doc, "rules.schema.json")
    assert [(p.line, p.col, p.message) for p in found] == [
        (3, 5, "unknown key 'whn'"),
        (4, 11, "mode: 'sometimes' is not one of single, restart, queued, parallel"),
        (5, 17, "wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got 'soon'"),
    ]
    assert found[0].format() == "rules/a.yaml:3:5: error: unknown key 'whn'\n    hint: did you mean 'when'?"
    assert all(m == m.rstrip(".") and m[0] == m[0].lower() for m in (p.message for p in found))


def test_one_problem_per_path_and_message() -> None:
    # the same bad `pipeline` value fails in every trigger branch; it is reported once
    found = calls("rules.schema.json", rule("when: {changed: deal.stage, pipeline: Sales}\ndo: [{stop: true}]"))
    assert len(found) == len(set((path, message) for path, _k, message, _h in found)) == 1


def test_keys_that_are_not_text() -> None:
    found = calls("pipelines.schema.json", "pipelines:\n  sales:\n    connector: crm\n    stages: {1: {id: x}}\n")
    assert found == [(("pipelines", "sales", "stages", 1), True, "key 1 must be text", 'write it in quotes: "1"')]


# ---------------------------------------------------------------- number → text coercion

def test_admin_numbers_become_text_where_text_is_expected() -> None:
    doc = load(rule("when: {event: nps.received}\ndo:\n  - sms.send: {to: 89161234567, text: 2026}\n"
                    "  - deal.create: {pipeline: p, stage: new, title: 2026, amount: 100}"))
    assert SCHEMAS.validate(doc, "rules.schema.json") == []
    sms = doc.data["rules"][0]["do"][0]["sms.send"]
    assert sms == {"to": "89161234567", "text": "2026"} and type(sms["to"]) is str
    deal = doc.data["rules"][0]["do"][1]["deal.create"]
    assert deal["title"] == "2026" and deal["amount"] == 100 and isinstance(deal["amount"], SourceInt)


def test_coercion_keeps_the_written_text() -> None:
    doc = load("timezone: UTC\nconnectors:\n  sms: {type: smsru, api_id: 007}\nstore: 0123\n")
    SCHEMAS.validate(doc, "automator.schema.json")
    assert doc.data["store"] == "0123"
    assert doc.data["connectors"]["sms"]["api_id"] == "007"  # then still refused: not ${env:...}


def test_coercion_inside_a_trigger_branch() -> None:
    doc = load(rule("when: {changed: booking.status, to: no_show}\nif: 1\ndo: [{stop: 42}]"))
    assert SCHEMAS.validate(doc, "rules.schema.json") == []
    assert doc.data["rules"][0]["if"] == "1" and doc.data["rules"][0]["do"][0]["stop"] == "42"


def test_plain_ints_without_source_are_still_errors() -> None:
    doc = Document("x.yaml", {"rules": [{"id": "r", "when": {"event": "a.b"},
                                         "do": [{"sms.send": {"to": 89161234567, "text": "hi"}}]}]})
    found = SCHEMAS.validate(doc, "rules.schema.json")
    assert [p.message for p in found] == ["to: expected a string, got the number 89161234567"]


def test_coercion_of_the_validated_root_with_a_prefix() -> None:
    doc = Document("x.yaml", {"rules": [{"id": "r", "when": {"event": "a.b"}, "do": [{"stop": SourceInt(7, "07")}]}]})
    assert SCHEMAS.validate(doc, "steps/stop.json", ("rules", 0, "do", 0)) == []
    assert doc.data["rules"][0]["do"][0]["stop"] == "07"


# ---------------------------------------------------------------- registry: extras, no fetching, bundle

CALL_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "bitrix24.call",
    "description": "Call a client through Bitrix24 telephony.",
    "type": "object",
    "required": ["to"],
    "additionalProperties": False,
    "properties": {
        "to": {"description": "The phone number.", "type": "string"},
        "after": {"$ref": "../common.json#/$defs/duration", "description": "Delay before the call."},
    },
    "examples": [{"to": "{{ client.phone }}"}],
}


def test_action_schema_lookup_and_extras() -> None:
    schemas = SchemaSet({"actions/bitrix24.call.json": CALL_SCHEMA})
    assert schemas.action_schema("deal.move") is SCHEMAS.action_schema("deal.move") is not None
    assert SCHEMAS.action_schema("bitrix24.call") is None
    assert schemas.action_schema("bitrix24.call")["$id"] == BASE_URI + "actions/bitrix24.call.json"
    assert "$id" not in CALL_SCHEMA  # the caller's dict is not changed
    doc = load(rule("when: {event: nps.received}\ndo:\n  - bitrix24.call: {to: 1, after: soon}\n    via: crm"))
    found = schemas.validate(doc, "rules.schema.json")
    assert [p.message for p in found] == ["after: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got 'soon'"]
    assert doc.data["rules"][0]["do"][0]["bitrix24.call"]["to"] == "1"


def test_unknown_actions_are_left_to_compile() -> None:
    assert problems("rules.schema.json", rule("when: {event: nps.received}\ndo: [{crm.frobnicate: {x: 1}}]")) == []


@pytest.mark.parametrize("name", ["/abs.json", "../x.json", "actions/x.yaml", "a//b.json"])
def test_bad_extra_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        SchemaSet({name: {}})


def test_extra_cannot_redefine_a_builtin() -> None:
    with pytest.raises(ValueError):
        SchemaSet({"actions/deal.move.json": {"type": "object"}})
    SchemaSet({"actions/deal.move.json": SCHEMAS.schema("actions/deal.move.json")})  # the same one is fine


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError):
        SCHEMAS.schema("nope.json")


def test_retrieve_refuses() -> None:
    with pytest.raises(NoSuchResource):
        _refuse("https://example.com/x.json")


def test_remote_refs_are_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    schemas = SchemaSet({"actions/x.remote.json": {"type": "object", "properties": {
        "to": {"description": "remote", "$ref": "https://example.com/x.json"}}}})
    doc = Document("x.yaml", {"to": "a"})
    found = schemas.validate(doc, "actions/x.remote.json")
    assert len(found) == 1
    assert "https://example.com/x.json" in found[0].message and "never fetched" in found[0].message
    # a builtin schema's relative reference resolves from the preloaded registry, offline
    assert schemas.validate(Document("p.yaml", yaml.safe_load(PIPELINES_YAML)), "pipelines.schema.json") == []


def test_registry_knows_every_schema_by_id_and_relative_name() -> None:
    registry = SCHEMAS._registry
    for name in SCHEMA_FILES:
        assert registry.get_or_retrieve(BASE_URI + name).value.contents is SCHEMAS.schema(name)
        assert registry.get_or_retrieve(name).value.contents is SCHEMAS.schema(name)


def test_validators_are_cached() -> None:
    schemas = SchemaSet()
    first = schemas._validator("rules.schema.json")
    assert schemas._validator("rules.schema.json") is first


def test_write_bundle(tmp_path: Path) -> None:
    schemas = SchemaSet({"actions/bitrix24.call.json": CALL_SCHEMA})
    written = schemas.write_bundle(tmp_path / "bundle")
    names = {p.relative_to(tmp_path / "bundle").as_posix() for p in written}
    assert names == set(SCHEMA_FILES) | {"actions/bitrix24.call.json"}
    for path in written:
        name = path.relative_to(tmp_path / "bundle").as_posix()
        assert json.loads(path.read_text(encoding="utf-8")) == schemas.schema(name)
    assert "Реабилитация" in (tmp_path / "bundle" / "rules.schema.json").read_text(encoding="utf-8")


# ---------------------------------------------------------------- pattern safety

def all_patterns() -> list[tuple[str, str]]:
    found = []
    for name in SCHEMA_FILES:
        for pointer, node in walk(SCHEMAS.schema(name)):
            if isinstance(node.get("pattern"), str):
                found.append((f"{name}#{pointer}", node["pattern"]))
            if isinstance(node.get("patternProperties"), dict):
                found += [(f"{name}#{pointer}/patternProperties", p) for p in node["patternProperties"]]
            if isinstance(node.get("other"), str):
                found.append((f"{name}#{pointer}/other", node["other"]))
    return found


def nested_unbounded_quantifier(pattern: str) -> bool:
    """A group that contains + or * (or {n,}) and is itself followed by +, * or {n,}."""
    unbounded = re.compile(r"[+*]|\{\d*,\}")
    stack: list[bool] = []  # per open group: does it contain an unbounded quantifier?
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":  # skip a character class
            i += 1
            if i < len(pattern) and pattern[i] == "]":
                i += 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif char == "(":
            stack.append(False)
        elif char == ")":
            inner = stack.pop()
            if inner and unbounded.match(pattern, i + 1):
                return True
            if stack:
                stack[-1] = stack[-1] or inner or bool(unbounded.match(pattern, i + 1))
        elif stack and unbounded.match(pattern, i):
            stack[-1] = True
        i += 1
    return False


@pytest.mark.parametrize(("pattern", "bad"), [
    ("(a+)+", True), (r"(\s*\w+)*", True), ("^(a|b+){2,}$", True), ("((ab)*c)+", True),
    ("^[0-9]{1,6}(s|m)([ ]?[0-9]{1,6}(s|m)){0,4}$", False), ("^(a+)$", False), (r"^[(+]*\)+$", False),
])
def test_nested_quantifier_detector(pattern: str, bad: bool) -> None:
    assert nested_unbounded_quantifier(pattern) is bad


def test_patterns_have_no_nested_unbounded_quantifiers() -> None:
    patterns = all_patterns()
    assert len(patterns) >= 20
    offenders = [(where, p) for where, p in patterns if nested_unbounded_quantifier(p)]
    assert offenders == []


# One text each pattern of schemas/ must accept: the near-misses below are built from it, and a pattern added
# without one fails test_patterns_refuse_long_near_misses_and_finish until it gets one.
PATTERN_SAMPLES = {
    r"^(https?://|\{\{)": "https://api.example.com/x",
    r"^[a-z][a-z0-9_]{0,31}$": "owner_chat",
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$": "2026-03-01",
    r"^[1-9][0-9]{0,3}(s|m)$": "30s",
    r"^([01][0-9]|2[0-3]):[0-5][0-9]$": "04:00",
    r"^(>=|<=|>|<|=)? ?[0-9]{1,2}$": ">= 3",
    r"^[0-9]{1,15}([.,][0-9]{1,2})?$": "1500.00",
    r"^(0|[1-9][0-9]{0,12})([.][0-9]{1,2})?$": "99.50",
    r"^[a-z][a-z0-9_]{0,63}_token$": "partner_token",
    r"^[0-9]{1,6}(s|m|h|d|w|mo)([ ]?[0-9]{1,6}(s|m|h|d|w|mo)){0,4}$": "1d 2h",
    r"\{\{": "Hello {{ client.name }}",
    r"^[a-z][a-z0-9_]{0,39}$": "bitrix24",
    r"^[a-z][a-z0-9_]{0,63}$": "sales",
    r"^[A-Za-z_][A-Za-z0-9_]{0,63}$": "UF_CRM_1",
    r"^(client|booking|deal|task)\.[A-Za-z_][A-Za-z0-9_]{0,63}$": "deal.stage",
    r"^[a-z_][a-z0-9_]{0,63}$": "_count",
    r"^[a-z0-9][a-z0-9_.-]{0,99}$": "remind-1.day",
    r"^[a-z][a-z0-9_]{0,63}\.[a-z][a-z0-9_]{0,63}$": "booking.created",
    r"^([a-z][a-z0-9_]{0,63}\.[a-z][a-z0-9_]{0,63}|notify|set_source)$": "deal.move",
    r"^\$\{env:[A-Z_][A-Z0-9_]{0,127}\}$": "${env:BITRIX_TOKEN}",
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$":
        "2026-12-06T10:00:00.5+03:00",
    r"^[A-Za-z][A-Za-z0-9_+-]{0,31}(/[A-Za-z0-9_+-]{1,31}){0,2}$": "America/Argentina/Buenos_Aires",
    r"^([01]?[0-9]|2[0-3]):[0-5][0-9] ?- ?([01]?[0-9]|2[0-4]):[0-5][0-9]$": "09:00 - 18:00",
    r"^(daily|(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?( ?, ?(mon|tue|wed|thu|fri|sat|sun)"
    r"(-(mon|tue|wed|thu|fri|sat|sun))?){0,6})$": "mon-fri, sat",
    r"^(end_of_day|start_of_day|@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]{1,64}([ ]{1,4}[^ ]{1,64})"
    r"{4,5})$": "0 9 * * mon-fri",
}
ATTACK_SIZE = 10_000  # characters: far past every bounded pattern's longest match, small enough to stay quick


def long_near_misses(sample: str) -> list[str]:
    """Inputs of ATTACK_SIZE characters that backtracking patterns choke on: a valid text repeated, or runs of one
    of its characters, followed by a character that makes the whole fail at the very end."""
    repeated = (sample * (ATTACK_SIZE // len(sample) + 1))[:ATTACK_SIZE]
    return [repeated + "\x00", repeated + " !", *(char * ATTACK_SIZE + "\x00" for char in sorted(set(sample)))]


GENERIC_ATTACKS = ["a" * ATTACK_SIZE + "!", "{" * ATTACK_SIZE, " " * ATTACK_SIZE + "!", "1" * ATTACK_SIZE + "x",
                   "1d " * 3000 + "x", "mon," * 2500 + "x", "a." * 5000, "0 " * 5000 + "\n", "${env:" + "A" * ATTACK_SIZE, "09:00" * 2000]


def test_patterns_refuse_long_near_misses_and_finish(hang_alarm: None) -> None:
    patterns = sorted({pattern for _, pattern in all_patterns()})
    assert sorted(PATTERN_SAMPLES) == patterns  # every pattern has a sample, and no sample is left over
    for pattern in patterns:
        compiled, sample = re.compile(pattern), PATTERN_SAMPLES[pattern]
        assert compiled.search(sample), (pattern, sample)
        for attack in long_near_misses(sample) + GENERIC_ATTACKS:
            found = compiled.search(attack)
            if pattern.endswith("$"):
                # Anchored at both ends and bounded in length: nothing of thousands of characters fits.
                assert found is None, (pattern, attack[:40])
            else:
                # A prefix test (a URL's scheme) or a marker searched for (`{{`): it matches where the text
                # starts right or holds the marker, and nowhere else.
                expected = attack.startswith(sample[:8]) or "{{" in attack and "{{" in pattern.replace("\\", "")
                assert (found is not None) is expected, (pattern, attack[:40])


def test_every_pattern_compiles_and_is_anchored_or_a_marker() -> None:
    for where, pattern in all_patterns():
        re.compile(pattern)
        assert pattern.startswith("^") or pattern == r"\{\{", where


def test_a_big_rules_file_validates() -> None:
    text = "rules:\n" + "".join(RULES_YAML.split("rules:\n", 1)[1].replace("id: ", f"id: n{i}-") for i in range(20))
    assert problems("rules.schema.json", text) == []


# ---------------------------------------------------------------- the explainer alone

def explained(schema: dict[str, Any], instance: Any, rule_keys: tuple[str, ...] = ()) -> list[Issue]:
    return explain(Draft202012Validator(schema).iter_errors(instance), ("rules", 0), rule_keys)


def test_the_explainer_names_a_misspelt_key_once_not_also_the_key_it_misses() -> None:
    schema = {"type": "object", "required": ["when"], "additionalProperties": False,
              "properties": {"when": {"type": "string"}, "do": {"type": "array"}}}
    assert explained(schema, {"whn": "x"}) == [
        Issue(("rules", 0, "whn"), "unknown key 'whn'", "did you mean 'when'?", key=True)]


def test_the_explainer_says_a_rule_key_was_indented_under_another() -> None:
    schema = {"type": "object", "additionalProperties": False, "properties": {"event": {"type": "string"}}}
    issues = explain(Draft202012Validator(schema).iter_errors({"event": "a.b", "do": []}), ("rules", 0, "when"),
                     ("when", "do"))
    assert [(i.path, i.hint) for i in issues] == [
        (("rules", 0, "when", "do"), "'do' is a key of the rule: indent it as far as `when:` and `do:`, not under "
                                     "`when:`")]
    # Without the rule's keys, the hint is the keys allowed here.
    issues = explain(Draft202012Validator(schema).iter_errors({"event": "a.b", "do": []}), ("rules", 0, "when"), ())
    assert [i.hint for i in issues] == ["allowed keys: event"]


def test_the_explainer_words_types_and_hints_at_a_forgotten_dash() -> None:
    schema = {"type": "object", "properties": {"do": {"type": "array"}, "n": {"type": "integer"}}}
    assert explained(schema, {"do": {"deal.move": {}}, "n": "x"}) == [
        Issue(("rules", 0, "do"), "do: expected a list, got a mapping", "start each item with '- ' on its own line: "
              "`- deal.move: …`"),
        Issue(("rules", 0, "n"), "n: expected a whole number, got 'x'"),
    ]


def test_keys_that_are_not_text_are_issues_at_the_key() -> None:
    assert list(non_text_keys({"a": [{1: "x"}], True: 2}, ("p",))) == [
        Issue(("p", "a", 0, 1), "key 1 must be text", 'write it in quotes: "1"', key=True),
        Issue(("p", True), "key true must be text", 'write it in quotes: "true"', key=True),
    ]


def test_errors_for_plain_values() -> None:
    assert SCHEMAS.errors("actions/deal.move.json", {"stage": "won"}) == []
    assert sorted(SCHEMAS.errors("actions/sms.send.json", {"to": 79161234567, "txt": "hi"})) == [
        "to: expected a string, got the number 79161234567", "unknown key 'txt'"]
    with pytest.raises(KeyError):
        SCHEMAS.errors("actions/nope.json", {})


def test_errors_for_values_the_compiled_check_does_not_take() -> None:
    # A number as the admin wrote it and a key that is not text go to the full validation, which explains them.
    from automator.config.source import SourceInt

    assert SCHEMAS.errors("actions/deal.move.json", {"stage": "won", "deal": SourceInt(42, "42")}) == []
    assert any("must be text" in m for m in SCHEMAS.errors("actions/deal.move.json", {"stage": "won", 1: "x"}))


# ---------------------------------------------------------------- with the real loader, once it exists

@pytest.mark.parametrize(("name", "text"), [
    ("automator.schema.json", AUTOMATOR_YAML), ("pipelines.schema.json", PIPELINES_YAML),
    ("rules.schema.json", RULES_YAML), ("rules.schema.json", MORE_RULES_YAML),
    ("segments.schema.json", SEGMENTS_YAML), ("test.schema.json", TEST_YAML), ("test.schema.json", CASES_TEST_YAML),
])
def test_real_source_documents_validate_clean(name: str, text: str) -> None:
    source = pytest.importorskip("automator.config.source")
    doc, found = source.load_document("x.yaml", text=text)
    assert found == [] and doc is not None
    assert SCHEMAS.validate(doc, name) == []


def test_real_source_marks_and_coercion() -> None:
    source = pytest.importorskip("automator.config.source")
    text = rule("whn: {event: nps.received}\ndo:\n  - sms.send: {to: 89161234567, text: 2026}")
    doc, _ = source.load_document("rules/a.yaml", text=text)
    found = SCHEMAS.validate(doc, "rules.schema.json")
    assert [p.format() for p in found] == [
        "rules/a.yaml:3:5: error: unknown key 'whn'\n    hint: did you mean 'when'?",
    ]
    assert doc.data["rules"][0]["do"][0]["sms.send"] == {"to": "89161234567", "text": "2026"}


def test_a_misspelt_required_key_is_one_problem_not_two() -> None:
    found = calls("rules.schema.json", rule("when: {event: nps.received}\ndo: [{deal.move: {stag: won}}]"))
    assert [m for _, _, m, _ in found] == ["unknown key 'stag'"]



# Every BAD case above is found through validate(), which now asks the quick check first: so those tests also
# prove that the quick check never accepts what the full validation refuses.
@pytest.mark.parametrize("text", [RULES_YAML, MORE_RULES_YAML])
def test_the_quick_check_accepts_valid_rules(text: str) -> None:
    assert SCHEMAS.is_valid("rules.schema.json", load(text, "rules/a.yaml").data)
