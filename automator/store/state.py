"""Entities, runs, timers, effects and named values as tables: the Snapshot reads, their batch forms, plain writes
and the operators' reads."""
from __future__ import annotations

from datetime import datetime, timedelta
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from automator.actions import linked_back
from automator.model import Decision, Entity, EntityRef, Event, Run, Timer
from automator.store.base import Writes
from automator.store.codec import (EFFECT_COLUMNS, RUN_COLUMNS, dump, load, run_of, time_of, timer_of, timer_row,
                                   utc, writes_of)
from automator.store.connection import Connection
from automator.store import facts as store_facts
from automator.store.ledger import INSERT_LEDGER
from automator.store.people import INSERT_VISIT

_INSERT_RUNS = f"insert or replace into runs ({', '.join(RUN_COLUMNS)}) values ({', '.join('?' * len(RUN_COLUMNS))})"
_INSERT_EFFECTS = (f"insert or ignore into effects ({', '.join(EFFECT_COLUMNS)}) values "
                   f"({', '.join('?' * len(EFFECT_COLUMNS))})")
_INSERT_TIMER = ("insert or replace into timers (id, due_at, kind, rule_id, key, run_id, payload) "
                 "values (?, ?, ?, ?, ?, ?, ?)")


class State:
    """What the rules read and leave behind, over one connection (part of SqliteStore)."""

    def __init__(self, connection: Connection) -> None:
        self.db = connection.db
        self.atomic = connection.atomic
        self._recency: dict[str, timedelta] | None = None

    # ---- Snapshot ----------------------------------------------------------------------------------
    def entity(self, ref: EntityRef) -> Entity | None:
        """The last known state of one entity."""
        row = self.db.conn.execute("select fields, updated_at from entities where kind = ? and id = ?",
                                   [ref.kind, ref.id]).fetchone()
        return Entity(ref, load(row[0]), time_of(row[1])) if row else None

    def entities(self, kind: str) -> Iterator[Entity]:
        """Every stored entity of a kind, by id."""
        for row in self.db.query("select id, fields, updated_at from entities where kind = ? order by id", [kind]):
            yield Entity(EntityRef(kind, row["id"]), load(row["fields"]), time_of(row["updated_at"]))

    def run(self, run_id: str) -> Run | None:
        """One run by id."""
        rows = list(self.db.query("select * from runs where id = ?", [run_id]))
        return run_of(rows[0]) if rows else None

    def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
        """Waiting or queued runs of a rule (or of every rule, given None) for one key, oldest first."""
        cursor = self.db.conn.execute("select * from runs where key = ? and (? is null or rule_id = ?) and status in "
                                      "('waiting', 'queued') order by started_at, id", [key, rule_id, rule_id])
        names = [c[0] for c in cursor.description]
        return [run_of(dict(zip(names, row))) for row in cursor]

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
                found = {ident: Entity(EntityRef(kind, ident), load(fields), time_of(at)) for ident, fields, at in rows}
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
                run = run_of(dict(zip(names, row)))
                out[run.key].append(run)
        return out

    def segment_recency(self) -> Mapping[str, timedelta]:
        """Average time between visits per segment, computed once per store change."""
        from automator.segments import average_recency

        if self._recency is None:
            self._recency = average_recency({**e.fields} for e in self.entities("client"))
        return self._recency

    def segment_cuts(self) -> Mapping[str, Any] | None:
        """The RFM cut points the last full rescoring kept in the meta (read each time: another process, the daemon
        or `automator segments compute`, may have written them since)."""
        from automator.segments import CUTS_META

        text = self.get_meta(CUTS_META)
        return load(text) if text else None

    def forget_recency(self) -> None:
        """Clients were written by another part (people.py's recomputation): work the recency out again."""
        self._recency = None

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

    def link_back(self, action: str, event: Event) -> None:
        """The stored records an action's answer says its new record belongs to learn it back (`actions.linked_back`:
        the booking a deal was created for gets its `deal`), unless they name one already; a record not stored is
        left alone. The daemon's settle and the simulator both link through here."""
        self.db.conn.executemany(
            "update entities set fields = json_set(fields, ?, ?) where kind = ? and id = ? and "
            "json_extract(fields, ?) is null",
            [[f"$.{field}", value, ref.kind, ref.id, f"$.{field}"] for ref, field, value in linked_back(action, event)])

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
            visits = [row for w in many for row in w.visits]
            if visits:
                conn.executemany(INSERT_VISIT, visits)
            ledger = [row for w in many for row in w.ledger]
            if ledger:
                conn.executemany(INSERT_LEDGER, ledger)
            facts = [w.facts for w in many if w.facts is not None]
            if facts:
                store_facts.write(conn, facts)
            for w in many:
                if w.cancel:
                    conn.executemany("delete from timers where id = ?", w.cancel)
                if w.timers:
                    conn.executemany(_INSERT_TIMER, w.timers)

    def put_timer(self, timer: Timer) -> None:
        """Set (or move) a timer."""
        self.db.conn.execute(_INSERT_TIMER, timer_row(timer))

    def next_timer(self, until: datetime) -> Timer | None:
        """The earliest timer due at or before `until`."""
        rows = list(self.db.query("select * from timers where due_at <= ? order by due_at, id limit 1",
                                  [utc(until)]))
        return timer_of(rows[0]) if rows else None

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        """Timers due at or before `now`, soonest first."""
        return [timer_of(r) for r in self.db.query("select * from timers where due_at <= ? order by due_at, id "
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
        return [timer_of(r) for r in self.db.query(sql, [limit] if limit else [])]

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
        return [run_of(r) for r in self.db.query(sql + " order by started_at, id", args)]

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
