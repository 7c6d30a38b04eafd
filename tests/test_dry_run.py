"""`automator dry-run` as an admin reads it: local times with their offset, params as YAML, every failed
condition on its own line with what it read, and the rules an emitted event would start."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from automator.cli import cli

RULES = """\
rules:
  - id: thanks
    when: {event: nps.received}
    if: ["event.score >= 9", "client.visits > 2"]
    do:
      - set: {greeting: "Спасибо, {{ client.name }}!", due: "{{ now + duration('1d') }}"}
      - deal.create: {pipeline: sales, stage: new, title: "NPS: {{ client.name }}", contact: "{{ client.id }}"}
      - emit: {event: review.asked, data: {score: "{{ event.score }}", channel: sms}}
  - id: detractor
    when: {event: nps.received, where: "event.score <= 6"}
    do:
      - notify: {to: admin, text: "NPS {{ event.score }}"}
  - id: ask-review
    when: {event: review.asked}
    do:
      - sms.send: {to: "{{ client.phone }}", text: "Оставьте отзыв: https://example.com/r"}
      - wait: 2h
      - task.create: {assignee: admin, title: "Проверить отзыв {{ client.name }}"}
  - id: unconfirmed
    when: {held: booking.status, is: waiting, for: 3h}
    do:
      - booking.set_status: {status: no_show}
"""

STATE = '- {kind: client, id: 77, name: Анна, phone: "+79161234567", visits: 1}\n'


def dry_run(root: Path, event: str, *more: str, state: str = STATE) -> tuple[int, str]:
    (root / "event.yaml").write_text(event, encoding="utf-8")
    (root / "state.yaml").write_text(state, encoding="utf-8")
    result = CliRunner().invoke(cli, ["dry-run", "--project", str(root), "--event", str(root / "event.yaml"),
                                      "--state", str(root / "state.yaml"), "--at", "2026-03-02T07:00:00Z", *more])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


NPS_10 = "event: nps.received\nentity: {kind: client, id: 77}\ndata: {score: 10}\n"


def test_each_failed_condition_has_its_own_line_with_what_it_read(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(RULES)
    code, out = dry_run(root, NPS_10.replace("10", "3"), state=STATE.replace("visits: 1", "visits: 0"))
    assert code == 0, out
    lines = out.splitlines()
    at = lines.index("✘ thanks  (event nps.received): 2 of 2 conditions do not hold")
    assert lines[at + 1:at + 3] == ["    ✘ if event.score >= 9  →  false  (event.score is 3)",
                                    "    ✘ if client.visits > 2  →  false  (client.visits is 0)"]
    # A condition that holds is shown as holding, the one that does not as the reason.
    code, out = dry_run(root, NPS_10)
    lines = out.splitlines()
    at = lines.index("✘ thanks  (event nps.received): 1 of 2 conditions does not hold")
    assert lines[at + 1:at + 3] == ["    ✔ if event.score >= 9  →  true  (event.score is 10)",
                                    "    ✘ if client.visits > 2  →  false  (client.visits is 1)"]
    at = lines.index("✘ detractor  (event nps.received where event.score <= 6): its `where` does not hold")
    assert lines[at + 1] == "    ✘ where event.score <= 6  →  false  (event.score is 10)"


def test_params_are_shown_as_yaml_and_times_in_the_project_zone(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(RULES)
    code, out = dry_run(root, NPS_10, state=STATE.replace("visits: 1", "visits: 5"))
    assert code == 0, out
    assert "✔ thanks  (event nps.received)  → done" in out
    assert "    set greeting = \"Спасибо, Анна!\"" in out  # ', ' is fine in block YAML, not in a flow mapping
    assert "    set due = 2026-03-03T10:00:00+03:00" in out
    assert ("    2026-03-02 10:00 +03:00  deal.create {pipeline: sales, stage: new, title: \"NPS: Анна\", "
            "contact: 77}") in out
    assert "'" not in out.split("✔ thanks")[1].split("✘")[0]  # no Python repr of a str or dict
    assert "datetime" not in out and "+00:00" not in out and "07:00" not in out
    plan = json.loads(dry_run(root, NPS_10, "--format", "json", state=STATE.replace("visits: 1", "visits: 5"))[1])
    thanks = next(r for r in plan["runs"] if r["rule"] == "thanks")
    assert thanks["steps"][1] == {"path": "do/0", "set": "due", "value": "2026-03-03T10:00:00+03:00"}


def test_an_emitted_event_is_followed_to_the_rules_it_starts(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(RULES)
    code, out = dry_run(root, NPS_10, state=STATE.replace("visits: 1", "visits: 5"))
    assert code == 0, out
    lines = out.splitlines()
    at = lines.index("    emit review.asked {score: 10, channel: sms}")
    assert lines[at + 1:at + 5] == [
        "        ✔ ask-review  (event review.asked)  → waits",
        "            2026-03-02 10:00 +03:00  sms.send {to: +79161234567, text: \"Оставьте отзыв: https://example.com/r\"}",
        "            wait until 2026-03-02 12:00 +03:00",
        "            2026-03-02 12:00 +03:00  task.create {assignee: admin, title: Проверить отзыв Анна}",
    ]
    plan = json.loads(dry_run(root, NPS_10, "--format", "json", state=STATE.replace("visits: 1", "visits: 5"))[1])
    emit = next(r for r in plan["runs"] if r["rule"] == "thanks")["steps"][3]
    assert emit["emit"] == "review.asked" and [r["rule"] for r in emit["follows"][0]["runs"]] == ["ask-review"]


def test_a_chain_of_emits_is_followed_as_deep_as_the_chain_depth_allows(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project("""\
        rules:
          - id: again
            when: {event: loop.step}
            do:
              - emit: {event: loop.step, data: {n: "{{ event.n + 1 }}"}}
        """)
    code, out = dry_run(root, "event: loop.step\ndata: {n: 0}\n")
    assert code == 0, out
    assert out.count("✔ again") == 6  # the event itself and five emitted ones: limits.chain_depth is 5
    assert ("✘ again  (event loop.step): chain depth 6 is over the limit of 5 (a loop of rules?)"
            in out.splitlines()[-3])


def test_a_held_timer_is_shown_in_local_time_not_as_a_mismatch(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(RULES)
    code, out = dry_run(root, "event: booking.updated\nentity: {kind: booking, id: 5}\ndata: {status: waiting}\n",
                        state="- {kind: booking, id: 5, status: new}\n")
    assert code == 0, out
    assert ("⏳ unconfirmed  (booking.status is 'waiting' for 3h): timer set: starts at 2026-03-02 13:00 +03:00 if "
            "booking.status is still waiting") in out
    assert "+00:00" not in out and "T10:00" not in out
    plan = json.loads(dry_run(root, "event: booking.updated\nentity: {kind: booking, id: 5}\ndata: {status: waiting}\n",
                              "--format", "json", state="- {kind: booking, id: 5, status: new}\n")[1])
    assert "(until 2026-03-02 13:00 +03:00)" in next(r for r in plan["runs"] if r["rule"] == "unconfirmed")["reason"]


def test_a_step_that_fails_names_its_place(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = make_project(RULES)
    monkeypatch.chdir(root)  # files are named relative to where the admin runs the command
    code, out = dry_run(root, NPS_10, state='- {kind: client, id: 77, name: Анна, visits: 5}\n')
    assert code == 0, out
    assert ("            ✘ sms.send failed at do/0 (rules/rules.yaml:16:9): {{ client.phone }}: client has no field "
            "'phone'") in out


def test_a_wait_already_past_says_so_in_local_time(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project("""\
        rules:
          - id: remind
            when: {event: booking.created}
            do:
              - wait: {until: "now - duration('1h')"}
              - notify: {to: admin, text: "{{ event.service }}"}
        """)
    code, out = dry_run(root, "event: booking.created\ndata: {service: 'Запись: Анна'}\n")
    assert code == 0, out
    assert out.splitlines()[3:5] == [
        "    wait until 2026-03-02 09:00 +03:00: already past, the run goes on at once",
        "    2026-03-02 10:00 +03:00  notify {to: admin, text: \"Запись: Анна\"}",
    ]


def test_an_if_step_shows_its_condition_and_the_branch_it_took(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project("""\
        rules:
          - id: branches
            when: {event: nps.received}
            do:
              - if: "event.score >= 9"
                then: [{notify: {to: admin, text: promoter}}]
                else: [{notify: {to: admin, text: "NPS {{ event.score }}"}}]
        """)
    code, out = dry_run(root, NPS_10.replace("10", "6"))
    assert code == 0, out
    assert out.splitlines()[3:6] == [
        "    ✘ if event.score >= 9  →  false",
        "    → else:",
        "      2026-03-02 10:00 +03:00  notify {to: admin, text: NPS 6}",
    ]
