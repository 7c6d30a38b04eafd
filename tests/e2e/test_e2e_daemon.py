"""`automator run` as a user runs it: webhooks in, effects out, traces, refusals, stop, hot reload."""
from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta

from e2e_support import RULES, TOKEN, FakeServer, Project, booking_event, wait_for, write_project


def messages(daemon) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in daemon.query('select channel, "to", text from local_messages order by id')]


def journal_count(daemon) -> int:
    return daemon.query("select count(*) from journal")[0][0]


REMINDER = """\
rules:
  - id: reminder-next-day
    description: A confirmed booking is reminded of a day later.
    when: {changed: booking.status, to: confirmed}
    do:
      - wait: 1d
      - sms.send: {to: "{{ booking.phone }}", text: "Напоминание о записи {{ booking.id }}"}
        via: sms
"""


def test_event_in_effect_out_trace_visible(tmp_path, fake_server: FakeServer, start_daemon) -> None:
    project = write_project(tmp_path / "project", fake_server.port, {"main.yaml": RULES, "reminder.yaml": REMINDER})
    daemon = start_daemon(project)
    health = daemon.health()
    assert health["status"] == "ok" and health["rules"] == 5

    answer = daemon.post("booking", booking_event("1001", "arrived", delivery="d-1001"))
    assert (answer.status, answer.body) == (200, {"accepted": 1, "duplicates": 0})

    wait_for(lambda: ("sms", "+79161234567", "Спасибо за визит 1001") in messages(daemon), 10, "the thank-you SMS")
    wait_for(lambda: daemon.query("select title from local_deals") == [("Визит 1001",)], 10, "the deal")
    wait_for(lambda: daemon.query("select title from local_tasks"), 10, "the task of the new deal")
    wait_for(lambda: fake_server.received("/visits"), 10, "the call to the outside system")
    call = fake_server.received("/visits")[0]
    assert call.method == "POST" and call.body == {"booking": "1001"}
    assert call.key and call.key.endswith("/do/2")  # the effect key goes out as Idempotency-Key

    runs = json.loads(daemon.cli("runs", "--format", "json").stdout)
    thanks = [r for r in runs if r["rule"] == "arrived-thanks"]
    assert len(thanks) == 1 and thanks[0]["entity"] == "booking:1001"
    run_id, event_id = thanks[0]["id"], thanks[0]["event"]
    assert call.key == f"{run_id}/do/2"
    assert [r["id"] for r in json.loads(daemon.cli("runs", "--rule", "arrived-thanks", "--entity", "booking:1001",
                                                   "--format", "json").stdout)] == [run_id]
    assert json.loads(daemon.cli("runs", "--entity", "booking:9999", "--format", "json").stdout) == []

    # The run: the trigger, each condition with its value, each action and its effect.
    text = daemon.cli("explain", run_id).stdout
    assert "booking.status changed to 'arrived'" in text
    assert "booking.amount > 100 → True" in text
    assert f"effect {run_id}/do/0  sms.send via sms" in text
    assert f"effect {run_id}/do/1  deal.create via crm" in text
    report = json.loads(daemon.cli("explain", run_id, "--format", "json").stdout)
    conditions = [s for s in report["run"]["trace"] if s["kind"] == "condition"]
    assert conditions == [{**conditions[0], "detail": "booking.amount > 100", "value": True}]
    effects = {e["key"]: e for e in report["run"]["effects"]}
    assert effects[f"{run_id}/do/0"]["params"] == {"to": "+79161234567", "text": "Спасибо за визит 1001"}
    assert effects[f"{run_id}/do/1"]["status"] == "done"

    # The event: the rules that did not match, each with its reason.
    text = daemon.cli("explain", event_id).stdout
    assert "✘ no-show-notify: booking.status changed to 'arrived', rule wants 'no_show'" in text
    assert f"✔ run {run_id}  rule arrived-thanks" in text

    # A visit that does not pass the condition: the event's explain shows the condition and its value.
    answer = daemon.post("booking", booking_event("1002", "arrived", delivery="d-1002", amount=50))
    assert answer.status == 200 and answer.body["accepted"] == 1
    event_2 = wait_for(lambda: daemon.query("select id from journal where delivery_id = 'd-1002' and status = 'done'"),
                       10, "the second event decided")[0][0]
    report = json.loads(daemon.cli("explain", event_2, "--format", "json").stdout)
    why = {w["rule"]: w for w in report["event"]["why_not"]}
    assert ["booking.amount > 100", False] in why["arrived-thanks"]["conditions"], why
    assert why["arrived-thanks"]["reason"]
    assert report["runs"] == []
    assert "booking.amount > 100 → False" in daemon.cli("explain", event_2).stdout

    # The wait ends 2 s later: the follow-up SMS, from the same run.
    wait_for(lambda: ("sms", "+79161234567", "Как прошёл визит 1001?") in messages(daemon), 10, "the follow-up SMS")
    assert messages(daemon).count(("sms", "+79161234567", "Спасибо за визит 1001")) == 1
    assert daemon.query("select count(*) from local_deals") == [(1,)]  # the 50-rouble visit made none
    assert daemon.cli("explain", "no-such-id", check=False).returncode != 0
    assert json.loads(daemon.cli("runs", "--since", "2100-01-01T00:00:00+00:00", "--format", "json").stdout) == []

    # A run that waits a day: its timer is listed, the run is `waiting`, nothing is sent yet.
    assert daemon.post("booking", booking_event("1003", "confirmed", delivery="d-1003")).status == 200
    run = wait_for(lambda: [r for r in json.loads(daemon.cli("runs", "--rule", "reminder-next-day", "--format",
                                                             "json").stdout)], 10, "the reminder run")[0]
    assert run["status"] == "waiting" and run["entity"] == "booking:1003"
    timers = daemon.cli("timers")
    day, clock, offset, kind, rule, entity, run_id = timers.stdout.split()
    assert (kind, rule, entity, run_id) == ("resume", "reminder-next-day", "booking:1003", run["id"]), timers.stdout
    assert offset == "+03:00"  # the project's time zone, Europe/Moscow
    late = datetime.fromisoformat(f"{day}T{clock}{offset}") - datetime.fromisoformat(run["started_at"])
    assert timedelta(hours=23, minutes=59) <= late <= timedelta(days=1, minutes=1), late
    assert "1 timer pending" in timers.stderr
    status = json.loads(daemon.cli("status", "--format", "json").stdout)
    assert status["runs_waiting"] == 1 and status["timers_pending"] == 1 and status["daemon"]["state"] == "running"
    assert not [m for m in messages(daemon) if "Напоминание" in m[2]]


def test_refusals_are_not_journaled_and_duplicates_act_once(project: Project, start_daemon) -> None:
    daemon = start_daemon(project)
    event = booking_event("2001", "no_show", delivery="d-2001")

    assert daemon.post("booking", event, token="wrong").status == 401
    assert daemon.post("booking", event, token=None).status == 401
    assert daemon.post("booking", None, raw=b"{not json").status == 400
    assert daemon.post("booking", None, raw=b'{"event": "no-dot"}').status == 400
    assert daemon.post("booking", None, raw=json.dumps({**event, "pad": "x" * 5000}).encode()).status == 413
    chunked = daemon.request("POST", "/hooks/booking", iter([b"x" * 1000] * 6),
                             {"X-Automator-Token": TOKEN})  # an iterable body goes out chunked
    assert chunked.status == 413  # no Content-Length to go by: cut off while reading
    assert daemon.post("nowhere", event).status == 404
    assert daemon.post("web", event).status == 404  # the http connector receives no webhooks
    assert daemon.request("GET", "/hooks/booking").status == 405
    assert journal_count(daemon) == 0

    got = daemon.metrics()
    def rejected(reason: str) -> float:
        return got.get(("automator_events_rejected_total", frozenset({("connector", "booking"),
                                                                      ("reason", reason)})), 0)
    assert rejected("auth") == 2
    assert rejected("malformed") == 2
    assert rejected("too_large") == 2
    assert rejected("method") == 1
    # A name from the URL that is no connector is counted as "unknown": a stranger cannot mint metric series.
    assert got.get(("automator_events_rejected_total", frozenset({("connector", "unknown"),
                                                                  ("reason", "unknown_connector")})), 0) == 1
    assert got.get(("automator_events_rejected_total", frozenset({("connector", "web"),
                                                                  ("reason", "unknown_connector")})), 0) == 1

    # The same delivery twice: acked both times, journaled and performed once.
    first = daemon.post("booking", event)
    assert (first.status, first.body) == (200, {"accepted": 1, "duplicates": 0})
    again = daemon.post("booking", event)
    assert (again.status, again.body) == (200, {"accepted": 0, "duplicates": 1})
    # The identical body without a delivery id, twice: the second is a duplicate by its content (here with the
    # token in the query string, as systems that cannot set headers send it).
    bare = json.dumps({k: v for k, v in booking_event("2002", "no_show", delivery="-").items()
                       if k != "delivery_id"}).encode()
    assert daemon.post("booking", None, raw=bare).body == {"accepted": 1, "duplicates": 0}
    assert daemon.request("POST", f"/hooks/booking?token={TOKEN}", bare).body == {"accepted": 0, "duplicates": 1}
    wait_for(lambda: len(messages(daemon)) >= 2 and daemon.query(
        "select count(*) from journal where status != 'done'") == [(0,)], 10, "both no-shows notified")
    assert journal_count(daemon) == 2
    assert sorted(messages(daemon)) == [("notify", "admin", "Неявка 2001"), ("notify", "admin", "Неявка 2002")]
    got = daemon.metrics()
    assert got[("automator_events_accepted_total", frozenset({("connector", "booking")}))] == 2
    assert got[("automator_events_duplicate_total", frozenset({("connector", "booking")}))] == 2


def test_sigterm_stops_cleanly(project: Project, fake_server: FakeServer, start_daemon) -> None:
    daemon = start_daemon(project)
    assert daemon.post("booking", booking_event("3001", "no_show", delivery="d-3001")).status == 200
    wait_for(lambda: messages(daemon), 10, "the notification")
    # A call in flight when SIGTERM comes is finished and settled before the process exits.
    fake_server.delays["/visits"] = 1.0
    assert daemon.post("booking", booking_event("3002", "arrived", delivery="d-3002")).status == 200
    wait_for(lambda: fake_server.received("/visits"), 10, "the call in flight")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    [(key, status)] = daemon.query("select key, status from effects where connector = 'web'")
    assert status == "done", (key, status)
    log = daemon.log()
    assert "stopped cleanly" in log
    records = daemon.log_records()
    assert any(r.get("msg") == "stopped cleanly" for r in records)
    assert any("SIGTERM" in r.get("msg", "") for r in records)
    # --log-format json: every line the daemon wrote is one JSON object.
    lines = [line for line in log.splitlines() if line and not line.startswith("---- start")]
    assert lines and all(line.startswith("{") and json.loads(line) for line in lines), lines
    status = json.loads(daemon.cli("status", "--format", "json").stdout)
    assert status["daemon"]["state"] == "stopped"
    assert status["dead_letters"] == 0  # a graceful stop leaves nothing uncertain

    # What the stop left for later (the wait's timer, events the last effects sent back) is done by the next
    # start on the same database, and nothing is done twice.
    again = start_daemon(project, log_name="daemon-2.log")
    wait_for(lambda: ("sms", "+79161234567", "Как прошёл визит 3002?") in messages(again), 15, "the follow-up")
    wait_for(lambda: again.query("select count(*) from journal where status != 'done'") == [(0,)], 10, "the journal")
    assert again.query("select count(*) from local_tasks") == [(1,)]
    assert len(fake_server.received("/visits")) == 1
    assert sorted(m[2] for m in messages(again)) == sorted(["Неявка 3001", "Спасибо за визит 3002",
                                                            "Как прошёл визит 3002?"])
    again.proc.send_signal(signal.SIGINT)  # Ctrl-C stops as cleanly as SIGTERM
    assert again.wait_exit(15) == 0
    assert "stopped cleanly" in again.log()


def test_hot_reload_valid_then_broken(project: Project, start_daemon) -> None:
    daemon = start_daemon(project)
    version_1 = daemon.health()["version"]
    rules_v2 = """\
        rules:
          - id: no-show-notify
            when: {changed: booking.status, to: no_show}
            do:
              - notify: {to: admin, text: "v2: неявка {{ booking.id }}"}
                via: sms
        """
    project.write_rules("main.yaml", rules_v2)
    health = wait_for(lambda: (h := daemon.health())["version"] != version_1 and h, 15, "the reload")
    assert health["rules"] == 1 and health["load_errors"] == 0
    version_2 = health["version"]
    assert daemon.post("booking", booking_event("4001", "no_show", delivery="d-4001")).status == 200
    wait_for(lambda: ("notify", "admin", "v2: неявка 4001") in messages(daemon), 10, "the new rule acting")
    status = json.loads(daemon.cli("status", "--format", "json").stdout)
    assert status["daemon"]["version"] == version_2 and status["daemon"]["load_errors"] == []

    broken = project.write_rules("broken.yaml", """\
        rules:
          - id: broken-rule
            when: {changed: booking.status, to: arrived}
            do:
              - sms.send: {to: "{{ cliet.phone }}", text: "hi"}
        """)
    report = wait_for(lambda: (s := json.loads(daemon.cli("status", "--format", "json").stdout))["daemon"]
                      ["load_errors"] and s, 15, "the load error in `automator status`")
    errors = report["daemon"]["load_errors"]
    # path:line:col of the mistake (the path as the project names it), with the message and its hint.
    assert any(e.startswith("rules/broken.yaml:5:24: error:") and "unknown name 'cliet'" in e for e in errors), errors
    text = daemon.cli("status").stdout
    assert "load error: rules/broken.yaml:5:24: error:" in text
    assert daemon.metrics()[("automator_rule_load_errors", frozenset())] > 0
    health = daemon.health()
    assert health["version"] == version_2 and health["load_errors"] > 0 and health["rules"] == 1
    # The rules already running keep acting.
    assert daemon.post("booking", booking_event("4002", "no_show", delivery="d-4002")).status == 200
    wait_for(lambda: ("notify", "admin", "v2: неявка 4002") in messages(daemon), 10, "the old rules still acting")

    # Fixing the file clears the error.
    broken.unlink()
    wait_for(lambda: daemon.health()["load_errors"] == 0, 15, "the error to clear after the fix")
    assert daemon.metrics()[("automator_rule_load_errors", frozenset())] == 0
