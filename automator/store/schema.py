"""The database's tables, and the numbered migrations that bring any earlier database to them.

Migrations are `sqlite_utils.Migrations`: each is a function, applied once, in order, recorded by name in the
`_sqlite_migrations` table. They run when a store opens its database for writing, inside its first transaction
(with the write lock held, so two processes opening one database never both run one). A read-only open runs none;
it refuses a database that lacks what this version reads (see `check`).
"""
from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any, cast

import sqlite_utils
from sqlite_utils.db import Table

from automator.store.base import OutdatedStore

# The tables and indexes as migration 1 makes them. They do not change: a later change to a table is a migration
# of its own below (and the row codecs' columns follow it).
TABLES: dict[str, tuple[dict[str, Any], Any]] = {
    "entities": ({"kind": str, "id": str, "fields": str, "prev": str, "updated_at": str}, ("kind", "id")),
    "runs": ({"id": str, "rule_id": str, "rule_version": str, "key": str, "event_id": str, "status": str,
              "cursor": str, "vars": str, "entity": str, "trace": str, "started_at": str, "updated_at": str,
              "depth": int, "origin": str}, "id"),
    "timers": ({"id": str, "due_at": str, "kind": str, "rule_id": str, "key": str, "run_id": str,
                "payload": str}, "id"),
    "effects": ({"key": str, "run_id": str, "rule_id": str, "action": str, "connector": str, "params": str,
                 "delivery": str, "status": str, "at": str, "entity": str, "depth": int, "result": str,
                 "attempts": int, "next_try_at": str, "claimed_by": str, "claimed_until": str, "error": str,
                 "updated_at": str,
                 # When the claimed try's call was about to begin (committed before it begins); null while
                 # claimed but not yet called. `interrupted`: some try may have been performed without an
                 # answer (killed or timed out mid-call), so a later try first looks for what it made.
                 "started_at": str, "interrupted": int,
                 "tries": str}, "key"),  # tries: a JSON list, one entry per try settled
    # The journal: every accepted event, in order. `seq` is the order; `id` and (source, delivery_id) are unique.
    "journal": ({"seq": int, "id": str, "key": str, "type": str, "at": str, "source": str, "delivery_id": str,
                 "digest": str, "body": str, "status": str, "claimed_by": str, "claimed_until": str,
                 "received_at": str, "done_at": str, "why_not": str, "error": str}, "seq"),
    # Changes our own effects made, so that the CRM's webhook echoing them back is recognised.
    "echoes": ({"entity": str, "fields": str, "effect": str, "rule_id": str, "depth": int, "until": str},
               ("entity", "effect")),
    # Each change an effect made, by the first event that reported it (`<effect>|<type>|<entity>`): the action's
    # answer, the system's webhook and its catch-up poll all report it, and only the first may start rules.
    "reports": ({"change": str, "event": str, "at": str}, "change"),
    "meta": ({"name": str, "value": str}, "name"),
}
INDEXES: tuple[tuple[str, list[str], bool], ...] = (
    ("runs", ["key", "status"], False), ("runs", ["entity"], False), ("runs", ["started_at"], False),
    ("runs", ["event_id"], False), ("timers", ["due_at"], False), ("timers", ["run_id"], False), ("timers", ["kind"], False),
    ("journal", ["id"], True), ("journal", ["source", "delivery_id"], True), ("journal", ["status", "seq"], False),
    ("journal", ["source", "digest"], False),
    ("effects", ["status", "next_try_at"], False), ("effects", ["run_id"], False),
)

MIGRATIONS = sqlite_utils.Migrations("automator")
# Tables a later migration made that an operator's read-only look may go without: a database the previous version
# wrote is read before the daemon, started again, migrates it (the commands that read them need it migrated).
LATER_TABLES = frozenset({"links", "visits", "leads", "stage_moves", "client_channels", "bookings", "reviews",
                          "spend", "ledger"})


@MIGRATIONS()
def m001_tables(db: sqlite_utils.Database) -> None:
    """The tables as they were before numbered migrations; a database made then gains what it lacks."""
    # Versions before numbered migrations created the tables and added missing columns on every open: a database
    # of theirs has every table, perhaps without the columns added last.
    for table, (columns, pk) in TABLES.items():
        if not db[table].exists():
            _table(db, table).create(columns, pk=pk)
        else:
            existing = set(db[table].columns_dict)
            for name, kind in columns.items():
                if name not in existing:
                    _table(db, table).add_column(name, kind)
                    if (table, name) == ("effects", "started_at"):
                        # Claimed by a version that did not record starts: their calls may have begun.
                        db.conn.execute("update effects set started_at = updated_at where status = 'running'")
    for table, cols, unique in INDEXES:
        _table(db, table).create_index(cols, if_not_exists=True, unique=unique)


@MIGRATIONS()
def m002_people(db: sqlite_utils.Database) -> None:
    """One client across systems and their history: each system's id of a person (`links`; the pseudo-system
    `phone` holds E.164 phones), their visits and purchases (`visits`, money in minor units), and an index that
    finds a person's bookings, deals and tasks by their `client` field."""
    # Idempotent, as m001 is: a test (or an operator) may drop the migrations' record of a database that has them.
    _table(db, "links").create({"system": str, "ext_id": str, "client": str, "at": str}, pk=("system", "ext_id"),
                               if_not_exists=True)
    _table(db, "links").create_index(["client"], if_not_exists=True)
    _table(db, "visits").create({"id": str, "client": str, "at": str, "kind": str, "branch": str, "services": str,
                                 "category": str, "staff": str, "amount": int, "currency": str, "booking": str,
                                 "source": str}, pk="id", if_not_exists=True)
    _table(db, "visits").create_index(["client", "at"], if_not_exists=True)
    # An index on an expression: the writers of entities stay as they are, and a lookup that says
    # `json_extract(fields, '$.client')` in the same words uses it.
    db.execute("create index if not exists entities_client on entities (kind, json_extract(fields, '$.client'))")


@MIGRATIONS()
def m003_client_phone(db: sqlite_utils.Database) -> None:
    """An index that finds a stored client by its `phone` field (`client_by_phone` for people no system reported
    through the journal, so with no phone link), in the words `People.clients_with_phone` says."""
    db.execute("create index if not exists entities_phone on entities (kind, json_extract(fields, '$.phone'))")


@MIGRATIONS()
def m004_booking_start(db: sqlite_utils.Database) -> None:
    """An index that finds bookings by the moment they start (`bookings_at(...)`: every booking of a cancelled slot),
    in the words `store.order.START_SQL` says; partial, so that no other kind of record pays for it."""
    db.execute("create index if not exists entities_booking_start on entities "
               "(datetime(json_extract(fields, '$.starts_at'))) where kind = 'booking'")


@MIGRATIONS()
def m005_reports(db: sqlite_utils.Database) -> None:
    """What the reports read (automator/reports): every lead and deal with where it came from and how it ended
    (`leads`), every stage it entered with when and who moved it (`stage_moves`), each person's first channel
    (`client_channels`), bookings (`bookings`), reviews (`reviews`) and ad spend per day (`spend`).

    Moments are whole seconds since the epoch (UTC) and money integer minor units: the reports scan millions of
    these rows, and numbers are what an analytical engine reads fastest. Channels are the names of
    automator.yaml's `channels:` (automator/channels.py), classified when the record is stored."""
    _table(db, "leads").create({
        "id": str,              # "deal:<deal id>" or "lead:<connector>:<lead id>"
        "kind": str,            # deal | lead
        "source": str,          # the connector that reported it
        "client": str,          # the person, when known
        "pipeline": str, "stage": str,
        "outcome": str,         # open | won | lost
        "responsible": str,     # the manager in charge (the CRM's user id)
        "created_at": int, "qualified_at": int, "closed_at": int,
        "amount": int, "currency": str,
        "first_channel": str, "first_campaign": str, "first_at": int,
        "last_channel": str, "last_campaign": str, "last_at": int,
        "raw_source": str,      # the system's own source (Bitrix24 SOURCE_ID, amoCRM's source, YCLIENTS's)
        "utm_source": str, "utm_medium": str, "utm_campaign": str, "utm_content": str, "utm_term": str,
    }, pk="id", if_not_exists=True)
    _table(db, "leads").create_index(["created_at"], if_not_exists=True)
    _table(db, "leads").create_index(["client"], if_not_exists=True)
    # One row per stage a lead or deal entered (its first stage included), in the order entered.
    _table(db, "stage_moves").create({
        "id": int, "record": str, "pipeline": str, "stage": str, "from_stage": str, "at": int,
        "by": str,              # who moved it: "rule:<rule id>" for our own effect, else the CRM user when known
        "responsible": str,     # the manager in charge at that moment
        "event": str,           # the journal event that reported it
    }, pk="id", if_not_exists=True)
    _table(db, "stage_moves").create_index(["record", "at"], if_not_exists=True)
    _table(db, "stage_moves").create_index(["event", "record"], unique=True, if_not_exists=True)
    _table(db, "client_channels").create({"client": str, "channel": str, "campaign": str, "at": int,
                                          "record": str}, pk="client", if_not_exists=True)
    _table(db, "bookings").create({"id": str, "source": str, "client": str, "staff": str, "branch": str,
                                   "status": str, "created_at": int, "starts_at": int, "amount": int,
                                   "channel": str}, pk="id", if_not_exists=True)
    _table(db, "bookings").create_index(["starts_at"], if_not_exists=True)
    _table(db, "reviews").create({"id": str, "client": str, "at": int, "score": int, "staff": str,
                                  "branch": str, "booking": str}, pk="id", if_not_exists=True)
    _table(db, "reviews").create_index(["at"], if_not_exists=True)
    _table(db, "spend").create({"day": str, "channel": str, "campaign": str, "amount": int, "currency": str,
                                "source": str, "imported_at": str}, pk=("day", "channel", "campaign"),
                               not_null={"campaign"}, defaults={"campaign": ""}, if_not_exists=True)


@MIGRATIONS()
def m006_ledger(db: sqlite_utils.Database) -> None:
    """Each client's loyalty ledger (automator/loyalty/ledger.py): append-only rows, one per accrual, spending,
    expiry, issue or correction, each in one account of the client (`points:gold`, `certificate:A-1001`), its id
    made from its cause so that writing it again adds nothing. Amounts are signed integer minor units (or visits
    for an abonement); moments UTC ISO text, as the visits' (a row's order within a second matters here)."""
    _table(db, "ledger").create({
        "id": str, "client": str, "account": str, "kind": str, "amount": int,
        "at": str, "expires_at": str,
        "reason": str, "event": str, "rule": str, "visit": str,
        "detail": str,          # JSON: {"lot": …} of an expiry, {"tier": …} of a tier row, …
    }, pk="id", not_null={"client", "account", "kind", "amount", "at"}, if_not_exists=True)
    _table(db, "ledger").create_index(["client", "at"], if_not_exists=True)
    _table(db, "ledger").create_index(["account", "expires_at"], if_not_exists=True)
    _table(db, "ledger").create_index(["visit"], if_not_exists=True)


@MIGRATIONS()
def m007_visits_by_client(db: sqlite_utils.Database) -> None:
    """The index the segments' full rescoring reads the visits through: (client, at, kind, amount) holds every
    column it reads, so SQLite groups a window's visits per client in the index's order, with no sort and no row
    read (bench/segments.py: a million clients' ten million visits grouped in about 3 s, against 8 s to read them
    out raw). It serves what (client, at) served, a person's visits in order, and replaces it."""
    _table(db, "visits").create_index(["client", "at", "kind", "amount"], index_name="visits_by_client",
                                      if_not_exists=True)
    db.execute("drop index if exists idx_visits_client_at")


def migrate(db: sqlite_utils.Database, migrations: sqlite_utils.Migrations = MIGRATIONS) -> None:
    """Apply the migrations this database has not had yet, in order (inside the caller's transaction)."""
    migrations.apply(db)


def version(db: sqlite_utils.Database, migrations: sqlite_utils.Migrations = MIGRATIONS) -> int:
    """How many of the migrations this database has had (0 for one made before numbered migrations)."""
    return len(migrations.applied(db))


def latest(migrations: sqlite_utils.Migrations = MIGRATIONS) -> int:
    """The version a database has once migrated: the number of migrations."""
    empty = sqlite_utils.Database(memory=True)
    try:
        return len(migrations.pending(empty))
    finally:
        empty.conn.close()


def check(db: sqlite_utils.Database, path: Path | None) -> None:
    """Refuse, with what is missing, a database that lacks the tables or columns a migrated one has."""
    expected = _migrated_columns()
    missing = []
    for table, columns in expected.items():
        if table in LATER_TABLES and not db[table].exists():
            continue
        have = {row[1] for row in db.conn.execute(f"pragma table_info({table})")}
        lacking = [name for name in columns if name not in have]
        if not have:
            missing.append(f"the table {table}")
        elif lacking:
            missing.append(f"{table}.{', '.join(lacking)}")
    if missing:
        raise OutdatedStore(f"the database at {path} is not one this version of automator has written "
                            f"(it lacks {'; '.join(missing)}): `automator run` upgrades it when it starts")


@functools.cache
def _migrated_columns() -> dict[str, list[str]]:
    """Each table's columns in a database every migration has made (in memory: what a read-only open expects)."""
    db = sqlite_utils.Database(sqlite3.connect(":memory:"))
    try:
        migrate(db)
        return {table: [column.name for column in _table(db, table).columns] for table in db.table_names()
                if table != MIGRATIONS.migrations_table}
    finally:
        db.conn.close()


def _table(db: sqlite_utils.Database, name: str) -> Table:
    # db[name] may be a view to sqlite-utils' types; every name here is a table.
    return cast(Table, db[name])
