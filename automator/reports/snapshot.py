"""One consistent read of the store for a report: the SQLite file opened read-only through ADBC, one read
transaction for every table the report reads, each read's Arrow stream loaded into an in-memory DuckDB, where the
report computes.

A report never blocks the daemon: a WAL reader takes no lock the writer waits for, and the file is opened
read-only. Only the columns and rows a report asks for are read (reading is most of a report's time), and
everything it reads comes from the same moment of the store: the transaction begins before the first read and
ends after the last.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone, tzinfo
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import duckdb

from automator.daemon.instance import holder

# DuckDB's types for the SQLite columns a report reads: a text column is read as '' for NULL (ADBC infers a
# column's Arrow type from its first rows, and a NULL there makes a later text fail) and turned back into NULL here;
# a "moment" is a UTC ISO text (a visit's `at`) that DuckDB turns into seconds since the epoch as it loads it.
TYPES = {"text": "VARCHAR", "int": "BIGINT", "moment": "BIGINT"}
DEFAULT_MEMORY_LIMIT = "2GB"
DAY_SECONDS = 86400


class SnapshotError(RuntimeError):
    """The store cannot be read for a report (no such file, not a database automator wrote)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of the machine a report may use: DuckDB's threads (None: every core) and memory limit."""

    threads: int | None = None
    memory_limit: str = DEFAULT_MEMORY_LIMIT

    @classmethod
    def beside(cls, store: Path) -> Limits:
        """The limits for a report over `store` now: one core while a daemon runs on it, else every core.

        Beside a running daemon a report on every core cost the daemon a fifth of its events/s even at the lowest
        priority (bench/report_beside_daemon.py: median ×0.79 on two cores, ×0.99 on one); alone it may use them
        all, and the year's retention report takes 5.5 s instead of about 9."""
        return cls(threads=1) if holder(store) is not None else cls()


class Snapshot:
    """The store as of one moment, read table by table into DuckDB (`duck`) on the report's demand.

    Use it as a context manager; `read()` loads a table, `sql()`/`rows()` query what is loaded. `read_seconds`
    is the time spent reading from SQLite (the rest of a report's time is DuckDB's)."""

    def __init__(self, path: Path, limits: Limits = Limits()) -> None:
        import adbc_driver_sqlite.dbapi as adbc

        if not path.is_file():
            raise SnapshotError(f"no database at {path}")
        self.path = path
        self.read_seconds = 0.0
        # Rows are loaded in no particular order (a report orders what it shows): DuckDB loads faster so.
        self.duck = duckdb.connect(":memory:", config={
            "threads": limits.threads or os.cpu_count() or 1, "memory_limit": limits.memory_limit,
            "preserve_insertion_order": False})
        # mode=ro: a report can never write, nor take the write lock. ADBC's autocommit is off, so the driver has
        # begun a (deferred) transaction: its snapshot of the WAL is taken by the first read just below and kept
        # until close() rolls it back.
        self._sqlite = adbc.connect(f"file:{quote(str(path.resolve()))}?mode=ro")
        self._cursor = self._sqlite.cursor()
        self._tables: set[str] = set()
        self._existing = {name for (name,) in self._fetch_python("select name from sqlite_master where type='table'")}

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """End the read transaction and free DuckDB's memory."""
        try:
            self._cursor.close()
            self._sqlite.rollback()
            self._sqlite.close()
        finally:
            self.duck.close()

    def has(self, table: str) -> bool:
        """True when the store has `table` (a store made before the reports' migration has none of theirs)."""
        return table in self._existing

    def read(self, name: str, table: str, columns: Mapping[str, str], where: str = "") -> None:
        """Load `columns` (name or "expression as name" → "text" | "int" | "moment") of the SQLite `table`'s
        rows that match `where` (SQLite SQL after WHERE, a GROUP BY may follow; literals only: see `literal()`)
        into the DuckDB table `name`. A table the store lacks loads as an empty one."""
        started = time.perf_counter()
        names = [_alias(column) for column in columns]
        declared = ", ".join(f'"{n}" {TYPES[kind]}' for n, kind in zip(names, columns.values()))
        self.duck.execute(f'create or replace table "{name}" ({declared})')
        if self.has(table):
            selected = ", ".join(f"coalesce({_expression(c)}, '') as \"{n}\"" if kind in ("text", "moment")
                                 else f'{_expression(c)} as "{n}"'
                                 for c, n, kind in zip(columns, names, columns.values()))
            # Batches of 64k rows, not ADBC's 1,024: a third less time per million rows read.
            self._cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
            self._cursor.execute(f"select {selected} from {table}" + (f" where {where}" if where else ""))
            stream = self._cursor.fetch_arrow()
            # ::varchar: an empty result's columns come typed as integers (nothing to infer a type from)
            restored = ", ".join(f"nullif(\"{n}\"::varchar, '')" if kind == "text" else
                                 f"epoch(cast(substr(nullif(\"{n}\"::varchar, ''), 1, 19) as timestamp))::bigint"
                                 if kind == "moment" else f'"{n}"' for n, kind in zip(names, columns.values()))
            self.duck.execute(f'insert into "{name}" select {restored} from stream')
        self._tables.add(name)
        self.read_seconds += time.perf_counter() - started

    def run(self, statement: str) -> None:
        """Run a DuckDB statement (a `create table … as`) over the tables read so far."""
        self.duck.execute(statement)

    def value(self, query: str) -> Any:
        """A DuckDB query's single value (None when it has no row)."""
        row = self.duck.execute(query).fetchone()
        return None if row is None else row[0]

    def rows(self, query: str) -> list[dict[str, Any]]:
        """A DuckDB query's rows as dicts."""
        result = self.duck.execute(query)
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]

    def _fetch_python(self, query: str) -> list[tuple[Any, ...]]:
        self._cursor.execute(query)
        stream = self._cursor.fetch_arrow()
        return self.duck.execute("select * from stream").fetchall()


def literal(value: str | int | None) -> str:
    """A value written into SQL (ADBC binds parameters only through pyarrow, which is not a dependency)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"not a SQL literal: {value!r}")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def within(column: str, lo: int | str, hi: int | str, days: int) -> str:
    """SQLite's condition `lo <= column < hi`. Over more than a month it keeps SQLite from the column's index: a
    scan reads a large share of a table several times faster than index lookups in the order of the index."""
    name = f"+{column}" if days > 31 else column
    return f"{name} >= {literal(lo)} and {name} < {literal(hi)}"


def local_day(column: str, tz: tzinfo, start_at: int, end_at: int) -> str:
    """DuckDB's expression for the local date (in `tz`) of `column` (epoch seconds) for moments from `start_at` to
    `end_at`. A zone with one offset over that span (Moscow: +03:00 since 2014) gets integer arithmetic, several
    times faster over millions of rows than converting each moment through the zone's rules."""
    offsets = {_offset(tz, moment) for moment in range(start_at, end_at + DAY_SECONDS, DAY_SECONDS // 4)}
    if len(offsets) == 1:
        return f"(DATE '1970-01-01' + (({column} + {offsets.pop()}) // {DAY_SECONDS})::integer)"
    return f"timezone({literal(getattr(tz, 'key', None) or 'UTC')}, to_timestamp({column}))::date"


def _offset(tz: tzinfo, moment: int) -> int:
    offset = datetime.fromtimestamp(moment, timezone.utc).astimezone(tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def visit_text(epoch: int) -> str:
    """A moment as text that compares with the visits table's `at` (UTC ISO 8601): for a bound in SQLite SQL."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _alias(column: str) -> str:
    head, sep, alias = column.rpartition(" as ")
    return alias.strip() if sep else column


def _expression(column: str) -> str:
    head, sep, _ = column.rpartition(" as ")
    return head if sep else f'"{column}"'
