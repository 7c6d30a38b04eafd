"""End-to-end support: a small project in tmp_path, `automator run` as a real subprocess, a fake outside system.

Everything here is what a user (or the CRM sending webhooks) sees: HTTP on a port, the SQLite file, the CLI.
Nothing imports the daemon's internals.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "e2e-booking-token"
TOKEN_ENV = "E2E_BOOKING_TOKEN"
START_TIMEOUT = 15.0  # the box is a shared 2-core machine: generous bounds, fast polling


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def get_json(url: str) -> Any:
    """GET `url` and read its JSON answer (an emulator's state, the daemon's health)."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def post_json(url: str, body: Any) -> Any:
    """POST `body` as JSON to `url` (an emulator's control API) and read its JSON answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the outside system --------------------------------------------------------------------------------

@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = 0.0  # time.monotonic() when it came in

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")


class FakeServer:
    """A tiny threaded HTTP server that records every request and answers what the test says (per path)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.default: tuple[int, float | None] = (200, None)
        self.answers: dict[str, tuple[int, float | None]] = {}
        self.delays: dict[str, float] = {}  # seconds to sit on a request before answering, by path
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive races with the client

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                path = self.path.split("?", 1)[0]
                with fake.lock:
                    fake.requests.append(Recorded(self.command, path,
                                                  {k.lower(): v for k, v in self.headers.items()}, body,
                                                  time.monotonic()))
                    status, retry_after = fake.answers.get(path, fake.default)
                    delay = fake.delays.get(path, 0.0)
                if delay:
                    time.sleep(delay)  # the call is "in flight" meanwhile: a daemon killed now never hears back
                data = json.dumps({"ok": 200 <= status < 300}).encode()
                try:
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", f"{retry_after:g}")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller died mid-call (a crash test): nobody is there to hear the answer

            do_POST = do_PUT = do_GET = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def answer(self, path: str, status: int, retry_after: float | None = None) -> None:
        with self.lock:
            self.answers[path] = (status, retry_after)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str | None = None) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    def count_by_key(self) -> Counter[str | None]:
        return Counter(r.key for r in self.received())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


# ---- the project ---------------------------------------------------------------------------------------

CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {{hours: "09:00-21:00", days: mon-sat}}
default_branch: main
connectors:
  crm: {{type: local}}
  sms: {{type: local}}
  booking:
    type: local
    secret: "${{env:{token_env}}}"
    # The test's booking system sends the client's phone with each booking (a field no catalogue declares).
    events:
      booking.updated: {{entity: booking, data: {{phone: phone}}}}
      order.paid: {{data: {{sum: money}}}}
  web: {{type: http, allow: ["127.0.0.1:{fake_port}"], timeout: 5}}
store: automator.db
settings:
  hook_url: "http://127.0.0.1:{fake_port}/visits"
  orders_url: "http://127.0.0.1:{fake_port}/orders"
daemon:
  retry: {{attempts: 2, first_delay: 1s, max_delay: 2s}}
  max_body: 4096
"""

PIPELINES = """\
pipelines:
  visits:
    connector: crm
    stages:
      new: {id: "NEW"}
      done: {id: "WON", outcome: won}
"""

# The rules most tests run: a paid visit (amount over 100) that arrives gets a thank-you SMS, a deal, a call to
# the outside system and, 2 s later, a follow-up SMS; every new deal gets a task; a booking still `waiting`
# after 2 s notifies the admin; a no-show notifies too.
RULES = """\
rules:
  - id: arrived-thanks
    description: A paid visit that arrived is thanked, recorded as a deal and told to the outside system.
    when: {changed: booking.status, to: arrived}
    if: "booking.amount > 100"
    do:
      - sms.send: {to: "{{ booking.phone }}", text: "Спасибо за визит {{ booking.id }}"}
        via: sms
      - deal.create: {pipeline: visits, stage: new, title: "Визит {{ booking.id }}"}
        via: crm
      - http.request: {method: POST, url: "{{ settings.hook_url }}", json: {booking: "{{ booking.id }}"}}
        via: web
      - wait: 2s
      - sms.send: {to: "{{ booking.phone }}", text: "Как прошёл визит {{ booking.id }}?"}
        via: sms

  - id: deal-task
    description: Every new visit deal gets a task for the admin.
    when: {event: deal.created, pipeline: visits}
    do:
      - task.create: {assignee: admin, title: "Позвонить по сделке {{ deal.id }}"}
        via: crm

  - id: still-waiting
    description: A booking left waiting for 2 s pings the admin.
    when: {held: booking.status, is: waiting, for: 2s}
    do:
      - notify: {to: admin, text: "Бронь {{ booking.id }} всё ещё ждёт"}
        via: sms

  - id: no-show-notify
    description: A no-show is told to the admin.
    when: {changed: booking.status, to: no_show}
    do:
      - notify: {to: admin, text: "Неявка {{ booking.id }}"}
        via: sms
"""


@dataclass
class Project:
    root: Path
    fake_port: int

    @property
    def config(self) -> Path:
        return self.root / "automator.yaml"

    @property
    def db(self) -> Path:
        return self.root / "automator.db"

    def write_rules(self, name: str, text: str) -> Path:
        path = self.root / "rules" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written to a temporary name and renamed: the watcher sees one complete file, as an editor saves it.
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(textwrap.dedent(text))
        tmp.replace(path)
        return path


def write_project(root: Path, fake_port: int, rules: str | dict[str, str] = RULES, *,
                  config: str = CONFIG) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "automator.yaml").write_text(config.format(fake_port=fake_port, token_env=TOKEN_ENV))
    (root / "pipelines").mkdir(exist_ok=True)
    (root / "pipelines" / "visits.yaml").write_text(PIPELINES)
    project = Project(root, fake_port)
    for name, text in ({"main.yaml": rules} if isinstance(rules, str) else rules).items():
        project.write_rules(name, text)
    return project


@pytest.fixture
def project(tmp_path: Path, fake_server: FakeServer) -> Project:
    return write_project(tmp_path / "project", fake_server.port)


# ---- the daemon ----------------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AUTOMATOR_CRASH_AT"}
    env[TOKEN_ENV] = TOKEN
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Daemon:
    """One `automator run` subprocess on a project, with the calls a user or a webhook sender makes."""

    def __init__(self, project: Project, log_path: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.project = project
        self.log_path = log_path
        self.env = daemon_env(env)
        self.args = args
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    # ---- life ----
    def start(self, *, wait: bool = True) -> Daemon:
        """Start on a free port; a port taken in the meantime (other tests run on this box) is tried again."""
        for _attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                log.write(f"---- start on port {self.port} env CRASH_AT="
                          f"{self.env.get('AUTOMATOR_CRASH_AT', '')}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "automator", "run", "--config", str(self.project.config),
                     "--host", "127.0.0.1", "--port", str(self.port), "--log-format", "json", *self.args],
                    cwd=self.project.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL)
            if not wait:
                return self
            if self._wait_healthy():
                return self
            if self.proc.poll() is None:
                break  # alive but not answering: a real failure
            if "address already in use" not in self.log().lower():
                break
        raise AssertionError(f"the daemon did not become healthy:\n{self.log()[-4000:]}")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                if self.get("/healthz").status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it does not stop within `timeout`; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return int(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    # ---- HTTP ----
    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 15.0) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if hdrs.get("content-type", "").startswith("application/json") else \
                raw.decode("utf-8", "replace")
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return Response(resp.status, parsed, hdrs)

    def get(self, path: str) -> Response:
        return self.request("GET", path, timeout=5.0)

    def post(self, connector: str, payload: Any, *, token: str | None = TOKEN, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> Response:
        body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            hdrs["X-Automator-Token"] = token
        return self.request("POST", f"/hooks/{connector}", body, hdrs)

    def health(self) -> dict[str, Any]:
        return self.get("/healthz").body

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """/metrics as {(sample name, labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.get("/metrics").body
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    # ---- the CLI and the database ----
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cli(self.project, *args, check=check)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query(self.project.db, sql, args)


def cli(project: Project, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`automator ARGS --config ... --db ...` as an operator types it."""
    proc = subprocess.run([sys.executable, "-m", "automator", *args, "--config", str(project.config),
                           "--db", str(project.db)], cwd=project.root, env=daemon_env(), capture_output=True,
                          text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"automator {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's database read-only (a missing table reads as empty: the daemon has not made it yet)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


UNSETTLED = "select 1 from effects where status in ('pending', 'running', 'retry')"  # the outbox has work left


def wait_outbox_drained(db: Path, timeout: float) -> None:
    """Wait until every effect in the daemon's database is settled (done, parked or dead)."""
    wait_for(lambda: not query(db, UNSETTLED), timeout, "the outbox to drain")


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons on a project; every one still running at teardown is stopped (SIGTERM, then SIGKILL)."""
    started: list[Daemon] = []

    def start(project: Project, *, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
              wait: bool = True, log_name: str = "daemon.log") -> Daemon:
        daemon = Daemon(project, tmp_path / log_name, env=env, args=args)
        started.append(daemon)
        return daemon.start(wait=wait)

    yield start
    for daemon in started:
        if daemon.alive:
            daemon.terminate(timeout=10)


def booking_event(booking: str, status: str, *, delivery: str, amount: int = 500,
                  phone: str = "+79161234567") -> dict[str, Any]:
    return {"event": "booking.updated", "entity": {"kind": "booking", "id": booking},
            "data": {"status": status, "amount": amount, "phone": phone}, "delivery_id": delivery}
