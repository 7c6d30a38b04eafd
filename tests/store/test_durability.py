"""Durable where observed: the daemon's connections (`fsync="observed"`) fsync the write-ahead log after the commits
seen outside the process (events journaled from outside, effects' start marks) and after no other; SQLite syncs
as configured everywhere else (FULL by default: every commit; NORMAL: none)."""
from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from automator.model import Decision, Effect, EntityRef, Event
from automator.store.base import Settlement
from automator.store.connection import Connection
from automator.store.sqlite import SqliteStore

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)


class Syncs:
    """os.fdatasync, counted per file, with what another connection saw committed at that moment."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
        self.db = db
        self.files: list[str] = []
        self.seen: list[int] = []
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            self.files.append(os.readlink(f"/proc/self/fd/{fd}"))
            self.seen.append(self._committed())
            real(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def _committed(self) -> int:
        with sqlite3.connect(self.db) as other:
            return int(other.execute("select count(*) from t").fetchone()[0])


def table(conn: Connection) -> None:
    with conn.atomic():
        conn.conn.execute("create table t (x)")


def synchronous(conn: Connection) -> int:
    return int(conn.conn.execute("PRAGMA synchronous").fetchone()[0])


def test_observed_commits_are_fsynced_once_committed_and_the_others_are_not(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    conn = Connection(tmp_path / "s.db", fsync="observed")
    assert synchronous(conn) == 1  # NORMAL: SQLite itself fsyncs no commit
    table(conn)
    syncs = Syncs(monkeypatch, tmp_path / "s.db")
    with conn.atomic():
        conn.conn.execute("insert into t values (1)")
    assert syncs.files == []
    with conn.atomic():
        conn.conn.execute("insert into t values (2)")
        with conn.atomic():  # marked from anywhere inside the transaction
            conn.durable()
    assert syncs.files == [f"{(tmp_path / 's.db').resolve()}-wal"]  # the log, which holds both commits
    assert syncs.seen == [2]  # after the commit
    with conn.atomic():
        conn.conn.execute("insert into t values (3)")
    assert len(syncs.files) == 1  # the mark was for that transaction only
    with pytest.raises(RuntimeError), conn.atomic():
        conn.durable()
        raise RuntimeError("rolled back")
    with conn.atomic():
        conn.conn.execute("insert into t values (4)")
    assert len(syncs.files) == 1  # nothing of a rolled back transaction is left to sync
    conn.close()


@pytest.mark.parametrize("setting, fsync, pragma", [("FULL", "every", 2), ("NORMAL", "observed", 1),
                                                    ("NORMAL", "every", 1)])
def test_otherwise_sqlite_syncs_as_configured_and_durable_adds_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, fsync: str, pragma: int) -> None:
    conn = Connection(tmp_path / "s.db", synchronous=setting, fsync=fsync)
    assert synchronous(conn) == pragma  # FULL: every commit; NORMAL (--synchronous NORMAL): none, observed or not
    table(conn)
    syncs = Syncs(monkeypatch, tmp_path / "s.db")
    with conn.atomic():
        conn.durable()
        conn.conn.execute("insert into t values (1)")
    assert syncs.files == []
    conn.close()


def effect(key: str) -> Effect:
    return Effect(key=key, run_id=f"run-{key}", rule_id="r", action="deal.move", connector="crm",
                  params={"deal": "5"}, delivery="at_most_once", at=NOW, entity=EntityRef("deal", "5"))


def test_the_store_fsyncs_events_from_outside_and_start_marks_only(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(tmp_path / "s.db", fsync="observed")
    store.db.conn.execute("create table t (x)")
    syncs = Syncs(monkeypatch, tmp_path / "s.db")
    event = Event(id="hook:1", type="booking.updated", at=NOW, source="hook", delivery_id="1")
    assert store.append([event], NOW) == [True]
    assert len(syncs.files) == 1  # a webhook's 2xx follows
    store.apply(Decision(event=event, entity_before=None, entity_after=None, effects=(effect("e1"),)))
    (claimed,) = store.claim_effects("W", NOW, 1, NOW - NOW)
    assert len(syncs.files) == 1  # a decision and a claim are seen only through what follows them
    store.mark_started(["e1"], NOW)
    assert len(syncs.files) == 2  # the call's first byte follows
    store.settle(claimed.effect, Settlement("done"), NOW)
    assert len(syncs.files) == 2
    store.close()


def test_the_daemons_store_threads_fsync_what_is_observed_only(tmp_path: Path) -> None:
    from automator.daemon.storethread import StoreThread

    thread = StoreThread(tmp_path / "s.db", "journal")
    try:
        assert thread.executor.submit(lambda: synchronous(thread.store.connection)).result() == 1  # type: ignore[attr-defined]
    finally:
        thread.close()
