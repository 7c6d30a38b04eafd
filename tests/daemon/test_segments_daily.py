"""The daemon's daily rescoring (automator/daemon/segments_daily.py) through the engine's own entry point, on a
store file and a clock the test moves: due at segments.yaml's `rescore:` once a day, a missed day caught up, a
new configuration written without events, a crash between two batches neither losing nor doubling a move, and the
engine rescoring each client as it decides `segment.rescore`."""
from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from automator import rescoring
from automator.config.load import load_project
from automator.config.project import Project
from automator.daemon import segments_daily
from automator.daemon.storethread import StoreThread
from automator.daemon.worker import process_batch
from automator.model import Visit
from automator.store.sqlite import SqliteStore

# 2026-12-06 03:30 in Moscow: before the 04:00 rescoring, so the day due is the 5th.
EARLY = datetime(2026, 12, 6, 0, 30, tzinfo=timezone.utc)
SEGMENTS = """\
rfm:
  window: 365d
  recency: [30, 60, 90, 180]
  frequency: [12, 6, 3, 2]
  monetary: [60000, 30000, 15000, 5000]
rescore: "04:00"
segments:
  active: {r: ">=3"}
  fading: {r: 2}
  gone: {}
"""


def _project(root: Path, segments: str = SEGMENTS) -> Project:
    root.mkdir(exist_ok=True)
    (root / "automator.yaml").write_text("timezone: Europe/Moscow\n")
    (root / "segments.yaml").write_text(segments)
    project, problems = load_project(root)
    assert project is not None, problems
    return project


def _store(path: Path, clients: dict[str, int]) -> None:
    """Clients with one visit `days` before EARLY each, their history derived as an import derives it."""
    store = SqliteStore(str(path), synchronous="NORMAL")
    with store.atomic():
        store.put_visits(Visit(id=f"v{c}", client=c, at=EARLY - timedelta(days=d, hours=1), kind="visit",
                               amount=300_000) for c, d in clients.items())
        store.recompute_history(clients, EARLY)
    store.close()


def _run(path: Path, project: Project, now: datetime) -> segments_daily.DailyReport | None:
    """What the engine's loop does at `now`: is a rescoring due, then do it; and decide what it journaled."""
    async def main() -> segments_daily.DailyReport | None:
        thread = StoreThread(path, "engine", synchronous="NORMAL")
        try:
            config = project.segments
            assert config is not None
            when = await thread.call(segments_daily.due, config, now, project.config.timezone)
            if when is None:
                return None
            report = await segments_daily.rescore_daily(thread, project, now, when)
            while (await thread.call(process_batch, project, "w", now)).events:
                pass
            return report
        finally:
            thread.close()
    return asyncio.run(main())


def _read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    store = SqliteStore(str(path), read_only=True)
    try:
        return list(store.db.conn.execute(sql).fetchall())
    finally:
        store.close()


def _segments(path: Path) -> dict[str, str]:
    return dict(_read(path, "select id, json_extract(fields, '$.segment') from entities where kind = 'client'"))


def test_the_day_due_and_the_next_run(tmp_path: Path) -> None:
    project = _project(tmp_path)
    config, tz = project.segments, project.config.timezone
    assert config is not None
    assert segments_daily.due_day(config, EARLY, tz) == date(2026, 12, 5)  # 03:30 local: yesterday's is the last
    assert segments_daily.next_run(config, EARLY, tz) == datetime(2026, 12, 6, 1, 0, tzinfo=timezone.utc)
    at_four = datetime(2026, 12, 6, 1, 0, tzinfo=timezone.utc)
    assert segments_daily.due_day(config, at_four, tz) == date(2026, 12, 6)
    assert segments_daily.next_run(config, at_four, tz) == datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)


def test_first_silent_then_daily_once_and_a_missed_day_caught_up(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    project = _project(tmp_path / "p")
    _store(path, {"1": 20, "2": 55, "3": 170})
    # The first rescoring of this segments.yaml: written, no events (an edit is not news).
    first = _run(path, project, EARLY)
    assert first is not None and first.silent and first.day == "2026-12-05" and first.journaled == 0
    assert _segments(path) == {"1": "active", "2": "active", "3": "fading"}
    assert _read(path, "select count(*) from journal") == [(0,)]
    assert _run(path, project, EARLY + timedelta(minutes=20)) is None  # done for the 5th
    # 04:00 on the 6th: due. Client 2 (56 days now) stays r 4 → active; no one moved: nothing journaled.
    at_four = datetime(2026, 12, 6, 1, 0, tzinfo=timezone.utc)
    daily = _run(path, project, at_four)
    assert daily is not None and not daily.silent and daily.day == "2026-12-06" and daily.journaled == 0
    assert _run(path, project, at_four + timedelta(hours=5)) is None  # not twice a day
    # The daemon was down from the 7th to the 17th at noon: one rescoring catches up. Client 1: 31 days → r 4;
    # client 2: 66 days → r 3 (both still active); client 3: 181 days → r 1: gone, the one move.
    later = datetime(2026, 12, 17, 9, 0, tzinfo=timezone.utc)
    caught = _run(path, project, later)
    assert caught is not None and caught.day == "2026-12-17" and caught.journaled == 3
    rescored = _read(path, "select id, json_extract(body, '$.data.day') from journal where type = 'segment.rescore' "
                           "order by seq")
    assert rescored == [("rescore:2026-12-17:1", "2026-12-17"), ("rescore:2026-12-17:2", "2026-12-17"),
                        ("rescore:2026-12-17:3", "2026-12-17")]
    scores = dict(_read(path, "select id, json_extract(fields, '$.rfm') from entities where kind = 'client'"))
    assert {k: json.loads(v) for k, v in scores.items()} == {
        "1": {"r": 4, "f": 1, "m": 1}, "2": {"r": 3, "f": 1, "m": 1}, "3": {"r": 1, "f": 1, "m": 1}}
    # Client 2, 101 days after their visit: r 2, fading.
    aged = datetime(2027, 1, 21, 9, 0, tzinfo=timezone.utc)
    assert _run(path, project, aged) is not None
    moved = _read(path, "select id, json_extract(body, '$.data') from journal where type = 'segment.changed' "
                        "order by seq")
    assert [(i, json.loads(d)) for i, d in moved] == [
        ("rescore:2026-12-17:3>segment.changed", {"from": "fading", "to": "gone", "category": None, "loyalty": None}),
        ("rescore:2027-01-21:2>segment.changed", {"from": "active", "to": "fading", "category": None, "loyalty": None})]
    assert _segments(path) == {"1": "active", "2": "fading", "3": "gone"}
    # segments.yaml changed: rescored at once, without events.
    changed = _project(tmp_path / "p", SEGMENTS.replace("[30, 60, 90, 180]", "[30, 60, 90, 400]"))
    before = _read(path, "select count(*) from journal")
    silent = _run(path, changed, aged + timedelta(minutes=1))
    assert silent is not None and silent.silent
    assert _read(path, "select count(*) from journal") == before
    assert _segments(path)["3"] == "fading"


def test_a_crash_between_batches_neither_loses_nor_doubles_a_move(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.db"
    project = _project(tmp_path / "p")
    _store(path, {str(c): 100 for c in range(1, 6)})  # five clients, 100 days: fading
    assert _run(path, project, EARLY) is not None  # the first, silent
    assert set(_segments(path).values()) == {"fading"}
    monkeypatch.setattr(rescoring, "WRITE_BATCH", 2)
    aged = EARLY + timedelta(days=90)  # 190 days: gone, all five
    calls = {"n": 0}
    real = segments_daily.rescore_events

    def crashing(changes: Any, day: str, now: datetime) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed between two batches")
        return real(changes, day, now)

    monkeypatch.setattr(segments_daily, "rescore_events", crashing)
    with pytest.raises(RuntimeError):
        _run(path, project, aged)
    assert _read(path, "select count(*) from journal where type = 'segment.rescore'") == [(2,)]  # the first batch
    monkeypatch.setattr(segments_daily, "rescore_events", real)
    again = _run(path, project, aged + timedelta(minutes=1))  # the restart: the day is not done, so it is again
    assert again is not None and not again.silent
    assert _read(path, "select count(*) from journal where type = 'segment.rescore'") == [(5,)]
    assert _read(path, "select count(*) from journal where type = 'segment.changed'") == [(5,)]
    assert set(_segments(path).values()) == {"gone"}
    assert _run(path, project, aged + timedelta(minutes=20)) is None  # 03:50: still the same day done
