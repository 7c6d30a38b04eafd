"""The deployment files in deploy/ say what the README's "Deploying" section promises, and their tools accept them.

systemd-analyze is run when it is installed; the promised settings are read from the files in every case. What
needs a running daemon or nginx (the unit's and the image's command lines, `nginx -t`, nginx in front with TLS) is
in tests/e2e/test_e2e_deploy.py.
"""
from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from automator.daemon.options import MAX_BODY
from automator.daemon.process import OUTBOX_DEADLINE

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PREFIX = "/opt/automator"  # where the unit expects the checkout
STATE = "/var/lib/automator"


def read_unit() -> configparser.RawConfigParser:
    unit = configparser.RawConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(DEPLOY / "automator.service")
    return unit


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stop_deadline() -> float:
    """The longest clean stop: the calls in flight may take the outbox's deadline, then are settled."""
    return OUTBOX_DEADLINE + 5


# ---- systemd --------------------------------------------------------------------------------------------

def test_the_unit_restarts_on_failure_reads_secrets_from_a_file_and_waits_for_a_clean_stop() -> None:
    service = read_unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert int(read_unit()["Unit"]["StartLimitBurst"]) > 1  # retried, but not for ever
    assert service["StandardError"] == "journal"  # journald keeps and rotates the log
    assert service["EnvironmentFile"] == "/etc/automator/env"
    assert float(service["TimeoutStopSec"]) >= stop_deadline()
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert service["User"] == "automator" and service["Group"] == "automator"
    command = shlex.split(service["ExecStart"])
    assert command[:2] == [f"{PREFIX}/.venv/bin/automator", "run"]
    assert command[command.index("--host") + 1] == "127.0.0.1"  # TLS is nginx's, in front


def test_the_unit_can_write_only_the_database_folder() -> None:
    service = read_unit()["Service"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == STATE and service["StateDirectory"] == Path(STATE).name
    assert service["CapabilityBoundingSet"] == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd); the unit's keys are "
                           "still checked by the tests above")
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: the checkout under test stands in for /opt/automator.
    assert (REPO / ".venv" / "bin" / "automator").exists(), "run `make install` first"
    unit = tmp_path / "automator.service"
    unit.write_text((DEPLOY / "automator.service").read_text().replace(PREFIX, str(REPO)))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)
    # Unknown keys and bad values are only warnings (exit 0): any line about the unit is a failure.
    assert done.returncode == 0 and str(unit) not in done.stderr + done.stdout, done.stderr + done.stdout


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "automator.service"
    text = (DEPLOY / "automator.service").read_text().replace(PREFIX, str(REPO))
    unit.write_text(text.replace("TimeoutStopSec=45", "TimeoutStopSec=45x"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert "TimeoutStopSec" in done.stderr or "45x" in done.stderr, done.stderr


# ---- the container --------------------------------------------------------------------------------------

def test_the_image_runs_the_daemon_as_its_own_user_with_the_database_on_a_volume() -> None:
    steps = dockerfile()
    words = [word for word, _ in steps]
    args = dict(steps)  # the last of each instruction
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert args["USER"] not in ("root", "0") and words.index("USER") > words.index("RUN")
    assert STATE in args["VOLUME"]
    assert args["STOPSIGNAL"] == "SIGTERM"
    assert "/healthz" in args["HEALTHCHECK"]
    command = yaml.safe_load(args["ENTRYPOINT"]) + yaml.safe_load(args["CMD"])  # JSON (exec) form
    assert command[:2] == ["automator", "run"]
    assert command[command.index("--db") + 1].startswith(STATE + "/")
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] in args["EXPOSE"].split()


def test_compose_gives_the_daemon_time_to_stop_and_keeps_the_database() -> None:
    service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["automator"]
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert grace and int(grace.group(1)) >= stop_deadline()
    assert f"{grace.group(1)}" in (DEPLOY / "Dockerfile").read_text()  # the `docker run --stop-timeout` hint
    assert any(v.endswith(":" + STATE) for v in service["volumes"])
    assert service["env_file"] == "/etc/automator/env"
    assert service["init"] is True and service["restart"] == "unless-stopped"
    assert service["logging"]["options"]["max-size"]  # docker's log driver rotates
    assert service["ports"] == ["127.0.0.1:8080:8080"]


def test_the_image_leaves_local_state_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "*.db", "*.db-*", ".git"} <= set(ignored)


# ---- nginx ----------------------------------------------------------------------------------------------

def nginx_site() -> str:
    return (DEPLOY / "nginx" / "automator.conf").read_text()


def test_nginx_takes_the_bodies_the_daemon_takes_and_exposes_only_hooks_and_health() -> None:
    site = nginx_site()
    assert re.search(rf"client_max_body_size {MAX_BODY};", site)
    locations = re.findall(r"location\s+([^{]+?)\s*\{", site)
    assert locations == ["/hooks/", "= /healthz", "/"]
    catch_all = site[site.index("location / {"):]
    assert "return 404;" in catch_all.split("}")[0]
    for timeout in ("client_header_timeout", "client_body_timeout", "proxy_read_timeout", "proxy_connect_timeout"):
        assert re.search(rf"{timeout} \d+s;", site), timeout
    # The access log format names $uri, never $request or $args: the query string carries secrets.
    log_format = site[site.index("log_format"):site.index(";", site.index("log_format"))]
    assert "$uri" in log_format and "$request " not in log_format and "$args" not in log_format

