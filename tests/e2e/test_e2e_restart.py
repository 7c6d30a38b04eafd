"""The restart test: the daemon SIGKILLs itself at each crash point, is restarted on the same database, and
nothing accepted is lost, nothing at-most-once happens twice, every timer fires.

Each scenario: start with AUTOMATOR_CRASH_AT, drive a fixed workload (webhooks for several bookings; rules that
send SMS and notifications via local, create deals and tasks via local, call the fake outside system over
http, wait 2 s and hold 2 s), re-send what was not acked (as a sender would), wait for the process to die,
restart without the variable, re-send the rest, wait until all is quiet, then check the end state.
Scenarios run a few at a time (each has its own project, database, port and fake server).
"""
from __future__ import annotations

import http.client
import json
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_support import (Daemon, FakeServer, booking_event, cli, query, wait_for, write_project)

POINTS = ("journal.before_commit", "journal.after_commit", "decide.before_commit", "decide.after_commit",
          "effect.before_call", "effect.after_call", "settle.after_commit", "timers.before_commit",
          "timers.after_commit")
# :N — the Nth time: journal.after_commit:5 is the webhook without a delivery id (deduplicated by its body).
SCENARIOS = (*POINTS, "journal.before_commit:3", "journal.after_commit:5", "decide.after_commit:3",
             "effect.before_call:4", "effect.after_call:5", "settle.after_commit:3", "timers.after_commit:2")
PARALLEL = 4
CALL_DELAY = 0.5  # the fake system takes this long to answer: calls are in flight when the daemon dies

ARRIVED = ("5001", "5002", "5004", "5006")
WAITING = ("5003", "5007")
NO_SHOW = ("5005",)


def workload() -> list[list[tuple[str, Any]]]:
    """Two waves of webhooks (the second 0.6 s after the first, so timers come due in more than one pass).
    Each item: (name, body); a name is what a sender would track to re-send an unacknowledged request."""
    def ev(booking: str, status: str) -> dict[str, Any]:
        return booking_event(booking, status, delivery=f"w-{booking}-{status}")
    # 5005 comes without a delivery id: a re-sent copy is known by its body (the same bytes within 10 minutes).
    bare = {k: v for k, v in ev("5005", "no_show").items() if k != "delivery_id"}
    return [
        [("5001", ev("5001", "arrived")), ("5002", ev("5002", "arrived")), ("5003", ev("5003", "waiting"))],
        [("5004", ev("5004", "arrived")), ("5005", bare),
         ("5006+5007", {"events": [ev("5006", "arrived"), ev("5007", "waiting")]})],
    ]


def expected_messages() -> Counter[tuple[str, str, str]]:
    phone = "+79161234567"
    out: Counter[tuple[str, str, str]] = Counter()
    for b in ARRIVED:
        out[("sms", phone, f"Спасибо за визит {b}")] += 1
        out[("sms", phone, f"Как прошёл визит {b}?")] += 1   # after the 2 s wait
    for b in WAITING:
        out[("notify", "admin", f"Бронь {b} всё ещё ждёт")] += 1   # the `held ... for: 2s` timer
    for b in NO_SHOW:
        out[("notify", "admin", f"Неявка {b}")] += 1
    return out


@dataclass
class Outcome:
    spec: str
    died: bool = False
    returncode: int | None = None
    unacked_at_crash: list[str] = field(default_factory=list)
    duplicates_on_resend: int = 0
    running_http_at_crash: set[str] = field(default_factory=set)  # whose call had begun
    uncertain: set[str] = field(default_factory=set)
    mid_call: int = 0  # uncertain calls the outside system did receive (the daemon died waiting for the answer)
    seconds: float = 0.0
    quiet_at: str = ""  # local time the store was seen quiet (to read against the log when a check fails)
    error: str | None = None


def send(daemon: Daemon, body: Any) -> dict[str, Any] | None:
    """POST a webhook as a sender would; None when it was not acknowledged (the daemon died or is down)."""
    try:
        answer = daemon.post("booking", body)
    except (OSError, http.client.HTTPException):
        return None
    return answer.body if 200 <= answer.status < 300 else None


def quiet(db: Path) -> bool:
    """Nothing left to do: no event to decide, no effect to perform, no timer to fire. One statement, so one
    snapshot: a timer firing moves work from `timers` to `journal` in one commit, and separate reads could
    see it in neither."""
    rows = query(db, "select (select count(*) from journal where status in ('pending', 'claimed')) + "
                     "(select count(*) from effects where status in ('pending', 'running', 'retry')) + "
                     "(select count(*) from timers)")
    return bool(rows) and rows[0][0] == 0


def run_scenario(spec: str, root: Path) -> Outcome:
    outcome = Outcome(spec)
    started = time.monotonic()
    fake = FakeServer()
    fake.delays["/visits"] = CALL_DELAY
    try:
        check_scenario(spec, root, fake, outcome)
    except Exception:
        outcome.error = traceback.format_exc() + diagnose(root, fake)
    finally:
        fake.close()
        outcome.seconds = time.monotonic() - started
    return outcome


def diagnose(root: Path, fake: FakeServer) -> str:
    """What a failing scenario left behind: the store's tables and the daemon's warnings (pytest's tmp folders
    do not outlive many runs on a shared box)."""
    db = root / "project" / "automator.db"
    lines = ["", "journal:"]
    lines += [f"  {r}" for r in query(db, "select seq, type, key, status, source, delivery_id, received_at, done_at, "
                                          "claimed_by, error from journal order by seq")]
    lines += ["effects:"] + [f"  {r}" for r in query(db, "select key, action, connector, status, attempts, error, "
                                                        "updated_at from effects order by rowid")]
    lines += ["timers:"] + [f"  {r}" for r in query(db, "select * from timers")]
    lines += ["runs:"] + [f"  {r}" for r in query(db, "select id, rule_id, key, event_id, status, started_at, "
                                                     "updated_at from runs")]
    lines += ["fake server:"] + [f"  {r.method} {r.path} {r.key}" for r in fake.received()]
    log = (root / "daemon.log").read_text(errors="replace").splitlines() if (root / "daemon.log").exists() else []
    lines += ["log (not INFO):"] + [f"  {line[:400]}" for line in log if '"level": "INFO"' not in line]
    return "\n".join(lines)


def check_scenario(spec: str, root: Path, fake: FakeServer, outcome: Outcome) -> None:
    project = write_project(root / "project", fake.port)
    log = root / "daemon.log"
    first = Daemon(project, log, env={"AUTOMATOR_CRASH_AT": spec})
    second = Daemon(project, log)
    try:
        first.start()
        pending: list[tuple[str, Any]] = []
        for index, wave in enumerate(workload()):
            if index and first.alive:
                # The waves' timers must come due in separate passes: the first wave is decided before the second
                # is sent (the engine process may still be starting when the first arrives).
                decided_by = time.monotonic() + 5
                while first.alive and time.monotonic() < decided_by and query(
                        project.db, "select 1 from journal where status = 'pending' limit 1"):
                    time.sleep(0.05)
                time.sleep(0.6)
            for name, body in wave:
                if not first.alive or send(first, body) is None:
                    pending.append((name, body))
        code = first.wait_exit(20)
        outcome.returncode = code
        outcome.died = code == -9
        if not outcome.died:
            raise AssertionError(f"{spec}: the daemon did not kill itself (exit {code}): the workload never "
                                 f"reached the point\n{first.log()[-3000:]}")
        outcome.unacked_at_crash = [name for name, _ in pending]
        outcome.running_http_at_crash = {k for (k,) in query(
            project.db, "select key from effects where connector = 'web' and status = 'running' "
                        "and started_at is not null")}  # claimed but not yet called: performed after the restart

        second.start()
        for name, body in pending:
            answer = send(second, body)
            assert answer is not None, f"{spec}: {name} refused after the restart\n{second.log()[-3000:]}"
            outcome.duplicates_on_resend += answer["duplicates"]
        wait_for(lambda: quiet(project.db), 30, f"{spec}: all work done after the restart")
        outcome.quiet_at = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        check_end_state(spec, project, fake, outcome)
    finally:
        for daemon in (first, second):
            if daemon.alive:
                daemon.terminate(10)


def check_end_state(spec: str, project: Any, fake: FakeServer, outcome: Outcome) -> None:
    db = project.db
    # Every accepted event decided, each webhook delivery journaled exactly once.
    assert query(db, "select status, count(*) from journal where status != 'done' group by status") == [], spec
    bodies = [json.loads(b) for (b,) in query(db, "select body from journal where source = 'booking'")]
    journaled = Counter((b["entity"]["id"], b["data"]["status"]) for b in bodies)
    wanted = Counter([*((b, "arrived") for b in ARRIVED), *((b, "waiting") for b in WAITING),
                      *((b, "no_show") for b in NO_SHOW)])
    assert journaled == wanted, f"{spec}: journaled webhooks {journaled}"

    # Local effects: each exactly once (sms/notify at_most_once, deals and tasks at_least_once but idempotent).
    got = Counter(tuple(r) for r in query(db, 'select channel, "to", text from local_messages'))
    assert got == expected_messages(), f"{spec}: messages {got - expected_messages()} extra, " \
                                       f"{expected_messages() - got} missing"
    deals = Counter(t for (t,) in query(db, "select title from local_deals"))
    assert deals == Counter(f"Визит {b}" for b in ARRIVED), f"{spec}: deals {deals}"
    [(deal_count,)] = query(db, "select count(distinct id) from local_deals")
    tasks = Counter(t for (t,) in query(db, "select title from local_tasks"))
    assert sum(tasks.values()) == deal_count == len(ARRIVED) and all(n == 1 for n in tasks.values()), \
        f"{spec}: tasks {tasks}"

    # Effects: all done, except http calls interrupted by the crash, which are uncertain and never repeated.
    effects = {k: (action, connector, status) for k, action, connector, status in
               query(db, "select key, action, connector, status from effects")}
    by_status = Counter(status for _, _, status in effects.values())
    http_keys = {k for k, (action, connector, _) in effects.items() if connector == "web"}
    assert len(http_keys) == len(ARRIVED), f"{spec}: http effects {http_keys}"
    local_not_done = {k: v for k, v in effects.items() if v[1] != "web" and v[2] != "done"}
    assert not local_not_done, f"{spec}: local effects not done {local_not_done}"
    performed = {k for (k,) in query(db, "select key from local_done")}
    assert {k for k, v in effects.items() if v[1] != "web"} == performed, f"{spec}: local_done {performed}"
    uncertain = {k for k in http_keys if effects[k][2] == "uncertain"}
    others = {k: effects[k][2] for k in http_keys - uncertain if effects[k][2] != "done"}
    assert not others, f"{spec}: http effects neither done nor uncertain {others} ({by_status})"
    assert uncertain == outcome.running_http_at_crash, \
        f"{spec}: uncertain {uncertain}, running at the crash {outcome.running_http_at_crash}"
    calls = fake.count_by_key()
    assert set(calls) <= http_keys, f"{spec}: unknown calls {calls}"
    assert all(n == 1 for n in calls.values()), f"{spec}: a call went out twice: {calls}"
    for key in http_keys - uncertain:
        assert calls[key] == 1, f"{spec}: {key} is done but the outside system never got it"
    outcome.uncertain = uncertain
    outcome.mid_call = sum(1 for k in uncertain if calls[k])
    if uncertain:
        listing = cli(project, "dead")
        for key in uncertain:
            assert f"{key}  [uncertain]  http.request via web" in listing.stdout, listing.stdout
        assert f"{len(uncertain)} dead letter" in listing.stderr

    # Every run finished (the waits ended), and no timer is left.
    runs = Counter(status for (status,) in query(db, "select status from runs"))
    assert set(runs) == {"done"}, f"{spec}: runs {runs}"
    assert runs["done"] == 2 * len(ARRIVED) + len(WAITING) + len(NO_SHOW), f"{spec}: runs {runs}"
    assert query(db, "select count(*) from timers") == [(0,)]


def test_restart_after_every_crash_point(tmp_path: Path) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda item: run_scenario(item[1], tmp_path / f"s{item[0]:02d}"),
                                 enumerate(SCENARIOS)))
    for o in outcomes:
        print(f"{o.spec:<24} died={o.died} unacked={o.unacked_at_crash} resent-duplicates={o.duplicates_on_resend} "
              f"uncertain={len(o.uncertain)} mid-call={o.mid_call} {o.seconds:.1f}s" + (" FAILED" if o.error else ""))
    tried = [o for o in outcomes if o.died]
    print(f"crash points tried: {len(tried)} of {len(SCENARIOS)} scenarios "
          f"({len({o.spec.partition(':')[0] for o in tried})} distinct points) in {time.monotonic() - started:.1f} s")
    failures = [o.error for o in outcomes if o.error]
    assert not failures, "\n\n".join(failures)
    assert len(tried) == len(SCENARIOS)
    assert {o.spec.partition(":")[0] for o in tried} == set(POINTS)
    # The workload did exercise what the points are for: webhooks lost at the crash were re-sent (and the
    # ones journaled before the answer came back as duplicates), and http calls were cut off mid-call.
    assert any(o.unacked_at_crash for o in outcomes if o.spec.startswith("journal.before_commit"))
    assert all(o.duplicates_on_resend >= 1 for o in outcomes if o.spec.startswith("journal.after_commit"))
    assert sum(len(o.uncertain) for o in outcomes) >= 1
    assert sum(o.mid_call for o in outcomes) >= 1
