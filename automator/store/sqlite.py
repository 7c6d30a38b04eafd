"""SqliteStore over sqlite-utils: entities with their previous state, runs with traces, timers and effects."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

import sqlite_utils

from automator.model import Decision, Effect, Entity, EntityRef, Run, Timer, TraceStep

SCHEMA: dict[str, tuple[dict[str, Any], Any]] = {
    "entities": ({"kind": str, "id": str, "fields": str, "prev": str, "updated_at": str}, ("kind", "id")),
    "runs": ({"id": str, "rule_id": str, "rule_version": str, "key": str, "event_id": str, "status": str,
              "cursor": str, "vars": str, "entity": str, "trace": str, "started_at": str, "updated_at": str,
              "depth": int, "origin": str}, "id"),
    "timers": ({"id": str, "due_at": str, "kind": str, "rule_id": str, "key": str, "run_id": str,
                "payload": str}, "id"),
    "effects": ({"key": str, "run_id": str, "rule_id": str, "action": str, "connector": str, "params": str,
                 "delivery": str, "status": str, "at": str, "entity": str, "depth": int, "result": str}, "key"),
}
INDEXES = (("runs", ["key", "status"]), ("timers", ["due_at"]))


def utc(at: datetime) -> str:
    """A sortable text form of a moment: UTC, fixed width."""
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class SqliteStore:
    """The one store implementation: tests use it in memory, the daemon on disk."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.db = sqlite_utils.Database(memory=True) if str(path) == ":memory:" else sqlite_utils.Database(path)
        if str(path) != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        for table, (columns, pk) in SCHEMA.items():
            if not self.db[table].exists():
                self.db[table].create(columns, pk=pk)
        for table, cols in INDEXES:
            self.db[table].create_index(cols, if_not_exists=True)
        self._recency: dict[str, timedelta] | None = None

    # ---- Snapshot ----------------------------------------------------------------------------------
    def entity(self, ref: EntityRef) -> Entity | None:
        """The last known state of one entity."""
        row = self.db.conn.execute("select fields, updated_at from entities where kind = ? and id = ?",
                                   [ref.kind, ref.id]).fetchone()
        return Entity(ref, json.loads(row[0]), _time(row[1])) if row else None

    def entities(self, kind: str) -> Iterator[Entity]:
        """Every stored entity of a kind, by id."""
        for row in self.db.query("select id, fields, updated_at from entities where kind = ? order by id", [kind]):
            yield Entity(EntityRef(kind, row["id"]), json.loads(row["fields"]), _time(row["updated_at"]))

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

    def segment_recency(self) -> Mapping[str, timedelta]:
        """Average time between visits per segment, computed once per store change."""
        from automator.segments import average_recency

        if self._recency is None:
            self._recency = average_recency({**e.fields} for e in self.entities("client"))
        return self._recency

    # ---- writing -----------------------------------------------------------------------------------
    def put_entity(self, entity: Entity) -> None:
        """Store an entity's state, keeping the one it replaces as `prev`."""
        old = self.entity(entity.ref)
        self.db["entities"].upsert({"kind": entity.ref.kind, "id": entity.ref.id, "fields": _dump(entity.fields),
                                    "prev": _dump(old.fields if old else None),
                                    "updated_at": utc(entity.updated_at) if entity.updated_at else None},
                                   pk=("kind", "id"))
        self._recency = None

    def apply(self, decision: Decision) -> None:
        """Write one decision at once: entity, runs with traces, effects, timers set and cancelled."""
        with self.db.conn:
            if decision.entity_after is not None:
                self.put_entity(decision.entity_after)
            for run in decision.runs:
                self.db["runs"].upsert(_run_row(run, decision.event.at), pk="id")
            for effect in decision.effects:
                self.db["effects"].insert(_effect_row(effect), pk="key", ignore=True)
            for timer_id in decision.cancel_timers:
                self.db["timers"].delete_where("id = ?", [timer_id])
            for timer in decision.timers:
                self.put_timer(timer)

    def put_timer(self, timer: Timer) -> None:
        """Set (or move) a timer."""
        self.db["timers"].upsert({"id": timer.id, "due_at": utc(timer.due_at), "kind": timer.kind,
                                  "rule_id": timer.rule_id, "key": timer.key, "run_id": timer.run_id,
                                  "payload": _dump(dict(timer.payload))}, pk="id")

    def next_timer(self, until: datetime) -> Timer | None:
        """The earliest timer due at or before `until`."""
        rows = list(self.db.query("select * from timers where due_at <= ? order by due_at, id limit 1",
                                  [utc(until)]))
        return _timer(rows[0]) if rows else None

    def delete_timer(self, timer_id: str) -> None:
        """Remove a timer (it has fired)."""
        self.db["timers"].delete_where("id = ?", [timer_id])

    def settle(self, key: str, status: str, result: Mapping[str, Any] | None = None) -> None:
        """Record an effect's outcome."""
        self.db["effects"].update(key, {"status": status, "result": _dump(dict(result or {}))})

    # ---- reading back ------------------------------------------------------------------------------
    def timers(self) -> list[Timer]:
        """Every pending timer, soonest first."""
        return [_timer(r) for r in self.db.query("select * from timers order by due_at, id")]

    def runs(self, rule_id: str | None = None) -> list[Run]:
        """Runs, oldest first, optionally of one rule."""
        sql, args = "select * from runs", []
        if rule_id:
            sql, args = sql + " where rule_id = ?", [rule_id]
        return [_run(r) for r in self.db.query(sql + " order by started_at, id", args)]

    def effects(self) -> list[dict[str, Any]]:
        """Every effect recorded, in order."""
        return [{**r, "params": json.loads(r["params"])} for r in self.db.query("select * from effects order by rowid")]


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _run_row(run: Run, at: datetime) -> dict[str, Any]:
    return {"id": run.id, "rule_id": run.rule_id, "rule_version": run.rule_version, "key": run.key,
            "event_id": run.event_id, "status": run.status, "cursor": _dump(list(run.cursor)),
            "vars": _dump(dict(run.vars)), "entity": str(run.entity) if run.entity else None,
            "trace": _dump([t.to_json() for t in run.trace]),
            "started_at": utc(run.started_at) if run.started_at else utc(at), "updated_at": utc(at),
            "depth": run.depth, "origin": _dump(dict(run.origin))}


def _run(row: Mapping[str, Any]) -> Run:
    trace = tuple(TraceStep(path=t["path"], kind=t["kind"], detail=t.get("detail", ""), value=t.get("value"),
                            error=t.get("error"), at=_time(t.get("at"))) for t in json.loads(row["trace"] or "[]"))
    return Run(id=row["id"], rule_id=row["rule_id"], rule_version=row["rule_version"], key=row["key"],
               event_id=row["event_id"], status=row["status"], cursor=tuple(json.loads(row["cursor"] or "[]")),
               vars=json.loads(row["vars"] or "{}"),
               entity=EntityRef.parse(row["entity"]) if row["entity"] else None, trace=trace,
               started_at=_time(row["started_at"]), depth=row["depth"] or 0, origin=json.loads(row["origin"] or "{}"))


def _effect_row(effect: Effect) -> dict[str, Any]:
    return {"key": effect.key, "run_id": effect.run_id, "rule_id": effect.rule_id, "action": effect.action,
            "connector": effect.connector, "params": _dump(dict(effect.params)), "delivery": effect.delivery,
            "status": "pending", "at": utc(effect.at), "entity": str(effect.entity) if effect.entity else None,
            "depth": effect.depth, "result": None}


def _timer(row: Mapping[str, Any]) -> Timer:
    return Timer(id=row["id"], due_at=datetime.fromisoformat(row["due_at"]), kind=row["kind"],
                 rule_id=row["rule_id"], key=row["key"] or "", run_id=row["run_id"],
                 payload=json.loads(row["payload"] or "{}"))
