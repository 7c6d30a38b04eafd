"""The loader reads regular files inside the project only: a FIFO or a symlink out is refused by name, never read,
never shown; a reload is never wedged by one, and SIGTERM still ends the daemon at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from e2e_support import Project, booking_event, daemon_env, wait_for

CANARY = "CANARY-outside-secret-7f3a"
# YAML that parses, so that a loader that followed the symlink would show it in a schema error.
OUTSIDE = f"rules: {CANARY}\n"

EXTRA_RULE = """\
rules:
  - id: extra-notify
    when: {changed: booking.status, to: cancelled}
    do:
      - notify: {to: admin, text: "Отмена {{ booking.id }}"}
        via: sms
"""


def validate(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """`automator validate` in a subprocess: a loader that blocks fails the test by its timeout."""
    return subprocess.run([sys.executable, "-m", "automator", "validate", *args], cwd=project.root, env=daemon_env(),
                          capture_output=True, text=True, timeout=30)


def outside_file(project: Project) -> Path:
    path = project.root.parent / "outside.yaml"
    path.write_text(OUTSIDE)
    return path


def test_validate_names_a_fifo_and_returns(project: Project) -> None:
    os.mkfifo(project.root / "rules" / "fifo.yaml")
    for args in ((), ("rules",), ("rules/fifo.yaml",)):
        result = validate(project, *args)
        assert result.returncode == 1, result
        assert "rules/fifo.yaml:1:1: error: not a regular file (a FIFO)" in result.stdout, result.stdout


def test_validate_refuses_a_symlink_out_without_reading_it(project: Project) -> None:
    (project.root / "rules" / "leak.yaml").symlink_to(outside_file(project))
    result = validate(project)
    assert result.returncode == 1
    assert "rules/leak.yaml:1:1: error: a symlink leading outside the project folder" in result.stdout, result.stdout
    assert CANARY not in result.stdout + result.stderr
    # Named on the command line, it is refused the same way, under the name it was given.
    result = validate(project, "rules/leak.yaml")
    assert result.returncode == 1 and "rules/leak.yaml:1:1: error: a symlink leading outside" in result.stdout
    assert CANARY not in result.stdout + result.stderr


def test_symlinks_inside_the_project_are_read_and_symlinked_folders_are_named(project: Project) -> None:
    shared = project.root / "shared"
    shared.mkdir()
    (shared / "extra.yaml").write_text(EXTRA_RULE)
    (project.root / "rules" / "extra.yaml").symlink_to(Path("..") / "shared" / "extra.yaml")
    result = validate(project)
    assert result.returncode == 0 and result.stdout.startswith("ok: 5 rules"), result.stdout + result.stderr

    # A symlinked folder is not walked, wherever it leads (no loops, no trees from elsewhere): it is named.
    (project.root / "rules" / "more").symlink_to(Path("..") / "shared")
    (project.root / "rules" / "loop").symlink_to(Path("."))
    result = validate(project)
    assert result.returncode == 1
    assert "rules/more:1:1: error: a symlink to a folder" in result.stdout, result.stdout
    assert "rules/loop:1:1: error: a symlink to a folder" in result.stdout, result.stdout


def test_automator_test_refuses_a_fifo_and_a_symlink_out(project: Project) -> None:
    tests = project.root / "tests"
    tests.mkdir()
    os.mkfifo(tests / "pipe.test.yaml")
    (tests / "leak.test.yaml").symlink_to(outside_file(project))
    (tests / "up").symlink_to(Path(".."))  # a loop, if symlinked folders were walked
    result = subprocess.run([sys.executable, "-m", "automator", "test", "tests"], cwd=project.root, env=daemon_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "not a regular file (a FIFO)" in result.stdout and "a symlink leading outside" in result.stdout
    assert "tests/up" not in result.stdout
    assert CANARY not in result.stdout + result.stderr


def status(daemon) -> dict:
    return json.loads(daemon.cli("status", "--format", "json").stdout)


def failed_reloads(daemon) -> float:
    return daemon.metrics().get(("automator_reloads_total", frozenset({("result", "failed")})), 0.0)


def test_a_fifo_and_a_symlink_out_never_wedge_or_leak_through_the_daemon(project: Project, start_daemon) -> None:
    daemon = start_daemon(project)
    assert daemon.health()["rules"] == 4
    # The engine process loads the rules itself when it starts: a decided event shows it has.
    assert daemon.post("booking", booking_event("5001", "no_show", delivery="d-5001")).status == 200
    wait_for(lambda: daemon.query("select count(*) from local_messages")[0][0], 15, "the engine process deciding")
    fifo = project.root / "rules" / "fifo.yaml"
    os.mkfifo(fifo)
    errors = wait_for(lambda: status(daemon)["daemon"]["load_errors"], 15, "the FIFO reported")
    assert any(e.startswith("rules/fifo.yaml:1:1: error: not a regular file (a FIFO)") for e in errors), errors

    # Not wedged: the next change is loaded (and refused again while the FIFO is there, naming it again).
    before = failed_reloads(daemon)
    project.write_rules("extra.yaml", EXTRA_RULE)
    wait_for(lambda: failed_reloads(daemon) > before, 15, "a second reload")
    fifo.unlink()
    project.write_rules("extra.yaml", EXTRA_RULE.replace("Отмена", "Отмена брони"))
    wait_for(lambda: daemon.health()["rules"] == 5, 15, "the new rule loaded")
    assert status(daemon)["daemon"]["load_errors"] == []

    (project.root / "rules" / "leak.yaml").symlink_to(outside_file(project))
    errors = wait_for(lambda: status(daemon)["daemon"]["load_errors"], 15, "the symlink reported")
    assert any(e.startswith("rules/leak.yaml:1:1: error: a symlink leading outside the project folder")
               for e in errors), errors
    assert CANARY not in daemon.cli("status").stdout + json.dumps(status(daemon))
    assert daemon.health()["rules"] == 5  # the running rules stay in place
    # A symlinked folder that loops is reported, not walked (by the loader or the watcher).
    (project.root / "rules" / "loop").symlink_to(Path("."))
    wait_for(lambda: any(e.startswith("rules/loop:1:1: error: a symlink to a folder")
                         for e in status(daemon)["daemon"]["load_errors"]), 15, "the looping folder reported")

    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0, daemon.log()[-3000:]
    assert "stopped cleanly" in daemon.log()
    assert CANARY not in daemon.log()


def test_the_daemon_does_not_start_on_a_fifo(project: Project) -> None:
    os.mkfifo(project.root / "rules" / "fifo.yaml")
    result = subprocess.run([sys.executable, "-m", "automator", "run", "--config", str(project.config), "--port", "0"],
                            cwd=project.root, env=daemon_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "rules/fifo.yaml:1:1: error: not a regular file (a FIFO)" in result.stdout + result.stderr

