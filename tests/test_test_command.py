"""`automator test` when a rule fails: the failure is the test's, printed with its rule, step, file:line and message."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from automator.cli import cli

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {type: local}
  sms: {type: local}
  forms: {type: local, events: {nps.received: {entity: client, data: {score: number, comment: text, rating: number, note: text}}}}
"""

RULES = """\
rules:
  - id: thanks
    when: {event: nps.received}
    if: "event.score >= 9"
    do:
      - set: {name: "{{ client.name }}"}
      - sms.send: {to: "{{ client.phone }}", text: "Спасибо, {{ vars.name }}!"}
  - id: watch
    when: {event: nps.received, where: "event.comment != ''"}
    do:
      - notify: {to: admin, text: "{{ event.comment }}"}
"""

CASE = """\
now: 2026-03-02T10:00:00+03:00
given:
  - {kind: client, id: 77, name: Анна}
when:
  - {event: nps.received, entity: {kind: client, id: 77}, data: {score: 10, comment: ""}}
"""

PHONE_FAILURE = [
    "    rule 'thanks' failed at rules/nps.yaml:7:9 (do/1: sms.send), on nps.received at 2026-03-02 10:00 +03:00:",
    "        {{ client.phone }}: client has no field 'phone' (it has: name, id)",
    """        hint: fix the rule, or expect the failure: `- {error: "client has no field 'phone'"}`""",
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)

    def write(test: str, rules: str = RULES) -> Path:
        (tmp_path / "automator.yaml").write_text(CONFIG, encoding="utf-8")
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "nps.yaml").write_text(textwrap.dedent(rules), encoding="utf-8")
        (tmp_path / "rules" / "nps.test.yaml").write_text(CASE + textwrap.dedent(test), encoding="utf-8")
        return tmp_path
    return write


def run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["test", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.splitlines()


def test_a_rule_that_fails_fails_the_test_even_when_nothing_was_expected_of_it(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {no_action: notify}\n")
    code, lines = run("rules")
    assert code == 1
    assert lines == ["FAILED rules/nps.test.yaml::nps.test", *PHONE_FAILURE, "0 passed, 1 failed"]


def test_an_expected_action_that_did_not_happen_says_a_run_failed(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {action: sms.send}\n")
    code, lines = run("rules")
    assert code == 1
    assert lines[1:4] == PHONE_FAILURE
    assert lines[4:6] == ["    rules/nps.test.yaml:7:5: expected: sms.send",
                          "    actual: (no effects at all; 1 failed run(s), above)"]


def test_an_expected_failure_passes_and_is_not_reported(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {error: \"client has no field 'phone'\", rule: thanks}\n  - {no_action: sms.send}\n")
    assert run("rules") == (0, ["1 passed, 0 failed"])


def test_an_expected_failure_of_another_rule_or_text_fails(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {error: \"client has no field 'phone'\", rule: watch}\n")
    code, lines = run("rules")
    assert code == 1
    assert lines[1:4] == PHONE_FAILURE  # not the failure expected, so still reported
    assert lines[4:8] == [
        "    rules/nps.test.yaml:7:5: expected: a run error containing \"client has no field 'phone'\" in rule 'watch'",
        "    actual:",
        *["  " + line for line in PHONE_FAILURE[:2]],
    ]


def test_an_expected_failure_that_did_not_happen_fails(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {error: no field}\n", rules=RULES.replace('"{{ client.phone }}"', '"+79161234567"'))
    code, lines = run("rules")
    assert code == 1
    assert lines[1:3] == ["    rules/nps.test.yaml:7:5: expected: a run error containing 'no field'",
                          "    actual: no rule failed"]


def test_a_where_that_cannot_be_evaluated_is_a_failure_at_the_rule(project) -> None:  # type: ignore[no-untyped-def]
    # `note` is declared, so validate passes it; this event does not carry it, so the run fails.
    project("expect:\n  - {no_action: notify}\n", rules=RULES.replace("event.comment != ''", "event.note != ''"))
    code, lines = run("rules")
    assert code == 1
    failure = lines.index("    rule 'watch' failed at rules/nps.yaml:8:5 (when: where \"event.note != ''\"), "
                          "on nps.received at 2026-03-02 10:00 +03:00:")
    assert "note" in lines[failure + 1]


def test_a_condition_that_cannot_be_evaluated_is_a_failure_at_the_rule(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {no_action: sms.send}\n", rules=RULES.replace("event.score >= 9", "event.rating >= 9"))
    code, lines = run("rules")
    assert code == 1
    assert lines[1] == ("    rule 'thanks' failed at rules/nps.yaml:2:5 (if/0: if event.rating >= 9), on nps.received "
                        "at 2026-03-02 10:00 +03:00:")
    assert "rating" in lines[2]


def test_a_rule_file_given_to_test_is_a_usage_error_naming_its_test(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {no_action: notify}\n")
    result = CliRunner().invoke(cli, ["test", "rules/nps.yaml"])
    assert result.exit_code == 2
    assert ("Error: rules/nps.yaml is a rule file, not a test file (test files end in .test.yaml): its test is "
            "rules/nps.test.yaml: run `automator test rules/nps.test.yaml`") in result.output


def test_a_rule_file_with_no_test_beside_it(project) -> None:  # type: ignore[no-untyped-def]
    root = project("expect:\n  - {no_action: notify}\n")
    (root / "rules" / "nps.test.yaml").unlink()
    (root / "rules" / "more.yaml").write_text(RULES.replace("thanks", "x").replace("watch", "y"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["test", "rules/more.yaml"])
    assert result.exit_code == 2
    assert ("rules/more.yaml is a rule file, not a test file (test files end in .test.yaml): no test file is "
            "beside it: write rules/more.test.yaml") in result.output


def test_a_for_each_where_that_cannot_be_evaluated_is_a_failure(project) -> None:  # type: ignore[no-untyped-def]
    project("  - {advance: 1d}\nexpect:\n  - {no_action: task.create}\n", rules=RULES + """\
  - id: lost
    when: {schedule: "0 10 * * *"}
    for_each: {kind: client, where: "days_since(client.last_visit_at) > 60"}
    do:
      - task.create: {assignee: admin, title: "Вернуть {{ client.name }}"}
""")
    code, lines = run("rules")
    assert code == 1
    at = lines.index("    rule 'lost' failed at rules/nps.yaml:12:5 (for_each: for_each where, on client:77), on "
                     "timer.fired at 2026-03-03 10:00 +03:00:")
    assert "last_visit_at" in lines[at + 1]


def test_a_folder_without_tests_says_so(project) -> None:  # type: ignore[no-untyped-def]
    root = project("expect:\n  - {no_action: notify}\n")
    (root / "empty").mkdir()
    result = CliRunner().invoke(cli, ["test", "empty"])
    assert result.exit_code == 1
    assert result.output == "Error: no *.test.yaml file at or under empty\n"


def test_validate_checks_a_test_file_it_is_given(project) -> None:  # type: ignore[no-untyped-def]
    project("expect:\n  - {acton: notify}\n")
    result = CliRunner().invoke(cli, ["validate", "rules/nps.test.yaml"])
    assert result.exit_code == 1
    assert result.stdout == ("rules/nps.test.yaml:7:5: error: each item of 'expect' needs one of: action, no_action, "
                             "error\n    hint: did you mean 'action'?\n")
    project("expect:\n  - {action: notify}\n")
    result = CliRunner().invoke(cli, ["validate", "rules/nps.test.yaml"])
    assert result.exit_code == 0
    assert result.stdout == ("ok: rules/nps.test.yaml is a well-formed test; run it with "
                             "`automator test rules/nps.test.yaml`\n")


def test_an_expectation_that_names_no_known_action_or_rule_is_a_failure_at_its_place(project) -> None:  # type: ignore[no-untyped-def]
    project('expect:\n  - {no_action: sms.sned}\n  - {action: task.craete}\n  - {error: "phone", rule: thank}\n',
            rules=RULES.replace('"{{ client.phone }}"', '"+79161234567"'))
    code, lines = run("rules")
    assert code == 1
    assert lines == [
        "FAILED rules/nps.test.yaml::nps.test",
        "    rules/nps.test.yaml:7:17: error: no configured connector performs 'sms.sned': this expectation always holds",
        "        hint: did you mean 'sms.send'?",
        "    rules/nps.test.yaml:8:14: error: no configured connector performs 'task.craete': this expectation cannot "
        "hold",
        "        hint: did you mean 'task.create'?",
        "    rules/nps.test.yaml:9:28: error: no rule 'thank' is loaded for this test",
        "        hint: did you mean 'thanks'?",
        "0 passed, 1 failed",
    ]


def test_a_test_event_of_a_type_nothing_produces_fails_at_its_place(project) -> None:  # type: ignore[no-untyped-def]
    # `nps.recieved` would start no rule, so `no_action` would pass for the wrong reason: the misspelling fails.
    root = project("expect:\n  - {no_action: sms.send}\n")
    test = root / "rules" / "nps.test.yaml"
    test.write_text(test.read_text(encoding="utf-8").replace("{event: nps.received", "{event: nps.recieved"),
                    encoding="utf-8")
    code, lines = run("rules")
    assert code == 1
    assert lines[1:3] == ["    rules/nps.test.yaml:5:13: error: unknown event type 'nps.recieved'",
                          "        hint: did you mean 'nps.received' (from forms)?"]
