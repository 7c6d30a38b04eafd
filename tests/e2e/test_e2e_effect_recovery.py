"""Effects interrupted by a crash (issue 10, items 11 and 12), through a real `automator run` subprocess that kills
itself at a crash point and is restarted on the same database.

- An effect read as due but still waiting for its rate-limit token when the daemon dies was never sent: it is
  performed after the restart, not parked as uncertain; only an effect whose call may have begun is parked.
- An at_least_once create interrupted after its call and before its settle is tried again after the restart,
  and the retry finds what the first try made (the effect key written into the record, found by the system's own
  search) instead of creating it twice.
"""
from __future__ import annotations

import json
from pathlib import Path

from e2e_support import CONFIG, Daemon, FakeServer, Project, booking_event, query, wait_for, write_project

from automator.emulator import serve
from automator_connectors.bitrix24.emulator import Bitrix24Emulator

BOOKINGS = [str(6001 + i) for i in range(5)]

CALL_RULES = """\
rules:
  - id: arrived-call
    description: Every arrival is told to the outside system (http.request is at_most_once).
    when: {changed: booking.status, to: arrived}
    do:
      - http.request: {method: POST, url: "{{ settings.hook_url }}", json: {booking: "{{ booking.id }}"}}
        via: web
"""


def quiet(db: Path) -> bool:
    rows = query(db, "select (select count(*) from journal where status in ('pending', 'claimed')) + "
                     "(select count(*) from effects where status in ('pending', 'running', 'retry'))")
    return bool(rows) and rows[0][0] == 0


def test_effects_claimed_but_not_called_at_a_crash_are_performed_not_parked(tmp_path: Path,
                                                                            fake_server: FakeServer) -> None:
    # One call every 2 s, each answered after 1 s: of the effects claimed together, the first is called at once and
    # the others wait for their tokens. The daemon dies as the first call's answer comes back, before it is settled.
    config = CONFIG.replace("timeout: 5}}", "timeout: 5, rate: 0.5}}")
    assert config != CONFIG
    fake_server.delays["/visits"] = 1.0
    project = write_project(tmp_path / "project", fake_server.port, CALL_RULES, config=config)
    log = tmp_path / "daemon.log"
    first = Daemon(project, log, env={"AUTOMATOR_CRASH_AT": "effect.after_call:1"}).start()
    events = [booking_event(b, "arrived", delivery=f"d-{b}") for b in BOOKINGS]
    assert first.post("booking", {"events": events}).status == 200
    assert first.wait_exit(30) == -9, first.log()[-3000:]
    sent_before = {r.key for r in fake_server.received()}
    assert len(sent_before) == 1, sent_before  # only the first call had begun

    # The stored state tells the two apart: a started call has `started_at`; the others, read as due and waiting
    # for their tokens, were never taken on disk (each is taken by its call's start mark): still pending.
    rows = query(project.db, "select key, status, started_at from effects where connector = 'web'")
    assert {k for k, status, started in rows if started is not None} == sent_before
    unstarted = [k for k, status, started in rows if status == "pending" and started is None]
    assert unstarted, rows  # waiting for a token when the daemon died

    second = Daemon(project, log).start()
    try:
        wait_for(lambda: quiet(project.db), 30, "all effects performed after the restart")
        states = dict(query(project.db, "select key, status from effects where connector = 'web'"))
        assert len(states) == len(BOOKINGS)
        calls = fake_server.count_by_key()
        parked = {k for k, s in states.items() if s == "uncertain"}
        assert parked == sent_before, states  # only the effect whose call had begun is parked
        assert {k for k, s in states.items() if s == "done"} == set(states) - parked
        assert set(calls) == set(states) and all(n == 1 for n in calls.values()), calls  # each sent once
        never_sent_but_parked = query(project.db, "select count(*) from effects where status = 'uncertain' "
                                                  "and started_at is null")
        assert never_sent_but_parked == [(0,)]
        listing = second.cli("dead")
        (key,) = parked
        assert f"{key}  [uncertain]" in listing.stdout and "interrupted during the call (begun at" in listing.stdout
        assert "1 dead letter" in listing.stderr
        explained = second.cli("explain", key.split("/")[0]).stdout
        assert "[uncertain, 1 try]" in explained and "interrupted during the call (begun at" in explained
        recovered = [r for r in second.log_records() if "recovered after a crash" in str(r.get("msg", ""))]
        assert recovered and "1 effects parked as uncertain" in recovered[0]["msg"], recovered
    finally:
        second.terminate(10)


TASK_CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sun}
connectors:
  crm: {type: bitrix24, webhook_url: "${env:B24_WEBHOOK_URL}", application_token: "${env:B24_APP_TOKEN}",
        roles: {admin: 1}, poll_every: "off"}
  booking: {type: local, secret: "${env:E2E_BOOKING_TOKEN}"}
store: automator.db
"""

TASK_RULES = """\
rules:
  - id: arrived-task
    description: Every arrival gets a Bitrix24 task (task.create is at_least_once; tasks.task.add takes no key).
    when: {changed: booking.status, to: arrived}
    do:
      - task.create: {assignee: admin, title: "Позвонить после визита {{ booking.id }}"}
        via: crm
"""


def test_an_interrupted_bitrix24_task_create_is_found_after_the_restart_not_made_twice(tmp_path: Path) -> None:
    portal = Bitrix24Emulator(user_id="1", code="k3y", application_token="app-token")
    with serve(portal) as served:
        root = tmp_path / "project"
        (root / "rules").mkdir(parents=True)
        (root / "automator.yaml").write_text(TASK_CONFIG)
        (root / "rules" / "tasks.yaml").write_text(TASK_RULES)
        project = Project(root, 0)
        env = {"B24_WEBHOOK_URL": f"{served.url}/rest/1/k3y/", "B24_APP_TOKEN": "app-token"}
        log = tmp_path / "daemon.log"
        # Killed once the portal has answered the create, before the answer is settled: the task exists.
        first = Daemon(project, log, env={**env, "AUTOMATOR_CRASH_AT": "effect.after_call:1@daemon"}).start()
        assert first.post("booking", booking_event("7001", "arrived", delivery="d-7001")).status == 200
        assert first.wait_exit(30) == -9, first.log()[-3000:]
        assert len(portal.portal.tasks) == 1
        [(key, status, started)] = query(project.db, "select key, status, started_at from effects")
        assert status == "running" and started is not None

        second = Daemon(project, log, env=env).start()
        try:
            wait_for(lambda: quiet(project.db), 30, "the interrupted create settled after the restart")
            [task] = portal.portal.tasks.values()  # found by its tag, not made again
            assert task["tags"] == [f"automator:{key}"] and task["title"] == "Позвонить после визита 7001"
            [(status, attempts, interrupted, result)] = query(project.db, "select status, attempts, interrupted, "
                                                                          "result from effects")
            assert (status, attempts, interrupted, json.loads(result)) == ("done", 2, 1, {"id": task["id"]})
            methods = [c.path.rsplit("/", 1)[-1] for c in portal.calls if c.path.startswith("/rest/")]
            assert methods == ["tasks.task.add", "tasks.task.list"], methods
        finally:
            second.terminate(10)
