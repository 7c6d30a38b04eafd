"""Reload: which files are the project's, and the Swapper keeping the running rules when a change is broken."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from automator.clock import FakeClock
from automator.config.load import load_project
from automator.config.problems import Problem
from automator.daemon import reload
from automator.daemon.options import daemon_options
from automator.daemon.process import Daemon
from automator.daemon.reload import is_project_file

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)


# ---- is_project_file ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rel, expected", [
    ("automator.yaml", True),
    ("segments.yaml", True),
    ("pipelines/sales.yaml", True),
    ("rules/nps.yaml", True),
    ("rules/clinic/deep/no-show.yaml", True),
    ("rules/nps.test.yaml", False),
    ("rules/clinic/nps.test.yaml", False),
    ("automator.db", False),
    ("automator.db-wal", False),
    ("notes.yaml", False),
    ("examples/booking-arrived.yaml", False),
    ("rules/readme.md", False),
    ("rules/nps.yaml.swp", False),
    ("rules/nps.yml", False),  # rule files are *.yaml: a .yml file is not loaded, so not watched
    ("pipelines", False),
    ("rules/clinic", True),  # a folder (or a symlink to one) moved in or out changes the rule files
    ("rules", False),
])
def test_is_project_file(tmp_path: Path, rel: str, expected: bool) -> None:
    assert is_project_file(tmp_path, tmp_path / rel) is expected


def test_files_outside_the_project_are_not_its_own(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    assert is_project_file(root, tmp_path / "automator.yaml") is False
    assert is_project_file(root, tmp_path / "other" / "rules" / "x.yaml") is False
    assert is_project_file(root, root / ".." / "automator.yaml") is False
    assert is_project_file(root, root / "rules" / ".." / "automator.yaml") is True


# ---- Swapper.swap -------------------------------------------------------------------------------------------------

RULES_V1 = """
    rules:
      - id: greet
        when: {event: nps.received}
        do:
          - notify: {to: admin, text: "v1"}
    """
RULES_V2 = """
    rules:
      - id: greet
        when: {event: nps.received}
        do:
          - notify: {to: admin, text: "v2"}
      - id: nightly
        when: {schedule: "0 3 * * *"}
        do:
          - notify: {to: admin, text: "night"}
    """
BROKEN = """
    rules:
      - id: greet
        when: {event: nps.received}
        do:
          - notify: {to: admin, text: "{{ cliet.name }}"}
    """


def write_rules(root: Path, text: str) -> None:
    import textwrap

    (root / "rules" / "rules.yaml").write_text(textwrap.dedent(text))


def swapping(daemon: Daemon, scenario: Callable[[Daemon], Awaitable[None]]) -> None:
    """What serve() sets up before the reload task runs: the parts, their store threads, the connectors."""
    async def main() -> None:
        daemon.open()
        try:
            daemon.running.connectors = await daemon.connectors_of(daemon.project)
            async with asyncio.timeout(10):
                await scenario(daemon)
        finally:
            daemon.close()

    asyncio.run(main())


def status(daemon: Daemon) -> dict:
    store = daemon.journal.store
    return json.loads(daemon.journal.executor.submit(store.get_meta, "daemon").result())


def reloads(daemon: Daemon, result: str) -> float:
    return daemon.metrics.registry.get_sample_value("automator_reloads_total", {"result": result}) or 0.0


def schedule_timers(daemon: Daemon) -> list[str]:
    store = daemon.engine.store
    return daemon.engine.executor.submit(lambda: [t.id for t in store.timers() if t.kind == "schedule"]).result()


@pytest.fixture
def daemon(make_project, tmp_path: Path) -> Daemon:  # type: ignore[no-untyped-def]
    project, problems = load_project(make_project(RULES_V1))
    assert project is not None, problems
    options = daemon_options(project.root, project.config, db_path=tmp_path / "reload.db", synchronous="NORMAL",
                             reload=False)
    return Daemon(project, options, clock=FakeClock(NOW))


def test_a_broken_change_keeps_the_running_rules_and_records_why(daemon: Daemon) -> None:
    running = daemon.project
    write_rules(daemon.root, BROKEN)

    async def scenario(d: Daemon) -> None:
        project, problems = await asyncio.to_thread(reload.load, d.root)
        assert project is None and problems
        connectors = d.connectors
        assert await d.reloader.swap(project, problems, ["rules/rules.yaml"]) is False
        assert d.project is running and d.connectors is connectors
        assert d.load_errors == problems
        assert any("unknown name 'cliet'" in p.message for p in d.load_errors)
        assert reloads(d, "failed") == 1 and reloads(d, "ok") == 0
        record = status(d)
        assert record["version"] == running.version
        assert record["load_errors"] == [p.format() for p in problems]
        assert d.health.healthz()["load_errors"] == len(problems)

    swapping(daemon, scenario)


def test_a_valid_change_is_swapped_in_and_clears_the_errors(daemon: Daemon) -> None:
    running = daemon.project

    async def scenario(d: Daemon) -> None:
        assert await d.reloader.swap(None, [Problem("rules/rules.yaml", 1, 1, "broken")], ["rules/rules.yaml"]) is False
        assert len(d.load_errors) == 1
        write_rules(d.root, RULES_V2)
        project, problems = await asyncio.to_thread(reload.load, d.root)
        assert project is not None, problems
        old_connectors = d.connectors
        assert await d.reloader.swap(project, problems, ["rules/rules.yaml"]) is True
        assert d.project is project and d.project.version != running.version
        assert d.load_errors == [] and reloads(d, "ok") == 1 and reloads(d, "failed") == 1
        assert set(d.connectors) == {"crm", "sms", "forms"} and d.connectors["crm"] is not old_connectors["crm"]
        assert schedule_timers(d) == ["schedule/nightly"]  # the new schedule rule got its timer
        record = status(d)
        assert record["version"] == project.version and record["load_errors"] == [] and record["rules"] == 2

    swapping(daemon, scenario)


def test_a_change_whose_connector_cannot_be_built_is_refused(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    running = daemon.project
    monkeypatch.delenv("RELOAD_TEST_SECRET", raising=False)

    async def scenario(d: Daemon) -> None:
        config = (d.root / "automator.yaml").read_text().replace(
            "crm: {type: local}", 'crm: {type: local, secret: "${env:RELOAD_TEST_SECRET}"}')
        (d.root / "automator.yaml").write_text(config)
        project, problems = await asyncio.to_thread(reload.load, d.root)
        assert project is not None, problems  # valid as written: the secret is only missing at run time
        assert await d.reloader.swap(project, [], ["automator.yaml"]) is False
        assert d.project is running
        (problem,) = d.load_errors
        assert problem.path.endswith("automator.yaml")
        assert "RELOAD_TEST_SECRET" in problem.message and "not set" in problem.message
        assert reloads(d, "failed") == 1
        assert status(d)["load_errors"] == [problem.format()]

    swapping(daemon, scenario)


# ---- BoundedLoader: a load that hangs is abandoned, and holds nothing up -------------------------------------------

class HangingLoad:
    """A load that hangs until released, the first time only; counts the loads started."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def __call__(self, root: Path) -> reload.Loaded:
        self.started += 1
        if self.started == 1:
            self.release.wait()
            return None, [Problem("stale", 1, 1, "the first, abandoned load")]
        return None, [Problem("fresh", 1, 1, "a later load")]


def test_a_hanging_load_is_abandoned_with_an_error_and_the_next_waits_for_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, wait_until: Callable[..., Awaitable[None]]) -> None:
    hanging = HangingLoad()
    loader = reload.BoundedLoader(tmp_path, timeout=0.2, load=hanging)

    async def main() -> None:
        stopping = asyncio.Event()
        loaded = await loader.load(stopping)
        assert loaded is not None
        project, (problem,) = loaded
        assert project is None and "took longer than 0.2 s and was abandoned" in problem.message
        assert problem.path == str(tmp_path)
        stuck = [t for t in threading.enumerate() if t.name == "reload"]
        assert len(stuck) == 1 and stuck[0].daemon  # it never keeps the process alive

        # The next load does not start a second thread beside the stuck one: it waits for it to end ...
        waiting = asyncio.create_task(loader.load(stopping))
        await wait_until(lambda: "waiting for the reload abandoned earlier" in caplog.text, 10, "the wait")
        assert not waiting.done() and hanging.started == 1
        hanging.release.set()
        # ... then loads afresh (the abandoned load's result is stale and dropped).
        loaded = await asyncio.wait_for(waiting, 10)
        assert loaded is not None and loaded[1][0].path == "fresh" and hanging.started == 2

    asyncio.run(main())


def test_stopping_ends_the_wait_for_a_hanging_load(tmp_path: Path) -> None:
    hanging = HangingLoad()
    loader = reload.BoundedLoader(tmp_path, timeout=60, load=hanging)

    async def main() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stopping.set)
        assert await asyncio.wait_for(loader.load(stopping), 10) is None

    asyncio.run(main())
    hanging.release.set()


STUCK_STOP = """
import asyncio, signal, sys, threading
from automator.config.load import load_project
from automator.daemon import process
from automator.daemon.options import daemon_options

process.STOP_DEADLINE = 0.5
project, problems = load_project(sys.argv[1])
daemon = process.Daemon(project, daemon_options(project.root, project.config, db_path=sys.argv[2], reload=False))
daemon.owns_process = True
threading.Thread(target=threading.Event().wait, name="stuck-forever").start()  # would keep the process alive

async def main():
    daemon.stopping = asyncio.Event()
    daemon.stop(signal.SIGTERM)

asyncio.run(main())
"""


def test_a_stopped_daemon_ends_its_process_by_the_deadline_whatever_hangs(make_project, tmp_path: Path) -> None:
    root = make_project(RULES_V1)
    done = subprocess.run([sys.executable, "-c", STUCK_STOP, str(root), str(tmp_path / "stop.db")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "abandoning" in done.stderr and "stuck-forever" in done.stderr
