"""Crash test: `automator run` SIGKILLed at random moments under load, restarted on the same database, then counted.

The daemon runs as an operator starts it (two processes, synchronous=FULL, the default) on a project whose rules,
for every webhook (`booking.updated {status: arrived}` of a new booking, each with its own delivery id), make
  - `crash-now`: an `http.request` at once (at_most_once) to the sink;
  - `crash-later`: `wait: 2s`, then an `http.request` (at_most_once) to the sink: timers are in flight at every kill;
  - `crash-sms`: for one webhook in SMS_EVERY, an `http.request` (at_most_once) through a connector limited to
    SMS_RATE calls/s, as an SMS gateway is: near its limit, so claimed effects wait for their turn at a kill;
  - `crash-task`: for one webhook in TASK_EVERY, a Bitrix24 `task.create` (at_least_once; the API takes no
    idempotency key) against the Bitrix24 emulator (connectors/bitrix24/emulator.py) in its own process.
The sink is a keep-alive HTTP server in its own process that records every request's `Idempotency-Key` (the
effect key the `http` connector sends) and the booking it names; the Bitrix24 emulator keeps every task it made,
titled with its booking. Both outlive every kill, so what they saw is what the other systems saw.

The load is open loop (RATE webhooks/s, _loadgen.py, reconnecting after each kill). KILLS times, after a random
time up (0.2-3 s after /healthz answered), one of: both processes SIGKILLed at once (most kills), the daemon only
(its engine process must follow it), or the engine process only (the daemon must exit, to be restarted); then
the daemon is started again on the same database. At the end the load stops, the daemon drains (bounded) until
/metrics shows nothing pending, is stopped with SIGTERM, and everything is counted from the outside:
  - webhooks acknowledged (200) vs events in the journal: lost = acknowledged but not journaled, or journaled
    and never decided;
  - effects expected vs delivered per kind as the sink / emulator saw them; duplicated = the same booking's
    request (http) or task (task.create, by title) received more than once, so that a repeat under another key
    counts too (the JSON line also has `duplicated_keys`: an Idempotency-Key the sink saw more than once);
  - effects parked as uncertain by the daemon, and of those "parked but never sent": the sink never saw the key
    (or the emulator has no such task) — measured outside the daemon, whatever the store says;
  - missing: expected, never delivered and not parked (a silent loss);
  - timers fired more than once or never (`timer.fired` events in the journal per waiting run);
  - PRAGMA integrity_check; restart-to-healthy times (process start to /healthz 200), max and median;
  - how long the surviving process outlived a partner killed alone.
Printed as a table and one JSON line; nothing is asserted. `--quick`: 5 kills (a smoke run of a minute or so).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as d  # noqa: E402
from _loadgen import TOKEN_ENV, Load  # noqa: E402
from http_client import RESPONSE  # noqa: E402

KILLS, QUICK_KILLS = 60, 5
RATE = 300
TASK_EVERY = 100  # one webhook in 100 creates a task: 3/s at 300/s, under the connector's 5/s (enterprise plan)
# One webhook in 30 sends an "SMS" (http.request through a connector limited to SMS_RATE calls/s, as an SMS
# gateway is): at the limit while the daemon is up, so claimed effects wait for the bucket when a kill comes.
SMS_EVERY, SMS_RATE = 30, 10
UP_S = (0.2, 3.0)  # how long the daemon runs between its start being healthy and the kill
KILL_MODES = (("both", 0.7), ("daemon", 0.15), ("engine", 0.15))
GONE_CAP_S = 10.0  # how long a process killed's partner may take to go; past it, it is killed too
HEALTHY_CAP_S = 60.0
DRAIN_CAP_S = 120.0
B24_CODE, B24_TOKEN = "crashbench", "crash-app-token"

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {{type: local, secret: "${{env:{token_env}}}"}}
  out: {{type: http, allow: ["127.0.0.1:{sink}"]}}
  sms: {{type: http, allow: ["127.0.0.1:{sink}"], rate: {sms_rate}}}
  b24:
    type: bitrix24
    webhook_url: "${{env:CRASH_B24_URL}}"
    application_token: "${{env:CRASH_B24_TOKEN}}"
    plan: enterprise
    poll_every: "off"
    roles: {{admin: 1}}
"""
RULES = """\
rules:
  - id: crash-now
    when: {{changed: booking.status, to: arrived}}
    do:
      - http.request: {{method: POST, url: "http://127.0.0.1:{sink}/now", json: {{booking: "{{{{ booking.id }}}}"}}}}
        via: out
  - id: crash-later
    when: {{changed: booking.status, to: arrived}}
    do:
      - wait: 2s
      - http.request: {{method: POST, url: "http://127.0.0.1:{sink}/later", json: {{booking: "{{{{ booking.id }}}}"}}}}
        via: out
  - id: crash-sms
    when: {{changed: booking.status, to: arrived}}
    if: "booking.client % {sms_every} == 1"
    do:
      - http.request: {{method: POST, url: "http://127.0.0.1:{sink}/sms", json: {{booking: "{{{{ booking.id }}}}"}}}}
        via: sms
  - id: crash-task
    when: {{changed: booking.status, to: arrived}}
    if: "booking.client % {task_every} == 0"
    do:
      - task.create: {{assignee: admin, title: "crash {{{{ booking.id }}}}"}}
        via: b24
"""
HTTP_KINDS = {"crash-now": "/now", "crash-later": "/later", "crash-sms": "/sms"}


def write_crash_project(root: Path, sink_port: int) -> Path:
    """The crash project (RULES) in `root`; returns automator.yaml."""
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "automator.yaml").write_text(CONFIG.format(token_env=TOKEN_ENV, sink=sink_port, sms_rate=SMS_RATE))
    (root / "rules" / "crash.yaml").write_text(RULES.format(sink=sink_port, task_every=TASK_EVERY,
                                                            sms_every=SMS_EVERY))
    return root / "automator.yaml"


# --- the sink: records each request's idempotency key ------------------------------------------------------------

def _sink(port_out: Any, lifetime: float) -> None:
    """The other end of the `http.request` effects: answers 200 and counts, per path, each `Idempotency-Key` and
    each booking named in a JSON body; `GET /_state` returns the counts."""
    # {path: {idempotency key: times seen}}, {path: {booking: times seen}}
    keys: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    bookings: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def record(head: bytes, payload: bytes) -> bytes:
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path = request_line.split(" ")[:2]
        if method == "GET" and path == "/_state":
            data = json.dumps({"keys": keys, "bookings": bookings}).encode()
            return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(data), data))
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
        keys[path][headers.get("idempotency-key", "")] += 1
        with contextlib.suppress(ValueError, AttributeError):
            bookings[path][str(json.loads(payload).get("booking"))] += 1
        return RESPONSE

    d.serve_http(port_out, lifetime, record)


def _bitrix24(port_out: Any, lifetime: float) -> None:
    """The Bitrix24 emulator on uvicorn, limits off (the connector keeps to its own bucket)."""
    import uvicorn

    from automator_connectors.bitrix24.emulator import Bitrix24Emulator

    app = Bitrix24Emulator(code=B24_CODE, application_token=B24_TOKEN, limits=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        port_out.send(sock.getsockname()[1])
        port_out.close()
        await asyncio.wait([task], timeout=lifetime)
        server.should_exit = True
        await task

    asyncio.run(main())


class Outside:
    """A system on the other side, in a child process of its own that stops by itself after `lifetime` s."""

    def __init__(self, target: Any, lifetime: float) -> None:
        ctx: Any = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=target, args=(child, lifetime), daemon=True)
        self.process.start()
        if not parent.poll(30):
            self.close()
            raise RuntimeError(f"{target.__name__} did not start")
        self.port: int = parent.recv()

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        self.process.kill()
        self.process.join(5)


# --- killing and restarting ----------------------------------------------------------------------------------------

def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), None if gone or a zombie: tells a pid reused apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(pid: int, started: str | None) -> bool:
    return started is not None and _start_time(pid) == started


def wait_gone(members: dict[int, str | None], proc: Any, cap: float) -> float | None:
    """Wait until every process in `members` ({pid: start time}) has ended (the daemon, our child, is reaped);
    the seconds it took, or None if one was still alive after `cap` s (then it is SIGKILLed)."""
    began = time.monotonic()
    while time.monotonic() - began < cap:
        with contextlib.suppress(Exception):
            proc.wait(0.005)
        if not any(_alive(pid, started) for pid, started in members.items()):
            return time.monotonic() - began
        time.sleep(0.005)
    for pid, started in members.items():
        if _alive(pid, started):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(5)
    return None


# --- counting ------------------------------------------------------------------------------------------------------

def _kind(rule: str, wanted: set[str], effects: list[tuple[str, str, dict[str, Any]]], sink: dict[str, Any],
          tasks: list[dict[str, Any]], nonce: str) -> dict[str, Any]:
    """The figures of one kind of effect: `wanted` bookings, the store's `effects` rows (key, status, params) and
    what the sink (an http path) or the Bitrix24 emulator (tasks, by title) received."""
    if rule in HTTP_KINDS:
        keys_seen: dict[str, int] = sink["keys"].get(HTTP_KINDS[rule], {})
        ours = {b: n for b, n in sink["bookings"].get(HTTP_KINDS[rule], {}).items() if b.startswith(f"{nonce}-")}

        def booking(params: dict[str, Any]) -> str:
            return str((params.get("json") or {}).get("booking"))

        def reached(key: str, params: dict[str, Any]) -> bool:
            return key in keys_seen
    else:  # a task is known by its title, which names the booking (whatever else a connector may add to it)
        named = re.compile(rf"crash ({re.escape(nonce)}-\d+)")
        ours = dict(collections.Counter(m.group(1) for t in tasks if (m := named.search(str(t.get("title", ""))))))

        def booking(params: dict[str, Any]) -> str:
            m = named.search(str(params.get("title", "")))
            return m.group(1) if m else ""

        def reached(key: str, params: dict[str, Any]) -> bool:
            return booking(params) in ours
    delivered = set(ours)
    statuses = collections.Counter(status for _, status, _ in effects)
    parked = [(key, params) for key, status, params in effects if status == "uncertain"]
    out = {"expected": len(wanted), "recorded": len(effects), "delivered": len(delivered & wanted),
           "delivered_extra": len(delivered - wanted),
           # What the recipient sees: the same booking's request (or task) more than once, whatever the keys were.
           "duplicated": sum(1 for n in ours.values() if n > 1), "deliveries": sum(ours.values()),
           "uncertain": len(parked), "parked_never_sent": sum(1 for key, params in parked if not reached(key, params)),
           "dead": statuses.get("dead", 0),
           "missing": len(wanted - delivered - {booking(params) for _, params in parked}),
           "statuses": dict(statuses)}
    if rule in HTTP_KINDS:
        out.update(keys_reached=sum(1 for key, _, params in effects if reached(key, params)),
                   duplicated_keys=sum(1 for key, _, _ in effects if keys_seen.get(key, 0) > 1))
    return out


def count(db: Path, nonce: str, acked: list[int], sink: dict[str, Any], tasks: list[dict[str, Any]]
          ) -> dict[str, Any]:
    """Everything the crash test reports, from the stopped daemon's database and what the outside systems saw."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out: dict[str, Any] = {"integrity": conn.execute("pragma integrity_check").fetchone()[0]}
    journal = {delivery: status for delivery, status in conn.execute(
        "select delivery_id, status from journal where source = 'crm' and delivery_id like ?", [f"{nonce}-%"])}
    acked_ids = {f"{nonce}-{n}" for n in acked}
    out["acked"] = len(acked_ids)
    out["journaled"] = len(journal)
    out["lost_not_journaled"] = sum(1 for i in acked_ids if i not in journal)
    out["lost_not_decided"] = sum(1 for i in acked_ids if i in journal and journal[i] != "done")
    out["lost"] = out["lost_not_journaled"] + out["lost_not_decided"]
    decided = {i for i, status in journal.items() if status == "done"}  # delivery id = booking id

    def client(delivery: str) -> int:  # what _loadgen.body() puts in the webhook's `client`
        return int(delivery.rsplit("-", 1)[1]) % 5000

    expected = {"crash-now": decided, "crash-later": decided,
                "crash-sms": {i for i in decided if client(i) % SMS_EVERY == 1},
                "crash-task": {i for i in decided if client(i) % TASK_EVERY == 0}}

    effects: dict[str, list[tuple[str, str, dict[str, Any]]]] = collections.defaultdict(list)
    for key, rule, status, params in conn.execute(
            "select key, rule_id, status, params from effects where rule_id like 'crash-%'"):
        effects[rule].append((key, status, json.loads(params)))

    out["effects"] = {rule: _kind(rule, wanted, effects[rule], sink, tasks, nonce) for rule, wanted in expected.items()}

    # Each waiting run of crash-later is woken by one timer.fired event (its id is the timer's and due time).
    fired: collections.Counter[str] = collections.Counter()
    for (body,) in conn.execute("select body from journal where type = 'timer.fired'"):
        data = json.loads(body).get("data") or {}
        if data.get("kind") == "wait" or data.get("run"):
            fired[str(data.get("run"))] += 1
    waiting_runs = [run for (run,) in conn.execute("select id from runs where rule_id = 'crash-later'")]
    out["timer_runs"] = len(waiting_runs)
    out["timers_fired_twice"] = sum(1 for run in waiting_runs if fired[run] > 1)
    out["timers_never_fired"] = sum(1 for run in waiting_runs if fired[run] == 0)
    out["timers_left"] = conn.execute("select count(*) from timers where rule_id = 'crash-later'").fetchone()[0]
    out["journal_not_done"] = conn.execute("select count(*) from journal where status != 'done'").fetchone()[0]
    conn.close()
    return out


# --- the run -------------------------------------------------------------------------------------------------------

def run(kills: int, rate: float, seed: int, work: Path) -> dict[str, Any]:
    """Start everything, kill and restart `kills` times under load, drain, count."""
    rng = random.Random(seed)
    print(f"crash test: {kills} kills at {rate:g} webhooks/s, seed {seed}, in {work}", flush=True)
    longest = kills * (UP_S[1] + GONE_CAP_S + HEALTHY_CAP_S) + 60  # the kill loop can take no longer than this
    lifetime = longest + DRAIN_CAP_S + 300  # the outside systems stop by themselves even if the bench is killed
    sink = Outside(_sink, lifetime)
    b24 = Outside(_bitrix24, lifetime)
    nonce = uuid.uuid4().hex[:8]
    env = {"CRASH_B24_URL": f"http://127.0.0.1:{b24.port}/rest/1/{B24_CODE}/", "CRASH_B24_TOKEN": B24_TOKEN}
    config = write_crash_project(work, sink.port)
    port = d.free_port()
    cmd = d.daemon_command(config, port)
    log = work / "daemon.log"
    restarts: list[float] = []
    outlived: dict[str, list[float]] = {"engine after daemon": [], "daemon after engine": []}
    stuck: collections.Counter[str] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    failure = None
    up_s = 0.0  # the time the daemon served, between /healthz answering and the kill
    exited_alone = 0
    proc = d.start(cmd, log, env)
    load: Load | None = None
    try:
        healthy = d.wait_healthy(port, proc, timeout=HEALTHY_CAP_S)
        load = Load(mode="paced", port=port, path="/hooks/crm", conns=64, rate=rate, duration=longest,
                    nonce=nonce, delivery=True, reconnect=True, acked=True)
        for _ in range(kills):
            time.sleep(rng.uniform(*UP_S))
            if proc.poll() is not None:  # it ended before the kill came: a crash of its own, worth knowing
                exited_alone += 1
            members = {pid: _start_time(pid) for pid in d.family(proc.pid)}
            engine = [pid for pid in members if pid != proc.pid]
            mode = rng.choices([m for m, _ in KILL_MODES], [w for _, w in KILL_MODES])[0] if engine else "both"
            modes[mode] += 1
            up_s += time.monotonic() - healthy
            if mode in ("both", "engine"):
                for pid in engine:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            if mode in ("both", "daemon"):
                proc.kill()
            took = wait_gone(members, proc, GONE_CAP_S)
            if mode != "both":
                if took is None:
                    stuck[mode] += 1
                else:
                    outlived["engine after daemon" if mode == "daemon" else "daemon after engine"].append(took)
            started = time.monotonic()
            proc = d.start(cmd, log, env)
            try:
                healthy = d.wait_healthy(port, proc, timeout=HEALTHY_CAP_S)
                restarts.append(healthy - started)
            except RuntimeError as e:
                failure = f"restart {len(restarts) + 1}: {e}"
                healthy = time.monotonic()  # it was not up
                break
            if len(restarts) % 10 == 0 or len(restarts) == kills:  # a run of minutes shows it is moving
                print(f"  {len(restarts)} of {kills} kills, {load.acks.value:,} webhooks acknowledged, restart "
                      f"median {statistics.median(restarts):.2f} s", flush=True)
        up_s += time.monotonic() - healthy
        load.stop()
        result = load.result(60)
        load = None
        drained, pending = d.drain(port, DRAIN_CAP_S) if failure is None else (None, {})
        d.stop(proc, timeout=30)
        figures = count(work / "automator.db", nonce, result["acked"], sink.get_json("/_state"),
                        b24.get_json("/_emulator/state").get("tasks", []))
    finally:  # whatever happened: every process started here is ended, by its pid
        engines = [pid for pid in d.family(proc.pid) if pid != proc.pid]
        d.stop(proc, timeout=10)
        for pid in engines:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if load is not None:
            load.stop()
            with contextlib.suppress(Exception):
                load.result(40)
        sink.close()
        b24.close()
    figures.update(sent=result["sent"], not_acked=result["sent"] - len(result["acked"]),
                   kills=len(restarts), kill_modes=dict(modes), up_s=up_s, exited_alone=exited_alone, failure=failure, drain_s=drained,
                   pending_at_end={k.removeprefix("automator_"): pending.get(k) for k in d.PENDING},
                   restart_max_s=max(restarts, default=float("nan")),
                   restart_median_s=statistics.median(restarts) if restarts else float("nan"),
                   outlived_max_s={k: max(v, default=None) for k, v in outlived.items()},
                   partner_stuck=dict(stuck))
    return figures


def report(f: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Print the tables and the JSON line; the summary figures."""
    print(f"crash test: {f['kills']} SIGKILLs ({', '.join(f'{k} {v}' for k, v in f['kill_modes'].items())}) under "
          f"{args.rate:g} webhooks/s, daemon FULL in two processes{' (--quick)' if args.quick else ''}; "
          f"{d.machine_load()}")
    if f["failure"]:
        print(f"  !! {f['failure']}")
    print(d.table(["webhooks", "count"], [
        ["sent", f["sent"]], ["acknowledged (200)", f["acked"]],
        [f"  per second the daemon was up ({f['up_s']:.0f} s)", f["acked"] / max(f["up_s"], 1e-9)],
        ["not acknowledged (connection lost at a kill, or not 200)", f["not_acked"]], ["journaled (this run)", f["journaled"]],
        ["lost: acknowledged, not journaled", f["lost_not_journaled"]],
        ["lost: journaled, never decided", f["lost_not_decided"]]]))
    print()
    rows = []
    for rule, k in f["effects"].items():
        rows.append([rule, k["expected"], k["delivered"], k["duplicated"], k["uncertain"], k["parked_never_sent"],
                     k["dead"], k["missing"], k["delivered_extra"],
                     ", ".join(f"{s} {n}" for s, n in sorted(k["statuses"].items()))])
    print(d.table(["effects", "expected", "delivered", "duplicated", "uncertain", "never sent", "dead", "missing",
                   "extra", "store says"], rows))
    print("  crash-now / crash-later / crash-sms: http.request (at_most_once) as the sink saw them; crash-task: Bitrix24 "
          "task.create (at_least_once) as the emulator holds them. duplicated = the same booking's request or task "
          "received more than once; never sent = parked uncertain, yet the sink/emulator never saw it; missing = "
          "expected, never delivered, not parked")
    print()
    print(d.table(["other", "value"], [
        ["timers (wait 2s runs)", f["timer_runs"]], ["timers fired twice", f["timers_fired_twice"]],
        ["timers never fired", f["timers_never_fired"]], ["timers left in the store", f["timers_left"]],
        ["integrity_check", f["integrity"]],
        ["restart to /healthz, median / max s", f"{f['restart_median_s']:.2f} / {f['restart_max_s']:.2f}"],
        ["engine outlived its daemon, max s", f["outlived_max_s"]["engine after daemon"]],
        ["daemon outlived its engine, max s", f["outlived_max_s"]["daemon after engine"]],
        [f"partner alive after {GONE_CAP_S:g} s (killed)", f["partner_stuck"] or 0],
        ["daemon ended by itself between kills", f["exited_alone"]],
        ["drain after the load, s", f["drain_s"]],
        ["pending at the end", ", ".join(f"{k} {v}" for k, v in f["pending_at_end"].items())]]))
    e = f["effects"]
    summary = {
        "crash_kills": f["kills"], "crash_acked": f["acked"],
        "crash_acked_per_up_s": round(f["acked"] / max(f["up_s"], 1e-9), 1), "crash_lost": f["lost"],
        "crash_duplicated": sum(k["duplicated"] for k in e.values()),
        "crash_duplicated_at_most_once": sum(e[r]["duplicated"] for r in HTTP_KINDS),
        "crash_duplicated_tasks": e["crash-task"]["duplicated"],
        "crash_uncertain": sum(k["uncertain"] for k in e.values()),
        "crash_parked_never_sent": sum(k["parked_never_sent"] for k in e.values()),
        "crash_missing": sum(k["missing"] for k in e.values()),
        "crash_timers_fired_twice": f["timers_fired_twice"], "crash_timers_never_fired": f["timers_never_fired"],
        "crash_integrity_ok": f["integrity"] == "ok",
        "crash_restart_median_s": round(f["restart_median_s"], 3), "crash_restart_max_s": round(f["restart_max_s"], 3),
    }
    print(f"  lost {summary['crash_lost']}, duplicated {summary['crash_duplicated']}, parked but never sent "
          f"{summary['crash_parked_never_sent']} (the issue's target: 0, 0 and 0)")
    print(d.json_line("crash", {**summary, "quick": args.quick, "detail": f}))
    return summary


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_KILLS} kills instead of {KILLS}")
    parser.add_argument("--kills", type=int, default=None, help=f"how many SIGKILLs (default {KILLS})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"webhooks per second (default {RATE})")
    parser.add_argument("--seed", type=int, default=None, help="the random kill moments' seed (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the project, database and log; print where")
    args = parser.parse_args(argv if argv is not None else [])
    kills = args.kills if args.kills is not None else (QUICK_KILLS if args.quick else KILLS)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    work = Path(tempfile.mkdtemp(prefix="automator-bench-crash-"))
    try:
        figures = run(max(1, kills), args.rate, seed, work)
    finally:
        if args.keep:
            print(f"kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures["seed"] = seed
    summary = report(figures, args)
    return {k: float(v) for k, v in summary.items()}


if __name__ == "__main__":
    main(sys.argv[1:])
