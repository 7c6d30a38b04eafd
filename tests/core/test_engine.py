"""Every trigger and step kind, per/mode, chains and runtime errors, played through `automator test` files."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

from automator.testing import report, run_tests


def play(project: Path, test: str) -> list:
    """Write a test file into the project and run it; returns the case results."""
    (project / "rules" / "case.test.yaml").write_text(textwrap.dedent(test))
    return run_tests(project / "rules" / "case.test.yaml")


def assert_pass(results: list) -> None:
    text, ok = report(results)
    assert ok, text


MakeProject = Callable[..., Path]


def test_event_trigger_with_where_and_pipeline(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: big-payment
            when: {event: payment.received, where: "event.amount >= 1000", pipeline: sales}
            do:
              - notify: {to: boss, text: "{{ event.amount }} on deal {{ deal.id }}"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given:
          - {kind: deal, id: 1, pipeline: sales, stage: new}
          - {kind: deal, id: 2, pipeline: other, stage: new}
        when:
          - {event: payment.received, entity: {kind: deal, id: 1}, data: {amount: 5000}}
          - {event: payment.received, entity: {kind: deal, id: 1}, data: {amount: 10}}
          - {event: payment.received, entity: {kind: deal, id: 2}, data: {amount: 5000}}
        expect:
          - {action: notify, params: {text: "5000 on deal 1"}, count: 1}
          - {action: notify, count: 1}
        """))


def test_changed_from_to_lists(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: reopened
            when: {changed: deal.stage, from: [won, lost], to: [new, in_progress], pipeline: sales}
            do:
              - task.create: {assignee: admin, title: "reopened {{ deal.id }} from {{ prev.stage }}"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given:
          - {kind: deal, id: 1, pipeline: sales, stage: lost}
          - {kind: deal, id: 2, pipeline: sales, stage: new}
        when:
          - {event: deal.updated, entity: {kind: deal, id: 1}, data: {stage: in_progress}}
          - {event: deal.updated, entity: {kind: deal, id: 2}, data: {stage: in_progress}}
          - {event: deal.updated, entity: {kind: deal, id: 1}, data: {stage: in_progress, title: same stage}}
        expect:
          - {action: task.create, params: {title: "reopened 1 from lost"}, count: 1}
          - {action: task.create, count: 1}
        """))


def test_held_for_is_cancelled_and_rearmed(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: stuck-in-progress
            when: {held: deal.stage, is: in_progress, for: 2h, pipeline: sales}
            do:
              - notify: {to: "{{ deal.responsible }}", text: "deal {{ deal.id }} is stuck"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given:
          - {kind: deal, id: 1, pipeline: sales, stage: new, responsible: olga}
        when:
          - {event: deal.updated, entity: {kind: deal, id: 1}, data: {stage: in_progress}}
          - {advance: 1h}
          - {event: deal.updated, entity: {kind: deal, id: 1}, data: {stage: new}}
          - {advance: 1h}
          - {event: deal.updated, entity: {kind: deal, id: 1}, data: {stage: in_progress}}
          - {advance: 3h}
        expect:
          - {action: notify, params: {to: olga}, count: 1, after: 2026-03-02T14:00:00+03:00,
             before: 2026-03-02T14:00:00+03:00}
        """))


def test_held_until_end_of_day_across_dst(make_project: MakeProject) -> None:
    # Saturday 28 March 2026 in Berlin: the clocks go forward in the night; the branch closes at 21:00 CEST
    # on Monday the 30th (Sunday is a day off).
    project = make_project("""
        rules:
          - id: no-show
            when: {held: booking.status, is: waiting, until: end_of_day}
            do:
              - booking.set_status: {status: no_show}
        """, tz="Europe/Berlin")
    assert_pass(play(project, """
        load: ..
        now: 2026-03-28T21:30:00+01:00
        when:
          - {event: booking.created, entity: {kind: booking, id: 5}, data: {status: waiting}}
          - {advance: 3d}
        expect:
          - {action: booking.set_status, count: 1, after: 2026-03-30T21:00:00+02:00,
             before: 2026-03-30T21:00:00+02:00}
        """))


def test_schedule_cron_fires_once_per_local_time_across_dst(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: nightly
            when: {schedule: "30 2 * * *"}
            do:
              - notify: {to: admin, text: "night {{ fmt_date(now) }}"}
        """, tz="Europe/Berlin")
    assert_pass(play(project, """
        load: ..
        now: 2026-10-24T12:00:00+02:00
        when:
          - {advance: 2d}
        expect:
          # 25 October: 02:30 happens twice (CEST, then CET); the schedule fires once
          - {action: notify, params: {text: "night 25.10.2026"}, count: 1, before: 2026-10-25T02:30:00+02:00}
          - {action: notify, count: 2}
        """))
    assert_pass(play(project, """
        load: ..
        now: 2026-03-28T12:00:00+01:00
        when:
          - {advance: 1d}
        expect:
          # 29 March: 02:30 does not exist; the tick fires once, at 03:00 CEST
          - {action: notify, count: 1, after: 2026-03-29T03:00:00+02:00, before: 2026-03-29T03:00:00+02:00}
        """))


def test_schedule_end_of_day_and_for_each(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: evening-report
            when: {schedule: end_of_day}
            for_each: {kind: deal, where: "deal.stage == 'new'"}
            do:
              - task.create: {assignee: admin, title: "still new: {{ deal.id }}"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-06T10:00:00+03:00
        given:
          - {kind: deal, id: 1, pipeline: sales, stage: new}
          - {kind: deal, id: 2, pipeline: sales, stage: won}
        when:
          - {advance: 3d}
        expect:
          # Friday and Saturday at 21:00; Sunday is a day off
          - {action: task.create, params: {title: "still new: 1"}, count: 2}
          - {action: task.create, params: {title: "still new: 1"}, count: 1, after: 2026-03-06T21:00:00+03:00,
             before: 2026-03-06T21:00:00+03:00}
          - {no_action: task.create, params: {title: "still new: 2"}}
        """))


def test_wait_kinds_and_calendar_days_across_dst(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: waits
            when: {event: deal.created}
            do:
              - wait: 14d
              - notify: {to: a, text: "after 14d"}
              - wait: {for: "duration('2h') * 2"}
              - notify: {to: a, text: "after 4h more"}
              - wait: {until: end_of_day}
              - notify: {to: a, text: "at closing"}
              - wait: {until: "add(now, duration('1d'))"}
              - notify: {to: a, text: "a day later"}
        """, tz="Europe/Berlin")
    assert_pass(play(project, """
        load: ..
        now: 2026-03-20T10:00:00+01:00
        when:
          - {event: deal.created, entity: {kind: deal, id: 1}, data: {pipeline: sales, stage: new}}
          - {advance: 20d}
        expect:
          # 14 calendar days keep the wall time across the change to summer time
          - {action: notify, params: {text: after 14d}, after: 2026-04-03T10:00:00+02:00,
             before: 2026-04-03T10:00:00+02:00}
          - {action: notify, params: {text: after 4h more}, after: 2026-04-03T14:00:00+02:00,
             before: 2026-04-03T14:00:00+02:00}
          - {action: notify, params: {text: at closing}, after: 2026-04-03T21:00:00+02:00,
             before: 2026-04-03T21:00:00+02:00}
          - {action: notify, params: {text: a day later}, after: 2026-04-04T21:00:00+02:00,
             before: 2026-04-04T21:00:00+02:00}
        """))


def test_if_branch_with_a_wait_inside_resumes_in_the_branch(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: branchy
            when: {event: nps.received}
            do:
              - set: {score: "{{ event.score }}"}
              - if: ["vars.score >= 9", "vars.score <= 10"]
                then:
                  - wait: 1h
                  - sms.send: {to: "+79160000000", text: "thanks {{ vars.score }}"}
                else:
                  - task.create: {assignee: quality, title: "low {{ vars.score }}"}
                  - stop: low score
              - notify: {to: admin, text: "done {{ vars.score }}"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        when:
          - {event: nps.received, entity: {kind: client, id: 1}, data: {score: 10}}
          - {event: nps.received, entity: {kind: client, id: 2}, data: {score: 3}}
          - {advance: 2h}
        expect:
          - {action: sms.send, params: {text: thanks 10}, count: 1, after: 2026-03-02T11:00:00+03:00}
          - {action: task.create, params: {title: low 3}, count: 1}
          - {action: notify, params: {text: done 10}, count: 1}
          - {no_action: notify, params: {text: done 3}}
        """))


def test_emit_starts_other_rules(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: visit-done
            when: {changed: booking.status, to: arrived}
            do:
              - emit: {event: visit.completed, data: {service: "{{ booking.service }}"}}
          - id: thank-you
            when: {event: visit.completed}
            do:
              - sms.send: {to: "{{ client.phone }}", text: "Спасибо за визит: {{ event.service }}"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given:
          - {kind: client, id: 7, phone: "+79161234567"}
          - {kind: booking, id: 1, client: 7, status: confirmed, service: стрижка}
        when:
          - {event: booking.updated, entity: {kind: booking, id: 1}, data: {status: arrived}}
        expect:
          - {action: sms.send, params: {to: "+79161234567", text: "Спасибо за визит: стрижка"}, count: 1}
        """))


@pytest.mark.parametrize("mode, expected", [
    ("single", ["first"]),
    ("restart", ["second"]),
    ("queued", ["first", "second"]),
    ("parallel", ["first", "second"]),
])
def test_modes(make_project: MakeProject, mode: str, expected: list[str]) -> None:
    project = make_project(f"""
        rules:
          - id: follow-up
            when: {{event: nps.received}}
            per: client
            mode: {mode}
            do:
              - wait: 1h
              - notify: {{to: admin, text: "{{{{ event.label }}}}"}}
        """)
    results = play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given:
          - {kind: client, id: 7}
        when:
          - {event: nps.received, entity: {kind: client, id: 7}, data: {label: first}}
          - {advance: 30m}
          - {event: nps.received, entity: {kind: client, id: 7}, data: {label: second}}
          - {advance: 5h}
        expect:
          - {action: notify}
        """)
    assert_pass(results)
    texts = [p.effect.params["text"] for p in results[0].performed]
    assert texts == expected


def test_queued_run_starts_when_the_first_ends(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: one-at-a-time
            when: {event: nps.received}
            per: client
            mode: queued
            do:
              - wait: 1h
              - notify: {to: admin, text: "{{ event.label }}"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given: [{kind: client, id: 7}]
        when:
          - {event: nps.received, entity: {kind: client, id: 7}, data: {label: first}}
          - {event: nps.received, entity: {kind: client, id: 7}, data: {label: second}}
          - {advance: 3h}
        expect:
          - {action: notify, params: {text: first}, after: 2026-03-02T11:00:00+03:00, before: 2026-03-02T11:00:00+03:00}
          - {action: notify, params: {text: second}, after: 2026-03-02T12:00:00+03:00, before: 2026-03-02T12:00:00+03:00}
        """))


def test_a_loop_of_rules_is_bounded_by_chain_depth(make_project: MakeProject) -> None:
    # Two rules move a deal back and forth: the local connector echoes each move as deal.updated, as a CRM would.
    project = make_project("""
        rules:
          - id: ping
            when: {changed: deal.stage, to: new, pipeline: sales}
            do: [{deal.move: {stage: in_progress}}]
          - id: pong
            when: {changed: deal.stage, to: in_progress, pipeline: sales}
            do: [{deal.move: {stage: new}}]
        """)
    results = play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given: [{kind: deal, id: 1, pipeline: sales, stage: won}]
        when:
          - {event: deal.updated, entity: {kind: deal, id: 1}, data: {stage: new}}
        expect:
          - {action: deal.move, count: 6}
        """)
    assert_pass(results)


def test_a_missing_field_fails_the_run_not_the_engine(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: needs-phone
            when: {event: nps.received}
            do:
              - sms.send: {to: "{{ client.phone }}", text: hi}
          - id: other
            when: {event: nps.received}
            do:
              - notify: {to: admin, text: "nps {{ event.score }}"}
        """)
    results = play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        given: [{kind: client, id: 7, name: no phone}]
        when:
          - {event: nps.received, entity: {kind: client, id: 7}, data: {score: 5}}
        expect:
          - {no_action: sms.send}
          - {action: notify, count: 1}
          - {error: "client has no field 'phone'", rule: needs-phone}
        """)
    assert_pass(results)


def test_deal_created_by_a_rule_flows_back_as_an_event(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: create
            when: {event: lead.created}
            do:
              - deal.create: {pipeline: sales, stage: new, title: "{{ event.name }}"}
          - id: greet-new-deal
            when: {event: deal.created, pipeline: sales}
            do:
              - deal.move: {stage: in_progress}
          - id: in-progress
            when: {changed: deal.stage, to: in_progress, pipeline: sales}
            do:
              - notify: {to: admin, text: "{{ deal.title }} is in progress"}
        """)
    assert_pass(play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        when:
          - {event: lead.created, data: {name: Анна}}
        expect:
          - {action: deal.create, count: 1}
          - {action: deal.move, params: {deal: 1, stage: in_progress, pipeline: sales}, count: 1}
          - {action: notify, params: {text: Анна is in progress}, count: 1}
        """))


def test_failing_expectations_show_expected_and_actual(make_project: MakeProject) -> None:
    project = make_project("""
        rules:
          - id: r
            when: {event: nps.received}
            do: [{notify: {to: admin, text: "score {{ event.score }}"}}]
        """)
    results = play(project, """
        load: ..
        now: 2026-03-02T10:00:00+03:00
        when:
          - {event: nps.received, data: {score: 5}}
        expect:
          - {action: notify, params: {text: score 6}}
          - {no_action: notify}
        """)
    text, ok = report(results)
    assert not ok
    assert "expected: notify {text: 'score 6'}" in text
    assert "~ 2026-03-02 10:00  notify {to: 'admin', text: 'score 5'}" in text
    assert "expected: no notify" in text
    assert "case.test.yaml:7:5" in text
    assert text.splitlines()[-1] == "0 passed, 1 failed"
