"""What the daemon benchmarks share: a generated project, `automator run` as a subprocess, a loopback emulator
of the outside HTTP system, /proc figures and percentiles. Everything listens on 127.0.0.1 only."""
from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loadgen import TOKEN_ENV  # noqa: E402 - sets the webhook token in this environment, which daemons inherit
from _project import declared, write_project  # noqa: E402
from http_client import RESPONSE, _content_length  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
AUTOMATOR = BIN / "automator"
EMULATOR_LIFETIME_S = 300.0  # the emulator stops by itself even if the bench is killed

CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {{hours: "09:00-21:00", days: mon-sat}}
settings: {{review_url: "https://example.com/review"}}
connectors:
  booking: {{type: local}}
  sms: {{type: local}}
  out: {{type: http, allow: ["127.0.0.1:{port}"]}}
  crm:
    type: local
    secret: "${{env:{token_env}}}"
"""

# The rules the benchmark event (`booking.updated {status: arrived}` of a new booking) reaches: one performs
# the HTTP call, the others are routed to it and evaluate a condition that does not hold.
BENCH_RULES = """\
rules:
  - id: bench-visit-to-crm
    when: {{changed: booking.status, to: arrived}}
    do:
      - http.request: {{method: POST, url: "http://127.0.0.1:{port}/visits", json: {{booking: "{{{{ booking.id }}}}", status: "{{{{ booking.status }}}}"}}}}
        via: out
  - id: bench-vip-arrived
    when: {{changed: booking.status, to: arrived}}
    if: "get(booking, 'vip', false)"
    do:
      - notify: {{to: admin, text: "VIP {{{{ booking.id }}}}"}}
  - id: bench-arrived-late
    when: {{event: booking.updated, where: "get(event, 'late', false)"}}
    do:
      - notify: {{to: admin, text: "late {{{{ booking.id }}}}"}}
"""
MATCHING = 3  # rules of BENCH_RULES the benchmark event reaches (one of them acts)


def write_daemon_project(root: Path, rules: int, *, emulator_port: int) -> Path:
    """A project of `rules` rules: generated ones that cannot match the benchmark event (every trigger kind,
    see _project.py), plus BENCH_RULES. Returns automator.yaml."""
    write_project(root, rules - MATCHING, matching=0)
    # The generated rules' own events, as write_project declares them, under this project's crm connector.
    (root / "automator.yaml").write_text(CONFIG.format(port=emulator_port, token_env=TOKEN_ENV)
                                         + declared(rules - MATCHING))
    (root / "rules" / "bench.yaml").write_text(BENCH_RULES.format(port=emulator_port))
    return root / "automator.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the daemon ------------------------------------------------------------------------------------------------

def daemon_command(config: Path, port: int, *, synchronous: str = "FULL") -> list[str]:
    """`automator run` as an operator types it."""
    cmd = [str(AUTOMATOR), "run", "--config", str(config), "--port", str(port), "--no-reload",
           "--log-level", "WARNING"]
    if synchronous != "FULL":
        cmd += ["--synchronous", synchronous]
    return cmd


def start(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=str(log.parent))
    finally:
        out.close()


def get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """One GET over a fresh connection (the health probe an operator's script would do)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0, poll: float = 0.005) -> float:
    """Poll /healthz until it answers 200; the monotonic moment it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} before answering /healthz")
        try:
            status, _ = get(port, "/healthz", timeout=0.5)
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(poll)
    raise RuntimeError(f"/healthz did not answer 200 within {timeout:g} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM (a graceful stop), then SIGKILL if it does not end in time. The exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@contextlib.contextmanager
def running(cmd: Sequence[str], port: int, log: Path, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    proc = start(cmd, log, env)
    try:
        wait_healthy(port, proc)
        yield proc
    finally:
        stop(proc)


def family(pid: int) -> list[int]:
    """A process and its children (the daemon and its engine process): they are measured together."""
    pids = [pid]
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError), open(task) as f:
            pids.extend(int(child) for child in f.read().split())
    return pids


def lock_seconds(port: int) -> dict[tuple[str, str], float]:
    """The daemon's `automator_store_write_lock_seconds_total` from /metrics: {(process, state): seconds}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = get(port, "/metrics", timeout=5.0)
    if status != 200:
        return {}
    return {(s.labels["process"], s.labels["state"]): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples
            if s.name == "automator_store_write_lock_seconds_total"}


def metric_values(port: int) -> dict[str, float]:
    """The daemon's gauges and counters from /metrics, unlabelled samples only: {name: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = get(port, "/metrics", timeout=5.0)
    if status != 200:
        return {}
    return {s.name: s.value for family in text_string_to_metric_families(body.decode())
            for s in family.samples if not s.labels}


PENDING = ("automator_journal_pending", "automator_effects_pending", "automator_timers_pending")


def drain(port: int, cap: float, names: Sequence[str] = PENDING) -> tuple[float | None, dict[str, float]]:
    """Poll /metrics until the gauges `names` (default: events, effects and timers pending) read 0 twice in a
    row; (seconds it took, the last figures), seconds None if something was still pending after `cap` s."""
    began = time.monotonic()
    figures: dict[str, float] = {}
    calm = 0
    while time.monotonic() - began < cap:
        with contextlib.suppress(OSError, ValueError):
            figures = metric_values(port)
            calm = calm + 1 if figures and all(figures.get(name, 1) == 0 for name in names) else 0
            if calm >= 2:
                return time.monotonic() - began, figures
        time.sleep(0.25)
    return None, figures


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident) of a process and its children, added up, in MB."""
    out: dict[str, float] = {"VmRSS": 0.0, "VmHWM": 0.0}
    for member in family(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in out:
                    out[name] += int(value.split()[0]) / 1024
    return out


def rss_mb(pid: int) -> float | None:
    """VmRSS of one process in MB (None if it is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def open_fds(pid: int) -> int | None:
    """How many file descriptors one process has open (None if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its children (all their threads) have used."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# --- the outside system: a keep-alive HTTP/1.1 server in its own process that counts requests ----------------

def serve_http(port_out: Any, lifetime: float, answer: Callable[[bytes, bytes], bytes]) -> None:
    """In a child process: a keep-alive HTTP/1.1 server on 127.0.0.1 (uvloop where installed) that answers each
    request with `answer(head, body)`; sends its port down `port_out` and stops after `lifetime` seconds."""
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()

    class Answering(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = bytearray()
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:  # a read may hold several requests
                head = bytes(self.buffer[:end])
                length = _content_length(head)
                if len(self.buffer) < end + 4 + length:
                    return
                body = bytes(self.buffer[end + 4:end + 4 + length])
                del self.buffer[:end + 4 + length]
                assert self.transport is not None
                self.transport.write(answer(head, body))

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Answering, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        port_out.close()
        await asyncio.sleep(lifetime)

    asyncio.run(main())


def _emulate(port_out: Any, served: Any, lifetime: float) -> None:
    def count(head: bytes, body: bytes) -> bytes:
        served.value += 1  # one writer: this process
        return RESPONSE

    serve_http(port_out, lifetime, count)


class Emulator:
    """The CRM the `http` connector calls: answers 200 JSON to everything; `served` counts the requests."""

    def __init__(self, lifetime: float = EMULATOR_LIFETIME_S) -> None:
        ctx: Any = multiprocessing.get_context("fork")
        self.served = ctx.Value("q", 0, lock=False)
        parent, child = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_emulate, args=(child, self.served, lifetime), daemon=True)
        self.process.start()
        if not parent.poll(10):
            self.process.kill()
            raise RuntimeError("the emulator did not start")
        self.port: int = parent.recv()

    @property
    def count(self) -> int:
        return int(self.served.value)

    def close(self) -> None:
        self.process.kill()
        self.process.join(5)


# --- figures ---------------------------------------------------------------------------------------------------

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest rank; NaN for none."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[index]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A compact text table; numbers right-aligned."""
    cells = [[h for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return "-" if value is None else str(value)


def json_line(name: str, figures: dict[str, Any]) -> str:
    return json.dumps({"bench": name, **figures}, ensure_ascii=False, default=str)


# --- a store with many pending timers ---------------------------------------------------------------------------

def held_rules(count: int) -> list[tuple[str, str]]:
    """(rule id, booking field) of the `held` rules write_project generates among `count` rules."""
    from _project import TEMPLATES

    return [(f"r{i}-held", f"field_{i}") for i in range(count) if i % len(TEMPLATES) == 2]


def fill_timers(db: Path, rules: list[tuple[str, str]], total: int, due: Callable[[], Sequence[float]], *,
                far_from: float, far_span: float = 180 * 86400) -> float:
    """Put `total` pending `held` timers into a new store at `db`, in bulk. The far ones (due between `far_from`
    and `far_from + far_span` epoch seconds) go in first; then `due()` is called for the epoch seconds of the
    ones that will come due, which go in with their bookings stored holding the value (so each fires its rule).
    Timer ids and payloads are the engine's own (see core/decide.py held_timer). Returns the seconds taken."""
    import random
    import sqlite3
    from datetime import datetime, timezone

    from automator.store.sqlite import SqliteStore

    started = time.perf_counter()
    SqliteStore(db).close()  # the schema and indexes, as the daemon makes them
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-200000")
    since = datetime.now(timezone.utc).isoformat()
    payload = json.dumps({"since": since})
    rng = random.Random(7)
    insert = "insert into timers (id, due_at, kind, rule_id, key, run_id, payload) values (?, ?, ?, ?, ?, ?, ?)"

    def stamp(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="microseconds")

    def row(n: int, at: float) -> tuple[Any, ...]:
        rule_id, _ = rules[n % len(rules)]
        return (f"held/{rule_id}/booking:{n}", stamp(at), "held", rule_id, f"booking:{n}", None, payload)

    conn.execute("BEGIN")
    conn.executemany(insert, (row(n, far_from + far_span * rng.random()) for n in range(1_000_000_000, 1_000_000_000 + total)))
    conn.execute("COMMIT")
    soon = list(due())
    conn.execute("BEGIN")
    conn.execute("delete from timers where rowid in (select rowid from timers order by rowid limit ?)", [len(soon)])
    conn.executemany(insert, (row(n, at) for n, at in enumerate(soon)))
    conn.executemany(
        "insert into entities (kind, id, fields, prev, updated_at) values ('booking', ?, ?, 'null', ?)",
        ((str(n), json.dumps({rules[n % len(rules)][1]: "waiting", "client": n % 500}), since)
         for n in range(len(soon))))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def machine_load() -> str:
    """The 1-minute load average, for judging how noisy a run was (2 cores shared with other work)."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
