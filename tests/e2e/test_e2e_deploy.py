"""Deploying for real (README "Deploying"): one daemon per database, `automator backup` of a live database and its
restore, nginx with TLS in front of the daemon, and the command lines of deploy/automator.service and
deploy/Dockerfile run as they are written (install paths aside)."""
from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e_support import (CONFIG, REPO, TOKEN, Daemon, Project, booking_event, cli, daemon_env, free_port, query,
                         wait_for, write_project)

DEPLOY = REPO / "deploy"
AUTOMATOR = Path(sys.executable).parent / "automator"  # the console script of the environment under test


# ---- one daemon per database ----------------------------------------------------------------------------

def run_second(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "automator", "run", "--config", str(project.config), "--host",
                           "127.0.0.1", "--port", str(free_port()), *args], cwd=project.root, env=daemon_env(),
                          capture_output=True, text=True, timeout=30)


def test_a_second_daemon_on_the_same_database_is_refused_and_operators_still_work(project: Project,
                                                                                  start_daemon) -> None:
    first = start_daemon(project)
    assert first.post("booking", booking_event("1", "confirmed", delivery="d1")).status == 200

    second = run_second(project)
    assert second.returncode == 1, second.stdout + second.stderr
    said = second.stderr.strip().splitlines()
    assert len(said) == 1 and str(project.db.resolve()) in said[0] and f"pid {first.proc.pid}" in said[0], said
    assert second.stdout == ""  # refused before anything started: no log line at all
    alias = project.root / "alias.db"  # another path to the same file is the same database
    alias.symlink_to(project.db)
    assert "another daemon" in run_second(project, "--db", str(alias)).stderr
    assert first.alive and first.health()["status"] == "ok"

    # Operator commands never take the daemon's claim: they work while it is held.
    assert "running" in first.cli("status").stdout
    for command in ("runs", "dead"):
        assert first.cli(command).returncode == 0

    # The kernel frees the claim of a daemon that dies however it dies: a killed one leaves nothing stale.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    restarted = start_daemon(project, log_name="restarted.log")
    assert restarted.health()["status"] == "ok"
    assert restarted.terminate() == 0
    again = start_daemon(project, log_name="again.log")  # and a clean stop gives it back too
    assert again.health()["status"] == "ok"


# ---- backup and restore ---------------------------------------------------------------------------------

class Sender:
    """Webhooks sent one after another from two threads until stopped; each acknowledged delivery id with when
    its 200 came back."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.acked: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(n,), daemon=True) for n in range(2)]

    def __enter__(self) -> Sender:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _send(self, lane: int) -> None:
        n = 0
        while not self.stop.is_set():
            delivery = f"load-{lane}-{n}"
            answer = self.daemon.post("booking", booking_event(f"{lane}{n}", "confirmed", delivery=delivery))
            with self.lock:
                if answer.status == 200:
                    self.acked.append((time.monotonic(), delivery))
                else:
                    self.failures.append(f"{delivery}: {answer.status} {answer.body}")
            n += 1

    def acked_before(self, moment: float) -> set[str]:
        with self.lock:
            return {d for at, d in self.acked if at < moment}


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_backup_of_a_live_database_is_consistent_and_restores(project: Project, start_daemon,
                                                             tmp_path: Path) -> None:
    daemon = start_daemon(project)
    copy = tmp_path / "backups" / "automator-copy.db"
    copy.parent.mkdir()
    with Sender(daemon) as sender:
        wait_for(lambda: len(sender.acked) >= 100, 60, "100 webhooks acknowledged")
        started = time.monotonic()
        done = cli(project, "backup", str(copy))
        wait_for(lambda: sender.acked and sender.acked[-1][0] > time.monotonic() - 0.5, 10,
                 "webhooks still acknowledged after the backup")
    assert not sender.failures, sender.failures[:5]
    assert done.stdout.split()[:2] == [str(copy), str(copy.stat().st_size)], done.stdout
    assert copy.stat().st_mode & 0o077 == 0  # the clients' personal data: the owner's only

    assert integrity(copy) == "ok"
    in_copy = {d for (d,) in query(copy, "select delivery_id from journal where source = 'booking'")}
    before = sender.acked_before(started)
    assert before and before <= in_copy, f"{len(before - in_copy)} acknowledged events missing from the copy"
    assert len(in_copy) < len(sender.acked)  # a snapshot, taken while webhooks went on coming in

    # An existing file is kept unless --force.
    refused = cli(project, "backup", str(copy), check=False)
    assert refused.returncode == 1 and "exists" in refused.stderr and "--force" in refused.stderr
    assert integrity(copy) == "ok"
    # Neither SQLite's write lock nor the daemon's turn at it (`<db>-lock`) is needed: both held here meanwhile.
    with open(f"{project.db}-lock", "rb") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        writer = sqlite3.connect(project.db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        try:
            assert cli(project, "backup", str(copy), "--force").returncode == 0
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    missing = cli(project, "backup", str(tmp_path / "no-such-folder" / "x.db"), check=False)
    assert missing.returncode == 1 and "no-such-folder" in missing.stderr and "Traceback" not in missing.stderr

    # The restore steps of the README: stop the daemon, put the copy in place, remove -wal and -shm, start.
    assert daemon.terminate() == 0
    restored_from = {d for (d,) in query(copy, "select delivery_id from journal where source = 'booking'")}
    shutil.copyfile(copy, project.db)
    for suffix in ("-wal", "-shm"):
        Path(f"{project.db}{suffix}").unlink(missing_ok=True)
    restarted = start_daemon(project, log_name="restored.log")
    assert integrity(project.db) == "ok"
    assert {d for (d,) in restarted.query("select delivery_id from journal where source = 'booking'")} \
        == restored_from
    assert restarted.post("booking", booking_event("9", "confirmed", delivery="after-restore")).status == 200
    assert "running" in restarted.cli("status").stdout


def test_backup_without_a_database_says_so(project: Project, tmp_path: Path) -> None:
    done = cli(project, "backup", str(tmp_path / "copy.db"), check=False)
    assert done.returncode == 1 and "no database at" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "copy.db").exists()


# ---- the unit's and the image's command lines -----------------------------------------------------------

def serve(command: list[str], port: int, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=daemon_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_for(healthy, 20, f"{shlex.join(command)} healthy")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def unit_command(project: Project, port: int) -> list[str]:
    import configparser

    unit = configparser.RawConfigParser(interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "automator.service")
    command = shlex.split(unit["Service"]["ExecStart"])
    swap = {"/opt/automator/.venv/bin/automator": str(AUTOMATOR), "/opt/automator/automator.yaml": str(project.config),
            "8080": str(port)}
    assert set(swap) <= set(command), command
    return [swap.get(word, word) for word in command]


def image_command(project: Project, port: int, db: Path) -> tuple[list[str], list[str]]:
    """The image's ENTRYPOINT + CMD and its HEALTHCHECK command, with the container's paths and port swapped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    found = {m.group(1): m.group(2) for m in re.finditer(r"^(ENTRYPOINT|CMD|HEALTHCHECK) (.*)$", text, re.M)}
    health = yaml.safe_load(found["HEALTHCHECK"].split(" CMD ", 1)[1])
    command = yaml.safe_load(found["ENTRYPOINT"]) + yaml.safe_load(found["CMD"])
    swap = {"automator": str(AUTOMATOR), "/srv/automator/automator.yaml": str(project.config),
            "/var/lib/automator/automator.db": str(db), "0.0.0.0": "127.0.0.1", "8080": str(port)}
    assert set(swap) <= set(command), command
    health = [sys.executable if word == "python" else word.replace(":8080/", f":{port}/") for word in health]
    return [swap.get(word, word) for word in command], health


def test_the_units_command_line_runs_the_daemon(project: Project, tmp_path: Path) -> None:
    port = free_port()
    proc = serve(unit_command(project, port), port, project.root, tmp_path / "unit.log")
    assert stop(proc) == 0
    records = [json.loads(line) for line in (tmp_path / "unit.log").read_text().splitlines() if line.startswith("{")]
    assert records and records[-1]["msg"] == "stopped cleanly"  # --log-format json: one object a line


def test_the_images_command_line_runs_the_daemon_and_its_healthcheck_tells(project: Project,
                                                                            tmp_path: Path) -> None:
    port = free_port()
    volume = tmp_path / "volume"
    volume.mkdir()
    command, health = image_command(project, port, volume / "automator.db")
    proc = serve(command, port, project.root, tmp_path / "image.log")
    try:
        assert subprocess.run(health, timeout=30).returncode == 0
        assert (volume / "automator.db").exists() and not project.db.exists()
    finally:
        assert stop(proc) == 0
    assert subprocess.run(health, capture_output=True, timeout=30).returncode != 0


# ---- nginx in front -------------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs nginx-light)")


def site_for_test(root: Path, listen: int, upstream: int) -> Path:
    """deploy/nginx/automator.conf with its address, certificate and log paths pointed at the test's, inside a
    minimal nginx.conf (as Debian's includes sites-enabled/ inside `http {}`)."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(root / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    site = (DEPLOY / "nginx" / "automator.conf").read_text()
    swaps = [("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};"),
             ("listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;"), ("listen [::]:443 ssl;", ""),
             ("/etc/letsencrypt/live/automator.example.com/fullchain.pem", str(root / "cert.pem")),
             ("/etc/letsencrypt/live/automator.example.com/privkey.pem", str(root / "key.pem")),
             ("/var/log/nginx/automator.access.log", str(root / "access.log"))]
    for old, new in swaps:
        assert old in site, f"deploy/nginx/automator.conf no longer has {old!r}"
        site = site.replace(old, new)
    (root / "site.conf").write_text(site)
    temp = "\n".join(f"    {kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                             "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(f"""\
{"user root root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
{temp}
    access_log off;
    include {root / "site.conf"};
}}
""")
    return conf


@pytest.fixture
def nginx_in_front(tmp_path: Path, start_daemon) -> Iterator[tuple[Daemon, int, ssl.SSLContext, Path]]:
    # The daemon with its default daemon.max_body, which the site matches.
    project = write_project(tmp_path / "project", free_port(), config=CONFIG.replace("  max_body: 4096\n", ""))
    daemon = start_daemon(project)
    root = tmp_path / "nginx"
    root.mkdir()
    listen = free_port()
    conf = site_for_test(root, listen, daemon.port)
    checked = subprocess.run([str(NGINX), "-t", "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([str(NGINX), "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf), "-g",
                             "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        context = ssl.create_default_context(cafile=str(root / "ca.pem"))

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited {proc.returncode}:\n{(root / 'error.log').read_text()}")
            try:
                https(listen, context, "GET", "/healthz")
                return True
            except OSError:
                return False

        wait_for(up, 15, "nginx serving")
        yield daemon, listen, context, root
    finally:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def https(port: int, context: ssl.SSLContext, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read(), {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()


@needs_nginx
def test_nginx_in_front_passes_webhooks_over_tls_and_nothing_else(nginx_in_front) -> None:
    from automator.daemon.options import MAX_BODY

    daemon, port, context, root = nginx_in_front
    body = json.dumps(booking_event("1001", "confirmed", delivery="via-nginx")).encode()
    status, answer, _ = https(port, context, "POST", f"/hooks/booking?token={TOKEN}", body,
                              {"Content-Type": "application/json"})
    assert status == 200 and json.loads(answer) == {"accepted": 1, "duplicates": 0}, answer
    assert daemon.query("select count(*) from journal where delivery_id = 'via-nginx'") == [(1,)]
    status, answer, _ = https(port, context, "GET", "/healthz")
    assert status == 200 and json.loads(answer)["status"] == "ok"

    # A wrong token is the daemon's 401, passed back as it is.
    status, answer, _ = https(port, context, "POST", "/hooks/booking?token=wrong", body,
                              {"Content-Type": "application/json"})
    assert status == 401, answer

    # What is not for the outside world is not reachable through it, though the daemon serves it on loopback.
    assert daemon.get("/metrics").status == 200
    for path in ("/metrics", "/_sandbox/crm/_emulator/state", "/", "/hooksx"):
        assert https(port, context, "GET", path)[0] == 404, path

    # A body over the daemon's max_body is refused by nginx already (its own HTML page, not the daemon's JSON).
    status, answer, _ = https(port, context, "POST", f"/hooks/booking?token={TOKEN}", b"x" * (MAX_BODY + 1),
                              {"Content-Type": "application/json"})
    assert status == 413 and b"nginx" in answer, answer[:200]
    status, answer, _ = https(port, context, "POST", f"/hooks/booking?token={TOKEN}",
                              json.dumps(booking_event("1002", "confirmed", delivery="at-the-limit")).encode()
                              .ljust(MAX_BODY, b" "), {"Content-Type": "application/json"})
    assert status == 200, answer  # exactly max_body: taken by both

    # The secret in the query string never reaches nginx's access log.
    logged = (root / "access.log").read_text()
    assert "/hooks/booking" in logged and TOKEN not in logged and "token=" not in logged
