"""SqliteStore over sqlite-utils: entities with their previous state, runs with traces, timers and effects.

The daemon's journal and outbox live in `journal.py` and `outbox.py` as parts of the same class: one store,
one database, one set of invariants. Every write goes through `atomic()`, which opens `BEGIN IMMEDIATE` (the
write lock is taken up front, so two writers never deadlock on an upgrade) and nests as savepoints.
"""
from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson
import sqlite_utils

from automator.model import Decision, Effect, Entity, EntityRef, Event, Run, Timer, TraceStep
from automator.store.journal import JournalMixin
from automator.store.outbox import OutboxMixin

SCHEMA: dict[str, tuple[dict[str, Any], Any]] = {
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


_UTC: dict[datetime, str] = {}


def utc(at: datetime) -> str:
    """A sortable text form of a moment: UTC, fixed width."""
    # A batch stamps the same few moments on every row it writes: each one's text is kept (bounded).
    text = _UTC.get(at)
    if text is None:
        if len(_UTC) >= 1024:
            _UTC.clear()
        text = _UTC[at] = (at if at.tzinfo is timezone.utc else at.astimezone(timezone.utc)).isoformat(
            timespec="microseconds")
    return text


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
# orjson writes what json does here (text as it is, unknown values as their str(), including datetimes and
# dataclasses), compactly and about eight times faster: every event, run, trace and effect is written as JSON.
_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dump(value: Any) -> str:
    """JSON as stored: readable text, anything unknown as its string."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON).decode()
    except (orjson.JSONEncodeError, TypeError):  # what orjson refuses (integers past 64 bits, NaN keys): json's way
        return _ENCODER.encode(value)


def load(text: str | bytes) -> Any:
    """JSON as stored, read back (json's reading for what orjson refuses, such as NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# A checkpoint copies each page changed since the last one back into the database, inside some writer's commit
# (with the write lock held). SQLite's default, every 1,000 pages (4 MB), copies the journal's and the runs' hot
# pages again and again; every 10,000 pages (a write-ahead log of up to 40 MB) copies them a tenth as often, and
# the daemon's commits took 0.9 ms instead of 1.3 ms on average (bench/daemon_throughput.py: +10 % events/s).
# Only with synchronous=FULL, where every commit has already flushed the log: with NORMAL a checkpoint first
# flushes all of it, and 40 MB at once made p99 acknowledgements at 500/s 27 ms instead of 8.
WAL_CHECKPOINT_PAGES = 10_000


class FairLock:
    """A lock handed to the longest waiter on release (FIFO): the threads writing one database take turns.

    SQLite's own busy handler makes a waiting writer sleep 1, 2, 5, 10, 15… ms between tries, so whichever writer
    happens to retry at the right moment wins: webhook acknowledgements then wait tens of milliseconds behind the
    worker (or the worker starves behind a flood of webhooks). Queueing here first makes the wait one transaction
    long at most. Across processes (the engine process, a CLI replaying a dead letter) the turn is taken with an
    advisory lock on a file beside the database, where the kernel wakes the next writer at once.
    """

    def __init__(self, file: Path | None = None) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._held = False
        self._fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o600) if file is not None else None
        # Seconds this process's writers spent waiting for the lock and holding it, in all (for /metrics): only
        # the holder adds to them.
        self.waited = 0.0
        self.held = 0.0
        self._since = 0.0

    def acquire(self, timeout: float) -> None:
        """Take the lock, after every thread that asked before; past `timeout` seconds, fail as SQLite would."""
        asked = time.perf_counter()
        gate: threading.Lock | None = None
        with self._mutex:
            if self._held or self._waiters:
                gate = threading.Lock()
                gate.acquire()
                self._waiters.append(gate)
            else:
                self._held = True
        if gate is not None and not gate.acquire(timeout=timeout):  # released by the holder: handed over
            with self._mutex:
                if gate in self._waiters:
                    self._waiters.remove(gate)
                    raise sqlite3.OperationalError("database is locked (a write of this process held it too long)")
            gate.acquire()  # handed over just as we gave up: it is ours
        if self._fd is not None:
            try:
                self._lock_file(timeout)
            except BaseException:
                self._hand_over()
                raise
        self._since = time.perf_counter()
        self.waited += self._since - asked

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it or waits for it, without waiting; True if taken."""
        with self._mutex:
            if self._held or self._waiters:
                return False
            self._held = True
        if self._fd is not None and not self._try_file():
            self._hand_over()
            return False
        self._since = time.perf_counter()
        return True

    def _try_file(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
            return True
        except BlockingIOError:
            return False

    def _lock_file(self, timeout: float) -> None:
        # Another process's turn: tried every 0.1 ms, then every 0.5 ms (SQLite's own handler waits 1, 2, 5, 10… ms), and
        # given up after `timeout` as SQLite would. The kernel frees the lock if its holder dies.
        deadline = time.monotonic() + timeout
        tries = 0
        while not self._try_file():
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked (another process held it too long)")
            tries += 1
            time.sleep(0.0001 if tries < 20 else 0.0005)  # most turns are short: look again soon, at first

    def release(self) -> None:
        """Hand the lock to the next waiter, or free it."""
        self.held += time.perf_counter() - self._since
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._hand_over()

    def _hand_over(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


_WRITE_LOCKS: dict[str, FairLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def write_lock(path: Path | None) -> FairLock | None:
    """The process's one write lock for a database file (None for an in-memory database: one connection)."""
    if path is None:
        return None
    key = str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        if key not in _WRITE_LOCKS:
            _WRITE_LOCKS[key] = FairLock(Path(key + "-lock"))
        return _WRITE_LOCKS[key]


class OutdatedStore(Exception):
    """A database opened read-only lacks tables or columns this version writes (or is no automator database)."""


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that can only read (`mode=ro`, `query_only`): no write lock is taken, ever."""
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=timeout,
                           check_same_thread=False)
    conn.execute("PRAGMA query_only=ON")
    return conn


class SqliteStore(JournalMixin, OutboxMixin):
    """The one store implementation: tests use it in memory, the daemon on disk.

    `synchronous` is FULL by default for a file (an accepted event survives a power cut; group commit keeps
    it fast); NORMAL survives process crashes only.
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "FULL", timeout: float = 30.0,
                 read_only: bool = False) -> None:
        memory = str(path) == ":memory:"
        # isolation_level=None: transactions are ours (atomic()), never sqlite3's implicit ones.
        if read_only:
            conn = _connect_read_only(Path(path), timeout)
        else:
            conn = sqlite3.connect(":memory:" if memory else str(path), isolation_level=None, timeout=timeout,
                                   check_same_thread=False)
        self.path = None if memory else Path(path)
        self.db = sqlite_utils.Database(conn)
        self._recency: dict[str, timedelta] | None = None
        self._depth = 0
        self._on_commit: list[Callable[[], None]] = []
        self._timeout = timeout
        self._turn_taken = False
        if read_only:
            # An operator's look: no write lock, no migration, so a daemon holding the lock never makes it wait
            # (WAL readers see the last commit while a writer writes).
            self._lock: FairLock | None = None
            self._check_schema()
            return
        if not memory:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            if synchronous.upper() in ("FULL", "EXTRA", "2", "3"):
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self._lock = write_lock(self.path)
        with self.atomic():
            self._migrate()

    def _check_schema(self) -> None:
        """Refuse, with what is missing, a database that lacks this version's tables or columns."""
        missing = []
        for table, (columns, _pk) in SCHEMA.items():
            have = {row[1] for row in self.db.conn.execute(f"pragma table_info({table})")}
            lacking = [name for name in columns if name not in have]
            if not have:
                missing.append(f"the table {table}")
            elif lacking:
                missing.append(f"{table}.{', '.join(lacking)}")
        if missing:
            raise OutdatedStore(f"the database at {self.path} is not one this version of automator has written "
                                f"(it lacks {'; '.join(missing)}): `automator run` upgrades it when it starts")

    def _migrate(self) -> None:
        for table, (columns, pk) in SCHEMA.items():
            if not self.db[table].exists():
                self.db[table].create(columns, pk=pk)
            else:
                existing = set(self.db[table].columns_dict)
                for name, kind in columns.items():
                    if name not in existing:
                        self.db[table].add_column(name, kind)
                        if (table, name) == ("effects", "started_at"):
                            # Claimed by a version that did not record starts: their calls may have begun.
                            self.db.conn.execute("update effects set started_at = updated_at where status = 'running'")
        for table, cols, unique in INDEXES:
            self.db[table].create_index(cols, if_not_exists=True, unique=unique)

    @contextlib.contextmanager
    def atomic(self, *, savepoint: bool = True) -> Iterator[None]:
        """One transaction (BEGIN IMMEDIATE); nested calls join it through savepoints. With `savepoint=False`
        a nested call joins it as it is: a failure inside is undone by whichever enclosing level undoes it
        (for writes that are never undone alone; a savepoint is two statements more per call)."""
        conn = self.db.conn
        if self._depth and not savepoint:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        if self._depth:
            self._depth += 1
            name = f"sp{self._depth}"
            mark = len(self._on_commit)
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                del self._on_commit[mark:]  # what it undoes will never be committed
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            else:
                conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        lock = self._lock
        if lock is not None and not self._turn_taken:
            lock.acquire(self._timeout)
        self._turn_taken = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._on_commit.clear()
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._depth = 0
        finally:
            if lock is not None:
                lock.release()
        callbacks, self._on_commit = self._on_commit, []
        for callback in callbacks:
            callback()

    @property
    def lock(self) -> FairLock | None:
        """The process's write lock of this database (None in memory), shared by all its connections."""
        return self._lock

    def take_turn(self, *, wait: bool = True) -> bool:
        """Take this connection's turn at the write lock (waiting for it, or only if it is free at once: True if
        taken); the next `atomic()` uses it and frees it when done.

        Lets a caller wait for the turn on one thread and write on another: the daemon's first process waits on a
        helper thread and writes on its event loop's thread, so that the lock is never held while the writer waits
        for the interpreter lock."""
        if self._lock is None or self._turn_taken:
            return True
        if wait:
            self._lock.acquire(self._timeout)
        elif not self._lock.try_acquire():
            return False
        self._turn_taken = True
        return True

    def give_back_turn(self) -> None:
        """Free a turn taken with `take_turn` that no transaction will use."""
        if self._turn_taken:
            self._turn_taken = False
            if self._lock is not None:
                self._lock.release()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the transaction under way is committed (at once outside one); never if it is
        rolled back."""
        if self._depth:
            self._on_commit.append(callback)
        else:
            callback()

    def close(self) -> None:
        """Close the connection."""
        self.db.conn.close()

    # ---- Snapshot ----------------------------------------------------------------------------------
    def entity(self, ref: EntityRef) -> Entity | None:
        """The last known state of one entity."""
        row = self.db.conn.execute("select fields, updated_at from entities where kind = ? and id = ?",
                                   [ref.kind, ref.id]).fetchone()
        return Entity(ref, load(row[0]), _time(row[1])) if row else None

    def entities(self, kind: str) -> Iterator[Entity]:
        """Every stored entity of a kind, by id."""
        for row in self.db.query("select id, fields, updated_at from entities where kind = ? order by id", [kind]):
            yield Entity(EntityRef(kind, row["id"]), load(row["fields"]), _time(row["updated_at"]))

    def run(self, run_id: str) -> Run | None:
        """One run by id."""
        rows = list(self.db.query("select * from runs where id = ?", [run_id]))
        return _run(rows[0]) if rows else None

    def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
        """Waiting or queued runs of a rule (or of every rule, given None) for one key, oldest first."""
        cursor = self.db.conn.execute("select * from runs where key = ? and (? is null or rule_id = ?) and status in "
                                      "('waiting', 'queued') order by started_at, id", [key, rule_id, rule_id])
        names = [c[0] for c in cursor.description]
        return [_run(dict(zip(names, row))) for row in cursor]

    def entities_of(self, refs: Iterable[EntityRef]) -> dict[EntityRef, Entity | None]:
        """Many entities in one query per kind: each ref with its state, or None when none is stored."""
        by_kind: dict[str, list[str]] = {}
        for ref in refs:
            by_kind.setdefault(ref.kind, []).append(ref.id)
        out: dict[EntityRef, Entity | None] = {}
        for kind, ids in by_kind.items():
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), 500):  # SQLite's limit on bound parameters is 999 at least
                chunk = unique[start:start + 500]
                rows = self.db.conn.execute(
                    f"select id, fields, updated_at from entities where kind = ? and id in ({', '.join('?' * len(chunk))})",
                    [kind, *chunk]).fetchall()
                found = {ident: Entity(EntityRef(kind, ident), load(fields), _time(at)) for ident, fields, at in rows}
                out.update((EntityRef(kind, ident), found.get(ident)) for ident in chunk)
        return out

    def active_runs_of(self, keys: Iterable[str]) -> dict[str, list[Run]]:
        """active_runs(None, key) for many keys in one query."""
        unique = list(dict.fromkeys(keys))
        out: dict[str, list[Run]] = {key: [] for key in unique}
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            cursor = self.db.conn.execute(
                f"select * from runs where key in ({', '.join('?' * len(chunk))}) and status in ('waiting', 'queued') "
                "order by started_at, id", chunk)
            names = [c[0] for c in cursor.description]
            for row in cursor:
                run = _run(dict(zip(names, row)))
                out[run.key].append(run)
        return out

    def segment_recency(self) -> Mapping[str, timedelta]:
        """Average time between visits per segment, computed once per store change."""
        from automator.segments import average_recency

        if self._recency is None:
            self._recency = average_recency({**e.fields} for e in self.entities("client"))
        return self._recency

    # ---- writing -----------------------------------------------------------------------------------
    def put_entity(self, entity: Entity, old: Entity | None | bool = True) -> None:
        """Store an entity's state, keeping the one it replaces as `prev` (read first, unless the caller knows
        it and passes it as `old`)."""
        if old is True:
            old = self.entity(entity.ref)
        self.db.conn.execute(
            "insert or replace into entities (kind, id, fields, prev, updated_at) values (?, ?, ?, ?, ?)",
            [entity.ref.kind, entity.ref.id, dump(entity.fields), dump(old.fields if old else None),
             utc(entity.updated_at) if entity.updated_at else None])
        if entity.ref.kind == "client":
            self._recency = None

    def apply(self, decision: Decision) -> None:
        """Write one decision at once: entity, runs with traces, effects, timers set and cancelled."""
        self.write(writes_of(decision))

    def write(self, writes: Writes) -> None:
        """Write a decision's rows (see Writes)."""
        self.write_all([writes])

    def write_all(self, many: list[Writes]) -> None:
        """Write many decisions' rows, in their order, each table's rows in one statement (timers one decision
        after the other: one may cancel what the one before it set)."""
        with self.atomic(savepoint=False):
            conn = self.db.conn
            entities = [w.entity for w in many if w.entity is not None]
            if entities:
                conn.executemany("insert or replace into entities (kind, id, fields, prev, updated_at) values "
                                 "(?, ?, ?, ?, ?)", entities)
                if any(e[0] == "client" for e in entities):
                    self._recency = None
            runs = [row for w in many for row in w.runs]
            if runs:
                conn.executemany(_INSERT_RUNS, runs)
            effects = [row for w in many for row in w.effects]
            if effects:
                conn.executemany(_INSERT_EFFECTS, effects)
            for w in many:
                if w.cancel:
                    conn.executemany("delete from timers where id = ?", w.cancel)
                if w.timers:
                    conn.executemany(_INSERT_TIMER, w.timers)

    def put_timer(self, timer: Timer) -> None:
        """Set (or move) a timer."""
        self.db.conn.execute(_INSERT_TIMER, _timer_row(timer))

    def next_timer(self, until: datetime) -> Timer | None:
        """The earliest timer due at or before `until`."""
        rows = list(self.db.query("select * from timers where due_at <= ? order by due_at, id limit 1",
                                  [utc(until)]))
        return _timer(rows[0]) if rows else None

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        """Timers due at or before `now`, soonest first."""
        return [_timer(r) for r in self.db.query("select * from timers where due_at <= ? order by due_at, id "
                                                 "limit ?", [utc(now), limit])]

    def next_due(self) -> datetime | None:
        """When the earliest timer is due: how long the timer loop may sleep."""
        row = self.db.conn.execute("select min(due_at) from timers").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def delete_timer(self, timer_id: str) -> None:
        """Remove a timer (it has fired)."""
        self.db.conn.execute("delete from timers where id = ?", [timer_id])

    def record_effect(self, key: str, status: str, result: Mapping[str, Any] | None = None) -> None:
        """Record an effect's outcome (the simulator's short path; the daemon settles through the outbox)."""
        self.db.conn.execute("update effects set status = ?, result = ? where key = ?",
                             [status, dump(dict(result or {})), key])

    def get_meta(self, name: str) -> str | None:
        """A small named value the daemon keeps (its rule version, a connector's last poll)."""
        row = self.db.conn.execute("select value from meta where name = ?", [name]).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        """Set a named value."""
        self.db.conn.execute("insert or replace into meta (name, value) values (?, ?)", [name, value])

    # ---- reading back ------------------------------------------------------------------------------
    def timers(self, limit: int | None = None) -> list[Timer]:
        """Pending timers, soonest first."""
        sql = "select * from timers order by due_at, id" + (" limit ?" if limit else "")
        return [_timer(r) for r in self.db.query(sql, [limit] if limit else [])]

    def count(self, table: str, where: str = "", args: list[Any] | None = None) -> int:
        """How many rows of a table match."""
        sql = f"select count(*) from {table}" + (f" where {where}" if where else "")
        return int(self.db.conn.execute(sql, args or []).fetchone()[0])

    def runs(self, rule_id: str | None = None, *, entity: str | None = None, since: datetime | None = None,
             event_id: str | None = None, limit: int | None = None) -> list[Run]:
        """Runs, oldest first, filtered by rule, entity (`kind:id`), start time or triggering event."""
        clauses, args = [], []
        for column, value in (("rule_id", rule_id), ("entity", entity), ("event_id", event_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            clauses.append("started_at >= ?")
            args.append(utc(since))
        sql = "select * from runs" + (" where " + " and ".join(clauses) if clauses else "")
        if limit:
            sql = f"select * from ({sql} order by started_at desc, id desc limit {int(limit)})"
        return [_run(r) for r in self.db.query(sql + " order by started_at, id", args)]

    def effect_states(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """For each of these runs that has effects, how many are in each state (`{"done": 1, "dead": 1}`)."""
        unique = list(dict.fromkeys(run_ids))
        out: dict[str, dict[str, int]] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            for run_id, state, count in self.db.conn.execute(
                    f"select run_id, status, count(*) from effects where run_id in ({', '.join('?' * len(chunk))}) "
                    "group by run_id, status", chunk):
                out.setdefault(run_id, {})[state] = count
        return out

    def effects(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Effects recorded, in order, optionally of one run."""
        sql, args = "select * from effects", []
        if run_id:
            sql, args = sql + " where run_id = ?", [run_id]
        return [{**r, "params": load(r["params"])} for r in self.db.query(sql + " order by rowid", args)]


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


RUN_COLUMNS = tuple(SCHEMA["runs"][0])
EFFECT_COLUMNS = tuple(SCHEMA["effects"][0])


_INSERT_RUNS = f"insert or replace into runs ({', '.join(RUN_COLUMNS)}) values ({', '.join('?' * len(RUN_COLUMNS))})"
_INSERT_EFFECTS = (f"insert or ignore into effects ({', '.join(EFFECT_COLUMNS)}) values "
                   f"({', '.join('?' * len(EFFECT_COLUMNS))})")
_INSERT_TIMER = ("insert or replace into timers (id, due_at, kind, rule_id, key, run_id, payload) "
                 "values (?, ?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class Writes:
    """One decision as the rows it writes. The JSON and the row building are done by writes_of() before the
    write lock is taken (the worker builds them while deciding), so that the lock is held for the statements only."""

    event_id: str
    why_not: str  # the journal's why-not report
    entity: list[Any] | None  # kind, id, fields, prev, updated_at
    runs: list[list[Any]]
    effects: list[list[Any]]
    cancel: list[list[str]]
    timers: list[list[Any]]
    events: tuple[Event, ...]  # emitted: journaled with the decision


def writes_of(decision: Decision) -> Writes:
    """The rows of one decision (pure)."""
    after, before = decision.entity_after, decision.entity_before
    entity = None
    if after is not None:
        # The state it was decided on is the stored one (the worker stages a batch in journal order): `prev`.
        entity = [after.ref.kind, after.ref.id, dump(after.fields), dump(before.fields if before else None),
                  utc(after.updated_at) if after.updated_at else None]
    at = decision.event.at
    runs = [[row[c] for c in RUN_COLUMNS] for row in (_run_row(run, at) for run in decision.runs)]
    effects = [[row[c] for c in EFFECT_COLUMNS] for row in (_effect_row(e) for e in decision.effects)]
    why = [{"rule": w.rule_id, "reason": w.reason, "conditions": [list(c) for c in w.conditions]}
           for w in decision.why_not]
    return Writes(event_id=decision.event.id, why_not=dump(why), entity=entity, runs=runs, effects=effects,
                  cancel=[[t] for t in decision.cancel_timers], timers=[_timer_row(t) for t in decision.timers],
                  events=decision.events)


def _timer_row(timer: Timer) -> list[Any]:
    return [timer.id, utc(timer.due_at), timer.kind, timer.rule_id, timer.key, timer.run_id,
            dump(dict(timer.payload))]


_RESUMABLE = ("waiting", "queued", "running")


def _run_row(run: Run, at: datetime) -> dict[str, Any]:
    return {"id": run.id, "rule_id": run.rule_id, "rule_version": run.rule_version, "key": run.key,
            "event_id": run.event_id, "status": run.status, "cursor": dump(list(run.cursor)),
            "vars": dump(dict(run.vars)), "entity": str(run.entity) if run.entity else None,
            "trace": dump([t.to_json() for t in run.trace]),
            "started_at": utc(run.started_at) if run.started_at else utc(at), "updated_at": utc(at),
            # The event that started a run is kept while the run may go on (it is its scope when resumed); a
            # finished run names it by event_id, and the journal has it: not written twice per event.
            "depth": run.depth, "origin": dump(dict(run.origin)) if run.status in _RESUMABLE else "{}"}


def _run(row: Mapping[str, Any]) -> Run:
    trace = tuple(TraceStep(path=t["path"], kind=t["kind"], detail=t.get("detail", ""), value=t.get("value"),
                            error=t.get("error"), at=_time(t.get("at"))) for t in load(row["trace"] or "[]"))
    return Run(id=row["id"], rule_id=row["rule_id"], rule_version=row["rule_version"], key=row["key"],
               event_id=row["event_id"], status=row["status"], cursor=tuple(load(row["cursor"] or "[]")),
               vars=load(row["vars"] or "{}"),
               entity=EntityRef.parse(row["entity"]) if row["entity"] else None, trace=trace,
               started_at=_time(row["started_at"]), depth=row["depth"] or 0, origin=load(row["origin"] or "{}"))


def _effect_row(effect: Effect) -> dict[str, Any]:
    from automator.model import ENGINE

    # Engine effects (segment.recompute) were performed inside the core: they are recorded as done.
    status = "done" if effect.connector == ENGINE else "pending"
    return {"key": effect.key, "run_id": effect.run_id, "rule_id": effect.rule_id, "action": effect.action,
            "connector": effect.connector, "params": dump(dict(effect.params)), "delivery": effect.delivery,
            "status": status, "at": utc(effect.at), "entity": str(effect.entity) if effect.entity else None,
            "depth": effect.depth, "result": None, "attempts": 0, "next_try_at": utc(effect.at),
            "claimed_by": None, "claimed_until": None, "error": None, "updated_at": utc(effect.at),
            "started_at": None, "interrupted": 0, "tries": None}


def _timer(row: Mapping[str, Any]) -> Timer:
    return Timer(id=row["id"], due_at=datetime.fromisoformat(row["due_at"]), kind=row["kind"],
                 rule_id=row["rule_id"], key=row["key"] or "", run_id=row["run_id"],
                 payload=load(row["payload"] or "{}"))
