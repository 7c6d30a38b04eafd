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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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


@dataclass(frozen=True, slots=True)
class Read:
    """One table to read (see `Snapshot.read`) in parts read at once (`Snapshot.read_at_once`): each of `parts` is
    what follows WHERE for one part (rows no other part has; a GROUP BY may follow), all loaded into `name`."""

    name: str
    table: str
    columns: Mapping[str, str]
    parts: tuple[str, ...] = ("",)


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
        load = self._prepare(name, table, columns, where)
        if load is not None:
            self._load(self._cursor, self.duck, *load)
        self._tables.add(name)
        self.read_seconds += time.perf_counter() - started

    def read_at_once(self, reads: Sequence[Read]) -> None:
        """`read` each part of each of `reads` at the same time, each on a SQLite connection and a thread of its
        own: reading is most of a bulk pass's time, and one connection reads on one core. Unlike `read`, the parts
        are not of one moment of the store: each connection's read transaction begins as the others do, so a
        commit landing between them is seen by some. For a pass over whole tables that tolerates it (the
        segments' rescoring), not for a report's figures that must add up."""
        import adbc_driver_sqlite.dbapi as adbc

        started = time.perf_counter()
        jobs: list[tuple[str, str, str]] = []
        for read in reads:
            for where in read.parts:
                load = self._prepare(read.name, read.table, read.columns, where, create=where == read.parts[0])
                if load is not None:
                    jobs.append(load)
            self._tables.add(read.name)

        def run(job: tuple[str, str, str]) -> None:
            connection = adbc.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro")
            cursor, duck = connection.cursor(), self.duck.cursor()
            try:
                self._load(cursor, duck, *job)
            finally:
                cursor.close()
                connection.rollback()
                connection.close()
                duck.close()

        with ThreadPoolExecutor(len(jobs) or 1, thread_name_prefix="automator-read") as pool:
            list(pool.map(run, jobs))  # each job's exception, if any, raised here
        self.read_seconds += time.perf_counter() - started

    def rows_python(self, query: str) -> list[tuple[Any, ...]]:
        """A SQLite query's rows, read in this snapshot's transaction (small answers: a count, a few keys)."""
        return self._fetch_python(query)

    def _prepare(self, name: str, table: str, columns: Mapping[str, str], where: str,
                 create: bool = True) -> tuple[str, str, str] | None:
        """Make the DuckDB table `name` (unless not `create`); the SQLite query that reads it and DuckDB's columns
        restored from it (None: the store lacks `table`)."""
        names = [_alias(column) for column in columns]
        declared = ", ".join(f'"{n}" {TYPES[kind]}' for n, kind in zip(names, columns.values()))
        if create:
            self.duck.execute(f'create or replace table "{name}" ({declared})')
        if not self.has(table.split()[0]):  # "visits indexed by …" reads the table visits
            return None
        selected = ", ".join(f"coalesce({_expression(c)}, '') as \"{n}\"" if kind in ("text", "moment")
                             else f'{_expression(c)} as "{n}"'
                             for c, n, kind in zip(columns, names, columns.values()))
        # ::varchar: an empty result's columns come typed as integers (nothing to infer a type from)
        restored = ", ".join(f"nullif(\"{n}\"::varchar, '')" if kind == "text" else
                             f"epoch(cast(substr(nullif(\"{n}\"::varchar, ''), 1, 19) as timestamp))::bigint"
                             if kind == "moment" else f'"{n}"' for n, kind in zip(names, columns.values()))
        return f"select {selected} from {table}" + (f" where {where}" if where else ""), name, restored

    @staticmethod
    def _load(cursor: Any, duck: Any, sql: str, name: str, restored: str) -> None:
        # Batches of 64k rows, not ADBC's 1,024: a third less time per million rows read.
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
        cursor.execute(sql)
        stream = cursor.fetch_arrow()  # noqa: F841 (read by name in DuckDB's SQL below)
        duck.execute(f'insert into "{name}" select {restored} from stream')

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
