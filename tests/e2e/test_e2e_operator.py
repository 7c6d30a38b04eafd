"""What an operator reads, end to end: the log lines of the work, the CLI's runs, explain, timers, status and dead
letters (in the project's time zone), and the operator commands while the daemon holds the write lock."""
from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from e2e_support import FakeServer, Project, booking_event, cli, wait_for, write_project
from test_e2e_daemon import REMINDER
from test_e2e_dead_letters import ORDER_RULES, order

LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+03:00")  # Europe/Moscow, as the project says

ORDERS_AND_REMINDER = ORDER_RULES + REMINDER.removeprefix("rules:\n")


def test_one_webhook_followed_to_its_sms_in_the_log(project: Project, start_daemon) -> None:
    daemon = start_daemon(project)  # --log-format json; the engine in its own process (the default)
    assert daemon.post("booking", booking_event("1001", "arrived", delivery="d-1001")).status == 200
    wait_for(lambda: daemon.query("select count(*) from effects where status = 'done'")[0][0] >= 3, 15,
             "the effects done")

    def records() -> list[dict]:
        return [r for r in daemon.log_records() if r.get("logger") == "automator.work"]

    # The accepted event's line carries its id, connector, type and entity.
    accepted = wait_for(lambda: [r for r in records() if r["msg"].startswith("event accepted")
                                 and r.get("entity") == "booking:1001"], 10, "the accepted event's line")
    assert len(accepted) == 1 and accepted[0]["level"] == "INFO"
    event_id = accepted[0]["event_id"]
    assert (accepted[0]["connector"], accepted[0]["event"]) == ("booking", "booking.updated")

    # Its id leads to the run it started (logged by the engine process, in the same output and format)...
    runs = wait_for(lambda: [r for r in records() if r.get("event_id") == event_id and "run_id" in r
                             and r["rule"] == "arrived-thanks"], 10, "the run's line")
    assert len(runs) == 1 and runs[0]["status"] == "waiting" and runs[0]["entity"] == "booking:1001"
    run_id = runs[0]["run_id"]
    assert {"ts", "level", "logger", "msg"} <= set(runs[0])

    # ...and the run's id to its effects as they settled: the SMS (performed by the engine process, `local`) and
    # the call to the outside system (performed by the first process).
    effects = wait_for(lambda: (e := {r["effect"]: r for r in records() if r.get("run_id") == run_id
                                      and "effect" in r}) and len(e) >= 3 and e, 10, "the effects' lines")
    sms, call = effects[f"{run_id}/do/0"], effects[f"{run_id}/do/2"]
    assert (sms["action"], sms["connector"], sms["outcome"], sms["tries"], sms["rule"]) == \
        ("sms.send", "sms", "done", 1, "arrived-thanks")
    assert sms["level"] == "INFO"
    assert (call["action"], call["connector"], call["outcome"]) == ("http.request", "web", "done")
    # The phone is masked, here and everywhere in the log.
    assert sms["to"] == "+7916*****67"
    assert "+79161234567" not in daemon.log()
    # One line per thing: the event once, the run once for this decision.
    assert len([r for r in records() if r.get("effect") == sms["effect"]]) == 1


def test_runs_show_effect_states_explain_keeps_every_try_times_are_local(tmp_path, fake_server: FakeServer,
                                                                          start_daemon) -> None:
    project = write_project(tmp_path / "project", fake_server.port, ORDERS_AND_REMINDER)
    daemon = start_daemon(project)
    fake_server.answer("/orders", 503, retry_after=1)
    assert daemon.post("booking", order("1")).status == 200
    key = wait_for(lambda: daemon.query("select key from effects where rule_id = 'order-to-erp'"), 10, "the effect")[0][0]
    wait_for(lambda: daemon.query("select status from effects where key = ?", (key,)) == [("dead",)], 15,
             "the dead letter")
    run_id = key.split("/")[0]

    # `runs` says the run's steps are done and that its effect is dead.
    listing = daemon.cli("runs", "--rule", "order-to-erp").stdout
    line = next(line for line in listing.splitlines() if line.startswith(run_id))
    assert "done" in line and line.endswith("effects: 1 dead"), listing
    assert LOCAL_TIME.search(line), line
    as_json = json.loads(daemon.cli("runs", "--rule", "order-to-erp", "--format", "json").stdout)
    assert as_json[0]["effects"] == {"dead": 1} and as_json[0]["started_at"].endswith("+03:00")
    # --since without an offset is the project's local time (read as UTC, an hour before would be two after).
    an_hour_before = (datetime.fromisoformat(as_json[0]["started_at"]) - timedelta(hours=1)).replace(tzinfo=None)
    assert [r["id"] for r in json.loads(daemon.cli("runs", "--rule", "order-to-erp", "--since",
                                                   an_hour_before.isoformat(), "--format", "json").stdout)] == [run_id]
    assert LOCAL_TIME.search(daemon.cli("dead").stdout)

    # Replayed, and this time it goes through: explain keeps the two tries before, the replay and the last one.
    fake_server.answer("/orders", 200)
    daemon.cli("dead", "--replay", key)
    wait_for(lambda: daemon.query("select status from effects where key = ?", (key,)) == [("done",)], 10,
             "the replayed effect done")
    text = daemon.cli("explain", run_id).stdout
    tries = [line.strip() for line in text.splitlines() if " try " in line or "replayed" in line]
    assert len(tries) == 4, text
    assert "try 1: retry" in tries[0] and "503" in tries[0]
    assert "try 2: dead" in tries[1] and "gave up after 2 attempts" in tries[1]
    assert "replayed by an operator (was dead)" in tries[2]
    assert "try 1: done" in tries[3]
    assert all(LOCAL_TIME.search(t) for t in tries), tries
    assert json.loads(daemon.cli("explain", run_id, "--format", "json").stdout)["run"]["effects"][0]["tries"][-1][
        "status"] == "done"
    assert "effects: 1 done" in daemon.cli("runs", "--rule", "order-to-erp").stdout
    # Each try has its log line too, at the level its outcome deserves.
    logged = wait_for(lambda: (t := [(r["outcome"], r["level"], r["tries"]) for r in daemon.log_records()
                                     if r.get("effect") == key]) and len(t) == 3 and t, 10, "the tries' lines")
    assert logged == [("retry", "WARNING", 1), ("dead", "ERROR", 2), ("done", "INFO", 1)]

    # A waiting run's timer and the daemon's status, in local time with the offset.
    assert daemon.post("booking", booking_event("1003", "confirmed", delivery="d-1003")).status == 200
    timers = wait_for(lambda: (t := daemon.cli("timers").stdout) and "reminder-next-day" in t and t, 10, "the timer")
    assert LOCAL_TIME.match(timers), timers
    status = daemon.cli("status").stdout
    assert re.search(r"since:\s+" + LOCAL_TIME.pattern + ", last heartbeat " + LOCAL_TIME.pattern, status), status
    assert json.loads(daemon.cli("status", "--format", "json").stdout)["daemon"]["heartbeat"].endswith("+03:00")


SANDBOX_CONFIG = """\
timezone: Europe/Moscow
connectors:
  sms: {{type: smsru, api_id: "${{env:SMSRU_API_ID}}"}}
  crm: {{type: local}}
  booking: {{type: local, secret: "${{env:{token_env}}}"}}
store: automator.db
"""


def test_the_sandbox_says_once_per_reload_which_emulator_plays_a_connector(tmp_path, start_daemon) -> None:
    project = write_project(tmp_path / "project", 0, {"main.yaml": "rules: []\n"}, config=SANDBOX_CONFIG)
    daemon = start_daemon(project, args=("--sandbox",))

    def said(what: str) -> int:
        return sum(1 for r in daemon.log_records() if what in r.get("msg", ""))

    # The engine process builds the same connectors, then says it is ready: by then it has said nothing more.
    wait_for(lambda: said("engine process ready") == 1, 15, "the engine process")
    assert said("talks to its emulator") == 1, daemon.log()
    project.write_rules("more.yaml", "rules: []\n")
    wait_for(lambda: said("engine process reloaded") == 1, 15, "the engine process's reload")
    assert said("talks to its emulator") == 2, daemon.log()


HOLD_THE_WRITE_LOCK = """
import fcntl, sqlite3, sys, time
db = sys.argv[1]
# The daemon's writers take turns through a lock file, then SQLite's own write lock: hold both, as a daemon stopped
# in the middle of a transaction would. If the stopped daemon holds them already, so much the better.
fd = open(db + "-lock", "a+")
for _ in range(100):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
    except BlockingIOError:
        time.sleep(0.02)
try:
    conn = sqlite3.connect(db, isolation_level=None, timeout=2)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("insert or replace into meta (name, value) values ('stuck', 'writer')")
except sqlite3.OperationalError:
    pass  # the stopped daemon (or its engine process) is in a write transaction
print("held", flush=True)
time.sleep(120)
"""


def test_operator_commands_do_not_wait_for_a_stuck_writer(project: Project, start_daemon) -> None:
    daemon = start_daemon(project)
    assert daemon.post("booking", booking_event("1001", "arrived", delivery="d-1001")).status == 200
    wait_for(lambda: daemon.query("select count(*) from runs")[0][0] >= 1, 10, "a run")
    run_id = daemon.query("select id from runs limit 1")[0][0]
    daemon.proc.send_signal(signal.SIGSTOP)  # a daemon stopped while it holds the write lock...
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_WRITE_LOCK, str(project.db)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"  # ...the lock is held
        for args in (("status",), ("runs",), ("explain", run_id), ("timers",), ("dead",)):
            started = time.monotonic()
            answer = cli(project, *args, check=False)  # 60 s timeout; it used to wait 30 s, then a traceback
            assert answer.returncode == 0, (args, answer.stderr)
            assert time.monotonic() - started < 20, args
        assert "daemon:" in cli(project, "status").stdout
        # A write waits a bounded time, then says why in one line.
        refused = cli(project, "dead", "--replay", f"{run_id}/do/0", check=False)
        assert refused.returncode == 1
        assert "the database is busy" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        holder.kill()
        holder.wait()
        daemon.proc.send_signal(signal.SIGCONT)
    assert daemon.terminate() == 0


def test_operator_commands_say_what_is_wrong_with_the_database_in_one_line(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", 0)
    missing = cli(project, "status", check=False)
    assert missing.returncode == 1 and "no database at" in missing.stderr and "Traceback" not in missing.stderr

    with sqlite3.connect(project.db) as conn:  # a database of an older automator: tables and columns missing
        conn.execute("create table journal (seq integer primary key, id text)")
    old = cli(project, "runs", check=False)
    assert old.returncode == 1 and "Traceback" not in old.stderr
    assert "lacks" in old.stderr and "automator run` upgrades it" in old.stderr, old.stderr

    project.db.unlink()
    project.db.write_bytes(b"not a database at all, but a file of the same name" * 100)
    broken = cli(project, "timers", check=False)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1, broken.stderr
