"""Numbered migrations: a database made by the version before them (commit 0712af0, tests/store/data/, written
by data/make_db.py) opens, is migrated and reads back; a later migration changes a filled database."""
from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlite_utils

from automator.model import Entity, EntityRef
from automator.store import schema
from automator.store.base import OutdatedStore
from automator.store.order import START_SQL
from automator.store.sqlite import SqliteStore

MADE_BY_0712AF0 = Path(__file__).parent / "data" / "v0712af0.db"
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # the moment make_db.py wrote it at
ANNA = EntityRef("client", "1")


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A copy of the database 0712af0 made (the file in the repository is never written)."""
    return Path(shutil.copy(MADE_BY_0712AF0, tmp_path / "automator.db"))


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute(f"pragma table_info({table})")]


def test_a_database_of_0712af0_is_migrated_and_reads_back(old_db: Path) -> None:
    assert "_sqlite_migrations" not in sqlite_utils.Database(old_db).table_names()
    store = SqliteStore(old_db)
    try:
        assert schema.version(store.db) == schema.latest() == 7
        assert [(r.id, r.status, r.vars) for r in store.runs()] == [("run-0", "waiting", {"n": 0}),
                                                                    ("run-1", "done", {"n": 1})]
        anna = store.entity(ANNA)
        assert anna is not None and anna.fields == {"name": "Анна", "visits": 1}
        assert [(e["key"], e["status"]) for e in store.effects()] == [("fx-0", "done"), ("fx-1", "running")]
        assert [t.id for t in store.timers()] == ["t-0", "t-1"]
        assert store.get_meta("rules_version") == "v1"
        assert [(e.id, e.data) for e in store.pending_events("W", NOW, 10)] == [
            ("e2", {"name": "Анна", "visits": 2})]  # its claim by W, the worker that wrote it, still holds
        # The effect its dead worker left running is recovered as today's code recovers it.
        assert store.release_dead_effects("me", NOW, gone=lambda owner, me: owner == "X") == (0, 0, 1)
    finally:
        store.close()
    again = SqliteStore(old_db)  # opening again applies nothing twice
    try:
        assert schema.version(again.db) == 7
        # Migration 2: a person's bookings are found through the new index, on rows written before it.
        again.put_entity(Entity(EntityRef("booking", "b1"), {"client": "1"}, NOW))
        assert [e.ref.id for e in again.related("booking", "1")] == ["b1"]
        plan = " ".join(str(row) for row in again.db.conn.execute(
            "explain query plan select id from entities where kind = 'booking' and "
            "json_extract(fields, '$.client') in ('1', 1)"))
        assert "entities_client" in plan
        # Migration 4: bookings are found by the moment they start through an index of their own.
        again.put_entity(Entity(EntityRef("booking", "b2"), {"client": "1", "starts_at": "2026-03-03T15:00:00+03:00"},
                                NOW))
        slot = datetime(2026, 3, 3, 12, 0, tzinfo=timezone.utc)
        assert [e.ref.id for e in again.bookings_starting(slot, slot + timedelta(seconds=1))] == ["b2"]
        plan = " ".join(str(row) for row in again.db.conn.execute(
            f"explain query plan select id from entities indexed by entities_booking_start where kind = 'booking' "
            f"and {START_SQL} >= '2026' and {START_SQL} < '2027'"))
        assert "SEARCH entities USING INDEX entities_booking_start" in plan  # a range of it, not a scan
        # Migration 6: a person's visits in order, and the window's visits grouped per client, through one index
        # that holds every column the segments' rescoring reads (no row read: a covering index).
        plan = " ".join(str(row) for row in again.db.conn.execute(
            "explain query plan select id from visits where client = '1' and at >= '2026' order by at"))
        assert "USING INDEX visits_by_client" in plan
        plan = " ".join(str(row) for row in again.db.conn.execute(
            "explain query plan select client, max(at), sum(kind = 'visit'), sum(amount), count(*) from visits "
            "indexed by visits_by_client where at >= '2026' group by client"))
        assert "USING COVERING INDEX visits_by_client" in plan and "TEMP B-TREE" not in plan
        indexes = {row[1] for row in again.db.conn.execute("pragma index_list(visits)")}
        assert "visits_by_client" in indexes and "idx_visits_client_at" not in indexes
    finally:
        again.close()


def test_a_database_of_0712af0_can_be_read_before_it_is_migrated(old_db: Path) -> None:
    """Operators' commands open read-only and migrate nothing: a database of the previous version has every
    column they read, so they work on it before the daemon has been started again."""
    store = SqliteStore(old_db, read_only=True)
    try:
        assert store.count("journal") == 3 and schema.version(store.db) == 0
    finally:
        store.close()


def test_an_older_database_gains_the_columns_it_lacks(old_db: Path) -> None:
    with sqlite3.connect(old_db) as conn:
        for column in ("started_at", "interrupted", "tries"):
            conn.execute(f"alter table effects drop column {column}")
    with pytest.raises(OutdatedStore, match="effects.started_at, interrupted, tries"):
        SqliteStore(old_db, read_only=True)
    SqliteStore(old_db).close()
    assert columns(old_db, "effects")[-3:] == ["started_at", "interrupted", "tries"]
    store = SqliteStore(old_db, read_only=True)
    try:
        running = [e for e in store.effects() if e["status"] == "running"]
        # Claimed by a version that did not record starts: its call may have begun.
        assert [(e["key"], e["started_at"] == e["updated_at"]) for e in running] == [("fx-1", True)]
    finally:
        store.close()


def after_migration_1(second: Callable[[sqlite_utils.Database], None]) -> sqlite_utils.Migrations:
    """This version's migrations with one more after them: a later version's, as a test writes it."""
    later = sqlite_utils.Migrations("automator")
    for migration in schema.MIGRATIONS.pending(sqlite_utils.Database(memory=True)):  # this version's, in order
        later(name=migration.name)(migration.fn)
    later(name="m999_later")(second)
    return later


def add_run_notes(db: sqlite_utils.Database) -> None:
    db.table("runs").add_column("note", str)
    db.table("runs").create_index(["rule_id", "note"])


def add_run_notes_then_fail(db: sqlite_utils.Database) -> None:
    db.table("runs").add_column("note", str)
    raise RuntimeError("the second half failed")


def test_a_migration_adds_a_column_and_an_index_to_a_filled_database(old_db: Path) -> None:
    later = after_migration_1(add_run_notes)
    store = SqliteStore(old_db)  # migration 1, as the daemon would
    try:
        before = store.runs()
        with store.atomic():
            schema.migrate(store.db, later)
        assert schema.version(store.db, later) == schema.latest(later) == schema.latest() + 1
        assert store.runs() == before  # nothing read or written differs
        assert [r["note"] for r in store.db.query("select note from runs")] == [None, None]
        assert ["rule_id", "note"] in [index.columns for index in store.db.table("runs").indexes]
    finally:
        store.close()


def test_a_failing_migration_leaves_the_database_as_it_was(old_db: Path) -> None:
    broken = after_migration_1(add_run_notes_then_fail)
    store = SqliteStore(old_db)
    try:
        with pytest.raises(RuntimeError, match="second half"):
            with store.atomic():
                schema.migrate(store.db, broken)
        assert schema.version(store.db, broken) == schema.latest() and "note" not in columns(old_db, "runs")
    finally:
        store.close()
