"""Reload: which files are the project's, and Daemon.swap keeping the running rules when a change is broken."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from automator.clock import FakeClock
from automator.config.load import load_project
from automator.config.problems import Problem
from automator.daemon import reload
from automator.daemon.process import Daemon
from automator.daemon.reload import is_project_file
from automator.daemon.storethread import StoreThread

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


# ---- Daemon.swap -------------------------------------------------------------------------------------------------

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
    """What serve() sets up before the reload task runs: the flags, the store threads, the connectors."""
    async def main() -> None:
        daemon.stopping = asyncio.Event()
        daemon.engine = StoreThread(daemon.db_path, "engine", synchronous="NORMAL")
        daemon.journal = StoreThread(daemon.db_path, "journal", synchronous="NORMAL")
        # swap() closes the retired connectors once the outbox's deadline has passed
        daemon.outbox = SimpleNamespace(deadline=0.0)  # type: ignore[assignment]
        try:
            daemon.connectors = await daemon._connectors(daemon.project)
            async with asyncio.timeout(10):
                await scenario(daemon)
        finally:
            daemon.journal.close()
            daemon.engine.close()

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
    return Daemon(project, db_path=tmp_path / "reload.db", clock=FakeClock(NOW), synchronous="NORMAL", reload=False)


def test_a_broken_change_keeps_the_running_rules_and_records_why(daemon: Daemon) -> None:
    running = daemon.project
    write_rules(daemon.root, BROKEN)

    async def scenario(d: Daemon) -> None:
        project, problems = await asyncio.to_thread(reload.load, d.root)
        assert project is None and problems
        connectors = d.connectors
        assert await d.swap(project, problems, ["rules/rules.yaml"]) is False
        assert d.project is running and d.connectors is connectors
        assert d.load_errors == problems
        assert any("unknown name 'cliet'" in p.message for p in d.load_errors)
        assert reloads(d, "failed") == 1 and reloads(d, "ok") == 0
        record = status(d)
        assert record["version"] == running.version
        assert record["load_errors"] == [p.format() for p in problems]
        assert d.health()["load_errors"] == len(problems)

    swapping(daemon, scenario)


def test_a_valid_change_is_swapped_in_and_clears_the_errors(daemon: Daemon) -> None:
    running = daemon.project

    async def scenario(d: Daemon) -> None:
        assert await d.swap(None, [Problem("rules/rules.yaml", 1, 1, "broken")], ["rules/rules.yaml"]) is False
        assert len(d.load_errors) == 1
        write_rules(d.root, RULES_V2)
        project, problems = await asyncio.to_thread(reload.load, d.root)
        assert project is not None, problems
        old_connectors = d.connectors
        assert await d.swap(project, problems, ["rules/rules.yaml"]) is True
        assert d.project is project and d.project.version != running.version
        assert d.load_errors == [] and reloads(d, "ok") == 1 and reloads(d, "failed") == 1
        assert set(d.connectors) == {"crm", "sms"} and d.connectors["crm"] is not old_connectors["crm"]
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
        assert await d.swap(project, [], ["automator.yaml"]) is False
        assert d.project is running
        (problem,) = d.load_errors
        assert problem.path.endswith("automator.yaml")
        assert "RELOAD_TEST_SECRET" in problem.message and "not set" in problem.message
        assert reloads(d, "failed") == 1
        assert status(d)["load_errors"] == [problem.format()]

    swapping(daemon, scenario)
