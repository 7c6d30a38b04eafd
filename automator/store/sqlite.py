"""SqliteStore: the Store over one SQLite database, composed of its parts.

Each concern is a part over the same connection: the connection and its write lock (`connection.py`, `lock.py`),
the tables and their migrations (`schema.py`), the rows' codecs (`codec.py`), entities/runs/timers (`state.py`),
the journal (`journal.py`), the outbox (`outbox.py`) and people with their history (`people.py`). This class only
opens the database, migrates it, and hands each call to its part; the contract of every method is in
`store/base.py`.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlite_utils

from automator.loyalty.ledger import Entry
from automator.model import Decision, Effect, Entity, EntityRef, Event, Run, Timer, Visit
from automator.store import schema
from automator.store.backup import BackupReport, backup
from automator.store.base import STAGED_BATCH, Claimed, Released, Settlement, Store, Writes
from automator.store.connection import Connection
from automator.store.journal import DEDUP_WINDOW, Journal, owner_is_gone
from automator.store.ledger import Ledger
from automator.store.lock import FairLock
from automator.store.outbox import Outbox
from automator.store.people import People
from automator.store.state import State


class SqliteStore(Store):
    """The store the daemon, the CLI and the simulator use: in memory for tests, on disk for the daemon.

    `synchronous` is FULL by default for a file (an accepted event survives a power cut; group commit keeps
    it fast); NORMAL survives process crashes only. `fsync="observed"` (the daemon's): with FULL, only the commits
    seen outside the process are fsynced (see store/connection.py). `read_only` is an operator's look: no write lock, no
    migration; a database that lacks what this version reads is refused (OutdatedStore).
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "FULL", timeout: float = 30.0,
                 read_only: bool = False, systems: Iterable[str] = (), fsync: str = "every") -> None:
        self.connection = Connection(path, synchronous=synchronous, timeout=timeout, read_only=read_only,
                                     fsync=fsync)
        if read_only:
            schema.check(self.connection.db, self.connection.path)
        else:
            with self.connection.atomic():
                schema.migrate(self.connection.db)
        self.state = State(self.connection)
        self.people = People(self.connection)
        self.ledger = Ledger(self.connection)
        self.journal = Journal(self.connection, self.state, self.people, frozenset(systems))
        self.outbox = Outbox(self.connection, self.journal, self.state)

    # ---- the database and its transactions (connection.py) ---------------------------------------------
    @property
    def path(self) -> Path | None:
        return self.connection.path

    @property
    def db(self) -> sqlite_utils.Database:
        return self.connection.db

    @property
    def lock(self) -> FairLock | None:
        return self.connection.lock

    def atomic(self, *, savepoint: bool = True) -> AbstractContextManager[None]:
        return self.connection.atomic(savepoint=savepoint)

    def take_turn(self, *, wait: bool = True) -> bool:
        return self.connection.take_turn(wait=wait)

    def give_back_turn(self) -> None:
        self.connection.give_back_turn()

    def on_commit(self, callback: Callable[[], None]) -> None:
        self.connection.on_commit(callback)

    def close(self) -> None:
        self.connection.close()

    def backup(self, target: Path, *, force: bool = False) -> BackupReport:
        # A file is copied through a read-only connection of its own; a database in memory through this one.
        return backup(self.path if self.path is not None else self.connection.conn, target, force=force)

    # ---- Snapshot, plain writes, timers, reading back (state.py) ----------------------------------------
    def entity(self, ref: EntityRef) -> Entity | None:
        return self.state.entity(ref)

    def entities(self, kind: str) -> Iterator[Entity]:
        return self.state.entities(kind)

    def run(self, run_id: str) -> Run | None:
        return self.state.run(run_id)

    def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
        return self.state.active_runs(rule_id, key)

    def segment_recency(self) -> Mapping[str, timedelta]:
        return self.state.segment_recency()

    def segment_cuts(self) -> Mapping[str, Any] | None:
        return self.state.segment_cuts()

    # ---- people across systems and their history (people.py) -------------------------------------------
    def client_of(self, system: str, ext_id: str) -> str | None:
        return self.people.client_of(system, ext_id)

    def links_of(self, client: str) -> list[tuple[str, str]]:
        return self.people.links_of(client)

    def related(self, kind: str, client: str, limit: int | None = None) -> list[Entity]:
        return self.people.related(kind, client, limit)

    def bookings_starting(self, after: datetime, before: datetime, limit: int | None = None) -> list[Entity]:
        return self.people.bookings_starting(after, before, limit)

    def clients_with_phone(self, phone: str) -> list[Entity]:
        return self.people.clients_with_phone(phone)

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        return self.people.visits_of(client, since, limit)

    def has_visit(self, visit_id: str) -> bool:
        return self.people.has_visit(visit_id)

    def ledger_of(self, client: str) -> list[Entry]:
        return self.ledger.ledger_of(client)

    def stored_ledger_ids(self, ids: Collection[str]) -> set[str]:
        return self.ledger.stored_ledger_ids(ids)

    def put_ledger(self, entries: Iterable[Entry]) -> int:
        """Write ledger rows outside a decision (kept once by their ids); how many were new."""
        return self.ledger.put_ledger(entries)

    def link(self, system: str, ext_id: str, client: str, at: datetime) -> None:
        with self.atomic(savepoint=False):  # one statement: atomic alone, no savepoint's two more (an import links
            self.people.link(system, ext_id, client, at)  # a person per row)

    def put_visits(self, visits: Iterable[Visit]) -> int:
        with self.atomic():
            return self.people.put_visits(visits)

    def recompute_history(self, clients: Iterable[str], at: datetime) -> int:
        with self.atomic():
            written = self.people.recompute(clients, at)
        self.state.forget_recency()
        return written

    def stage_visits(self, rows: Iterable[Sequence[Any]]) -> None:
        self.people.stage_visits(rows)

    def put_staged_visits(self, at: datetime, *, batch: int = STAGED_BATCH,
                          progress: Callable[[int, int], None] = lambda new, clients: None) -> tuple[int, int]:
        stored = self.people.put_staged(at, batch, progress)
        self.state.forget_recency()
        return stored

    def refresh_ids(self, clients: Iterable[str]) -> None:
        clients = list(clients)
        if clients:  # most calls name none: no transaction for nothing
            with self.atomic(savepoint=False):
                for client in clients:
                    self.people.refresh_ids(client)

    def link_back(self, action: str, event: Event) -> None:
        with self.atomic(savepoint=False):
            self.state.link_back(action, event)

    def set_systems(self, systems: Iterable[str]) -> None:
        self.journal.systems = frozenset(systems)

    def resolve(self, event: Event, now: datetime, *, phone: str | None = None) -> Event:
        with self.atomic():
            return self.journal.resolve(event, now, phone)

    def entities_of(self, refs: Iterable[EntityRef]) -> dict[EntityRef, Entity | None]:
        return self.state.entities_of(refs)

    def active_runs_of(self, keys: Iterable[str]) -> dict[str, list[Run]]:
        return self.state.active_runs_of(keys)

    def put_entity(self, entity: Entity, old: Entity | None | bool = True) -> None:
        self.state.put_entity(entity, old)

    def apply(self, decision: Decision) -> None:
        self.state.apply(decision)

    def write(self, writes: Writes) -> None:
        self.state.write(writes)

    def write_all(self, many: list[Writes]) -> None:
        self.state.write_all(many)

    def record_effect(self, key: str, status: str, result: Mapping[str, Any] | None = None) -> None:
        self.state.record_effect(key, status, result)

    def get_meta(self, name: str) -> str | None:
        return self.state.get_meta(name)

    def set_meta(self, name: str, value: str) -> None:
        self.state.set_meta(name, value)

    def put_timer(self, timer: Timer) -> None:
        self.state.put_timer(timer)

    def delete_timer(self, timer_id: str) -> None:
        self.state.delete_timer(timer_id)

    def next_timer(self, until: datetime) -> Timer | None:
        return self.state.next_timer(until)

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        return self.state.due_timers(now, limit)

    def next_due(self) -> datetime | None:
        return self.state.next_due()

    def timers(self, limit: int | None = None) -> list[Timer]:
        return self.state.timers(limit)

    def count(self, table: str, where: str = "", args: list[Any] | None = None) -> int:
        return self.state.count(table, where, args)

    def runs(self, rule_id: str | None = None, *, entity: str | None = None, since: datetime | None = None,
             event_id: str | None = None, limit: int | None = None) -> list[Run]:
        return self.state.runs(rule_id, entity=entity, since=since, event_id=event_id, limit=limit)

    def effect_states(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        return self.state.effect_states(run_ids)

    def effects(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return self.state.effects(run_id)

    # ---- the journal (journal.py) -----------------------------------------------------------------------
    def append(self, events: Sequence[Event], now: datetime, *, digests: Sequence[str | None] | None = None,
               window: timedelta = DEDUP_WINDOW, echoes: bool | None = None) -> list[bool]:
        return self.journal.append(events, now, digests=digests, window=window, echoes=echoes)

    def journal_events(self, events: Sequence[Event], now: datetime, *, digests: Sequence[str | None] | None = None,
                       window: timedelta = DEDUP_WINDOW, echoes: bool | None = None) -> list[Event | None]:
        return self.journal.journal_events(events, now, digests=digests, window=window, echoes=echoes)

    def expecting_echoes(self, now: datetime) -> bool:
        return self.journal.expecting_echoes(now)

    def expect_echo(self, entity: EntityRef, fields: dict[str, Any], effect: str, rule_id: str, depth: int,
                    until: datetime) -> None:
        self.journal.expect_echo(entity, fields, effect, rule_id, depth, until)

    def claim_events(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Event]:
        return self.journal.claim_events(worker, now, limit, lease)

    def pending_events(self, worker: str, now: datetime, limit: int) -> list[Event]:
        return self.journal.pending_events(worker, now, limit)

    def commit(self, event: Event, decision: Decision, now: datetime) -> list[Event]:
        return self.journal.commit(event, decision, now)

    def commit_pending(self, event: Event, decision: Decision, now: datetime, worker: str | None,
                       writes: Writes | None = None) -> list[Event] | None:
        return self.journal.commit_pending(event, decision, now, worker, writes)

    def commit_all_pending(self, items: Sequence[tuple[Event, Decision, Writes]], now: datetime, worker: str
                           ) -> list[Event] | None:
        return self.journal.commit_all_pending(items, now, worker)

    def fail_event(self, event: Event, error: str, now: datetime) -> None:
        self.journal.fail_event(event, error, now)

    def release_dead_claims(self, me: str, gone: Callable[[str, str], bool] = owner_is_gone) -> int:
        return self.journal.release_dead_claims(me, gone)

    def journal_event(self, event_id: str) -> dict[str, Any] | None:
        return self.journal.journal_event(event_id)

    def journal_lag(self, now: datetime) -> tuple[int, float]:
        return self.journal.journal_lag(now)

    def prune(self, now: datetime, keep: timedelta) -> dict[str, int]:
        return self.journal.prune(now, keep)

    # ---- the outbox (outbox.py) ---------------------------------------------------------------------------
    def claim_effects(self, worker: str, now: datetime, limit: int, lease: timedelta,
                      connectors: Sequence[str] | None = None,
                      start: Callable[[Effect], bool] | None = None) -> list[Claimed]:
        return self.outbox.claim_effects(worker, now, limit, lease, connectors, start)

    def due_effects(self, now: datetime, limit: int, connectors: Sequence[str] | None = None,
                    skip: Collection[str] = ()) -> list[Claimed]:
        return self.outbox.due_effects(now, limit, connectors, skip)

    def claim_keys(self, worker: str, keys: Sequence[str], now: datetime, lease: timedelta, *,
                   started: bool) -> list[str]:
        return self.outbox.claim_keys(worker, keys, now, lease, started=started)

    def mark_started(self, keys: Sequence[str], now: datetime) -> None:
        self.outbox.mark_started(keys, now)

    def mark_interrupted(self, keys: Sequence[str]) -> None:
        self.outbox.mark_interrupted(keys)

    def settle(self, effect: Effect, outcome: Settlement, now: datetime) -> list[Event]:
        return self.outbox.settle(effect, outcome, now)

    def release_dead_effects(self, me: str, now: datetime, repeatable: frozenset[str] = frozenset(),
                             gone: Callable[[str, str], bool] = owner_is_gone) -> Released:
        return self.outbox.release_dead_effects(me, now, repeatable, gone)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.outbox.dead_letters()

    def replay(self, key: str, now: datetime) -> bool:
        return self.outbox.replay(key, now)

    def drop(self, key: str, now: datetime) -> bool:
        return self.outbox.drop(key, now)

    def next_effect_due(self, connectors: Sequence[str] | None = None,
                        after: datetime | None = None) -> datetime | None:
        return self.outbox.next_effect_due(connectors, after)
