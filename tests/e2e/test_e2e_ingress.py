"""The daemon's door, over real HTTP to `automator run`: a body JSON text cannot carry fails no neighbour, slow
senders are let go while others are served, a taken port ends the daemon at once, and the engine process never
outlives a daemon killed while starting it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (CONFIG, TOKEN, Daemon, FakeServer, Response, booking_event, daemon_env, query,
                         wait_for, write_project)

from automator_connectors.amocrm import SANDBOX_HOOK_SECRET
from automator_connectors.telegram import SANDBOX_SECRET
from automator_connectors.yclients import SANDBOX as YCLIENTS_SANDBOX

# Beside the e2e project's connectors: YCLIENTS (whose report this was), Telegram, amoCRM and Bitrix24.
CONNECTORS = """\
  yc: {{type: yclients, company_id: 777, partner_token: "${{env:YC_PARTNER}}", user_token: "${{env:YC_USER}}",
       hook_secret: "${{env:YC_HOOK}}", poll_every: "off"}}
  tg: {{type: telegram, token: "${{env:TG_TOKEN}}", secret_token: "${{env:TG_SECRET}}"}}
  amo: {{type: amocrm, subdomain: clinic, token: "${{env:AMO_TOKEN}}", hook_secret: "${{env:AMO_HOOK}}",
        poll_every: "off"}}
  b24: {{type: bitrix24, webhook_url: "${{env:B24_URL}}", application_token: "${{env:B24_TOKEN}}", poll_every: "off"}}
"""
YC_HOOK = "yc-hook-secret"
ENV = {"YC_PARTNER": "p", "YC_USER": "u", "YC_HOOK": YC_HOOK, "TG_TOKEN": "1:t", "TG_SECRET": "tg-secret",
       "AMO_TOKEN": "a", "AMO_HOOK": "amo-hook", "B24_URL": "http://127.0.0.1:9/rest/1/x/", "B24_TOKEN": "b24"}
LONE = b"\\ud800"  # half of a UTF-16 pair, as JSON writes it: Python's json reads it, no UTF-8 text holds it


def _project(root: Path, fake_port: int, config: str = CONFIG) -> Any:
    return write_project(root, fake_port, config=config.replace("connectors:\n", "connectors:\n" + CONNECTORS))


def _record(record_id: int, comment: bytes) -> bytes:
    """A YCLIENTS record webhook whose comment is `comment`, a JSON value written as it is."""
    return (b'{"company_id": 777, "resource": "record", "resource_id": %d, "status": "update", "data": {"id": %d, '
            b'"company_id": 777, "date": "2026-03-02 15:00:00", "last_change_date": "2026-03-01T09:00:00+0300", '
            b'"attendance": 0, "comment": %s}}' % (record_id, record_id, comment))


def _post(daemon: Daemon, path: str, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return daemon.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})


def _server_errors(daemon: Daemon) -> float:
    return sum(value for (name, _), value in daemon.metrics().items() if name == "automator_http_server_errors_total")


# ---- a body JSON cannot carry -----------------------------------------------------------------------------------

@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_lone_surrogate_fails_no_neighbour_and_is_stored_as_a_replacement_character(
        tmp_path: Path, fake_server: FakeServer, start_daemon: Callable[..., Daemon], processes: str) -> None:
    daemon = start_daemon(_project(tmp_path / "project", fake_server.port), env=ENV, args=("--processes", processes))
    jobs = [("bad" if n % 4 == 3 else "good", n) for n in range(80)]  # 60 good and 20 bad, mixed
    start = threading.Barrier(24)

    def send(kind: str, n: int) -> int:
        if n < 24:
            start.wait(10)  # the first 24 at the same moment, so that good and bad are committed together
        if kind == "good":
            return daemon.post("booking", booking_event(str(5000 + n), "waiting", delivery=f"good-{n}")).status
        return _post(daemon, f"/hooks/yc?token={YC_HOOK}", _record(9000 + n, b'"\\u041e\\u043a ' + LONE + b'"')).status

    with ThreadPoolExecutor(24) as pool:
        answers = [(kind, pool.submit(send, kind, n)) for kind, n in jobs]
        statuses = ([f.result() for kind, f in answers if kind == "good"],
                    [f.result() for kind, f in answers if kind == "bad"])
    assert statuses == ([200] * 60, [200] * 20)
    assert query(daemon.project.db, "select count(*) from journal where source = 'booking'")[0][0] == 60
    comments = {json.loads(body)["data"]["comment"] for (body,) in
                query(daemon.project.db, "select body from journal where source = 'yc'")}
    assert comments == {"Ок \ufffd"}  # the half character is marked, the rest kept
    assert _server_errors(daemon) == 0
    assert "lone surrogates stored as U+FFFD" in daemon.log()
    assert daemon.terminate() == 0


def test_what_json_text_cannot_carry_is_never_a_5xx_for_any_connector(
        tmp_path: Path, fake_server: FakeServer, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(_project(tmp_path / "project", fake_server.port), args=("--sandbox",))
    token = YCLIENTS_SANDBOX["hook_secret"]
    local = {"X-Automator-Token": TOKEN}
    telegram = {"X-Telegram-Bot-Api-Secret-Token": SANDBOX_SECRET}
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def update(update_id: int, text: bytes) -> bytes:
        return (b'{"update_id": %d, "message": {"message_id": 1, "date": 1767000000, "chat": {"id": 42, '
                b'"type": "private"}, "from": {"id": 42, "first_name": "Anna"}, "text": %s}}' % (update_id, text))

    def lead(name: bytes) -> bytes:
        return b"leads[status][0][id]=7&leads[status][0][status_id]=142&leads[status][0][pipeline_id]=1&" \
               b"leads[status][0][last_modified]=1767000000&leads[status][0][name]=" + name

    answers = {
        "local, lone surrogate": _post(daemon, "/hooks/booking", b'{"event": "booking.updated", "entity": {"kind": '
                                       b'"booking", "id": "1"}, "data": {"note": "' + LONE + b'"}}', local),
        "local, NaN": _post(daemon, "/hooks/booking", b'{"event": "booking.updated", "entity": {"kind": "booking", '
                            b'"id": "1"}, "data": {"amount": NaN}}', local),
        "yclients, lone surrogate": _post(daemon, f"/hooks/yc?token={token}", _record(11, b'"' + LONE + b'"')),
        "yclients, raw surrogate bytes": _post(daemon, f"/hooks/yc?token={token}", _record(12, b'"\xed\xa0\x80"')),
        "yclients, NaN": _post(daemon, f"/hooks/yc?token={token}", _record(13, b"NaN")),
        "yclients, Infinity": _post(daemon, f"/hooks/yc?token={token}", _record(14, b"-Infinity")),
        "telegram, lone surrogate": _post(daemon, "/hooks/tg", update(1, b'"' + LONE + b'"'), telegram),
        "telegram, NaN": _post(daemon, "/hooks/tg", update(2, b"NaN"), telegram),
        "amocrm, form": _post(daemon, f"/hooks/amo?token={SANDBOX_HOOK_SECRET}", lead(b"%ED%A0%80"), form),
        "amocrm, raw bytes": _post(daemon, f"/hooks/amo?token={SANDBOX_HOOK_SECRET}", lead(b"\xed\xa0\x80"), form),
        "bitrix24, form": _post(daemon, "/hooks/b24", b"event=ONCRMDEALUPDATE&data[FIELDS][ID]=99&data[FIELDS][X]="
                                b"%ED%A0%80&auth[application_token]=sandbox-application-token", form),
    }
    statuses = {case: answer.status for case, answer in answers.items()}
    assert all(status < 500 for status in statuses.values()), statuses
    # The strict readers refuse with a reason; the others store the text marked and the numbers as null.
    assert statuses["local, lone surrogate"] == statuses["local, NaN"] == 400
    assert "not JSON" in answers["local, NaN"].body["error"]
    assert {case for case, status in statuses.items() if status == 200} >= {
        "yclients, lone surrogate", "yclients, raw surrogate bytes", "yclients, NaN", "yclients, Infinity",
        "telegram, lone surrogate", "telegram, NaN", "amocrm, form", "bitrix24, form"}
    bodies = [json.loads(body) for (body,) in query(daemon.project.db, "select body from journal")]
    assert {b["data"].get("text") for b in bodies if b["source"] == "tg"} == {"\ufffd", ""}  # NaN is no text
    comments = {b["entity"]["id"]: b["data"].get("comment") for b in bodies if b["type"].startswith("booking")}
    assert comments["11"] == comments["12"] == "\ufffd" and comments["13"] is comments["14"] is None
    # A neighbour sent after them all is journaled as ever.
    assert daemon.post("booking", booking_event("7", "waiting", delivery="after")).status == 200
    assert _server_errors(daemon) == 0
    assert daemon.terminate() == 0


# ---- slow senders -----------------------------------------------------------------------------------------------

SLOW_CONFIG = CONFIG.replace("  max_body: 4096\n", "  max_body: 4096\n  header_timeout: 2s\n  body_timeout: 2s\n"
                             "  max_connections: 40\n")


def _trickle(port: int, head: bytes, stop: threading.Event, closed: list[tuple[float, bytes]],
            holding: list[bytes]) -> None:
    """A slowloris: `head` at once (then it is `holding` a connection), then a byte a second until the daemon
    closes the connection; what it heard."""
    heard = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(head)
        holding.append(head)
        sock.settimeout(1.0)
        while not stop.is_set():
            try:
                data = sock.recv(4096)
                if not data:  # closed by the daemon
                    break
                heard += data
            except TimeoutError:
                pass
            except OSError:
                break
            try:
                sock.sendall(b"x")
            except OSError:
                break
        closed.append((time.monotonic() - started, heard))


def test_slow_senders_are_let_go_while_a_webhook_is_served(
        tmp_path: Path, fake_server: FakeServer, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(write_project(tmp_path / "project", fake_server.port, config=SLOW_CONFIG))
    stop, closed = threading.Event(), list[tuple[float, bytes]]()
    heads = [b"POST /hooks/booking HTTP/1.1\r\nHost: x\r\nX-Slow: "] * 10 + \
            [b"POST /hooks/booking HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"] * 10
    holding: list[bytes] = []
    threads = [threading.Thread(target=_trickle, args=(daemon.port, head, stop, closed, holding), daemon=True)
               for head in heads]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(holding) == 20, 10, "all twenty to hold a connection, a byte a second")
        assert daemon.post("booking", booking_event("1", "waiting", delivery="served")).status == 200
        wait_for(lambda: len(closed) == 20, 15, "every slow connection to be closed by the daemon")
    finally:
        stop.set()
    # Let go after 2 s (the timeouts), not held for as long as they trickle, and told why.
    assert max(seconds for seconds, _ in closed) < 10, closed
    assert all(heard.startswith(b"HTTP/1.1 408 Request Timeout\r\n") for _, heard in closed), closed
    figures = daemon.metrics()
    timeouts = {phase: figures.get(("automator_http_timeouts_total", frozenset({("phase", phase)})), 0)
                for phase in ("headers", "body")}
    assert timeouts == {"headers": 10, "body": 10}
    assert daemon.post("booking", booking_event("2", "waiting", delivery="after")).status == 200
    assert daemon.terminate() == 0


def test_past_max_connections_a_request_gets_503_and_is_counted(
        tmp_path: Path, fake_server: FakeServer, start_daemon: Callable[..., Daemon]) -> None:
    config = CONFIG.replace("  max_body: 4096\n", "  max_body: 4096\n  max_connections: 3\n")
    daemon = start_daemon(write_project(tmp_path / "project", fake_server.port, config=config))
    held = [socket.create_connection(("127.0.0.1", daemon.port), timeout=10) for _ in range(3)]
    try:
        wait_for(lambda: daemon.post("booking", booking_event("1", "waiting", delivery="busy")).status == 503, 10,
                 "a 503 while three connections are open")
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: daemon.post("booking", booking_event("1", "waiting", delivery="free")).status == 200, 10,
             "a 200 once they closed")
    assert daemon.metrics().get(("automator_http_server_errors_total", frozenset({("status", "503")})), 0) >= 1
    assert daemon.terminate() == 0


# ---- a taken port -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_taken_port_ends_the_daemon_at_once_with_one_line(
        tmp_path: Path, fake_server: FakeServer, processes: str) -> None:
    project = write_project(tmp_path / "project", fake_server.port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "automator", "run", "--config", str(project.config),
                               "--host", "127.0.0.1", "--port", str(port), "--processes", processes],
                              cwd=project.root, env=daemon_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"cannot listen on 127.0.0.1:{port}: the port is taken" in lines[0]
    assert "serving" not in proc.stdout + proc.stderr
    assert not project.db.exists() or not query(project.db, "select 1 from meta where key = 'daemon'")


# ---- the engine process ------------------------------------------------------------------------------------------

# A subreaper stands in for systemd or a container's init: the daemon's orphans are handed to it (not to pid 1),
# and it reports how the engine process ended.
SUBREAPER = """\
import ctypes, json, os, signal, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
daemon = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
engine = None
for line in daemon.stdout:
    if b"rules are decided by process" in line:
        engine = int(json.loads(line)["msg"].rsplit(" ", 1)[1])
        daemon.kill()  # at once: the engine process is still starting
        break
daemon.wait()
signal.alarm(20)
while engine is not None:
    pid, status = os.waitpid(-1, 0)
    if pid == engine:
        print(json.dumps({"engine": pid, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}))
        break
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="death signals and subreapers are Linux's")
def test_the_engine_process_dies_with_a_daemon_killed_while_starting_it(
        tmp_path: Path, fake_server: FakeServer) -> None:
    project = write_project(tmp_path / "project", fake_server.port)
    command = [sys.executable, "-m", "automator", "run", "--config", str(project.config), "--host", "127.0.0.1",
               "--port", "0", "--log-format", "json"]
    proc = subprocess.run([sys.executable, "-c", SUBREAPER, *command], cwd=project.root, env=daemon_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stdout + proc.stderr  # else: still alive after 20 s
    ended = json.loads(proc.stdout.strip().splitlines()[-1])
    # Killed with the daemon, before it did anything, not stopped later on its own after starting its work.
    assert ended["signal"] == signal.SIGKILL, ended
