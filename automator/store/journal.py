"""The journal: every accepted event in order, claimed with a lease, committed with its decision in one transaction."""
from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from datetime import datetime, timedelta
from collections.abc import Callable, Sequence
from typing import Any

from automator import identity
from automator.model import Decision, Entity, EntityRef, Event, same
from automator.store.base import Writes
from automator.store.codec import dump, load, utc, writes_of
from automator.store.connection import Connection
from automator.store.people import People
from automator.store.state import State

DEDUP_WINDOW = timedelta(minutes=10)


class _Known:
    """What matching an event to a person reads (`identity.Registry`): the people's links and the state's
    clients, in the journal's transaction."""

    def __init__(self, people: People, state: State) -> None:
        self.people, self.state = people, state

    def client_of(self, system: str, ext_id: str) -> str | None:
        return self.people.client_of(system, ext_id)

    def links_of(self, client: str) -> list[tuple[str, str]]:
        return self.people.links_of(client)

    def entity(self, ref: EntityRef) -> Entity | None:
        return self.state.entity(ref)


def worker_name() -> str:
    """`host:pid:nonce` — a claim names its owner, so a restarted daemon can tell its dead predecessor's claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def owner_is_gone(owner: str, me: str) -> bool:
    """True when a claim's owner is a process of this host that no longer runs (or an earlier life of us)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != me.partition(":")[0] or not pid_text.isdigit():
        return False  # another machine's claim: only its lease can free it
    if owner == me:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has died but not been reaped yet (an orphan waiting for init) still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def event_key(event: Event) -> str:
    """The ordering key: events of one key are decided one after another, in journal order."""
    if event.entity is not None:
        return str(event.entity)
    rule = event.data.get("rule") if event.type == "timer.fired" else None
    return f"rule:{rule}" if rule else f"event:{event.id}"


def event_body(event: Event) -> str:
    """An event as stored in the journal."""
    out = event.to_json()
    if event.delivery_id:  # the journal's own: to_json (what a rule's trace shows) leaves it out
        out["delivery_id"] = event.delivery_id
    return dump(out)


def event_from_body(body: str) -> Event:
    """The stored form back as an Event."""
    return Event.from_json(load(body))


class Journal:
    """Appending, claiming and committing journal events, over one connection (part of SqliteStore)."""

    def __init__(self, connection: Connection, state: State, people: People,
                 systems: frozenset[str] = frozenset()) -> None:
        self.db = connection.db
        self.atomic = connection.atomic
        self.durable = connection.durable
        # A decision's rows are written by the state's tables, in the transaction that marks its event done.
        self.write_all = state.write_all
        # An event from one of these connectors names its system's records: resolved to persons when journaled,
        # its links written by the people's table in the same transaction (see Store.set_systems).
        self.people = people
        self.known = _Known(people, state)
        self.systems = systems

    def resolve(self, event: Event, now: datetime, phone: str | None = None) -> Event:
        """The event naming persons, its links written (in the caller's transaction), when its source is one of
        `systems`; else as it is."""
        if event.source not in self.systems:
            return event
        resolved, links = identity.resolve(event, self.known, phone)
        for link in links:
            self.people.link(link.system, link.ext_id, link.client, now)
        # A client.* event carries the person's ids itself; a person another event linked keeps theirs current.
        reported = resolved.entity.id if resolved.entity is not None and resolved.entity.kind == "client" else None
        for client in {link.client for link in links if link.system != identity.PHONE} - {reported}:
            self.people.refresh_ids(client)
        return resolved

    def append(self, events: Sequence[Event], now: datetime, *,
               digests: Sequence[str | None] | None = None, window: timedelta = DEDUP_WINDOW,
               echoes: bool | None = None) -> list[bool]:
        """Journal events in one transaction; False for each one already journaled (a duplicate delivery).

        A duplicate is the same event id, the same (source, delivery_id), or the same `digest` (a hash of
        the request body) from the same source within `window`. Events echoing one of our own effects get
        the effect's chain depth and rule (see `expect_echo`).
        """
        with self.atomic(savepoint=False):
            # Events from outside (a webhook, a poll): their sender hears "accepted" once this is committed, so it
            # is on disk first. A decision, a claim, a settle are seen only through a later one that is.
            self.durable()
            return [e is not None for e in self.journal_events(events, now, digests=digests, window=window,
                                                               echoes=echoes)]

    def journal_events(self, events: Sequence[Event], now: datetime, *,
                digests: Sequence[str | None] | None = None, window: timedelta = DEDUP_WINDOW,
                echoes: bool | None = None, resolved: bool = False) -> list[Event | None]:
        """`append`, returning each event as journaled (resolved to persons, its echo and repeat recognised), None
        for a duplicate. `resolved`: the caller has resolved them already (`settle`, which expects their echoes
        on the persons first)."""
        out: list[Event | None] = []
        conn = self.db.conn
        since = utc(now - window)
        stamp = utc(now)

        def insert(event: Event, digest: str | None) -> bool:
            """Store its row, pending; False if an event with its id or its (source, delivery_id) is there."""
            return conn.execute(
                "insert or ignore into journal (id, key, type, at, source, delivery_id, digest, body, status, "
                "received_at) values (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                [event.id, event_key(event), event.type, utc(event.at), event.source, event.delivery_id,
                 digest, event_body(event), stamp]).rowcount == 1

        # Any echo expected at all? Looked up once (most of the time none is); a caller journaling many requests
        # in one transaction passes what it looked up (expecting_echoes).
        with self.atomic(savepoint=False):  # all or nothing with its caller's transaction
            for index, event in enumerate(events):
                digest = digests[index] if digests else None
                # Most events are stored as they came: no person to resolve, no echo expected, no effect named.
                # Nothing is then read or written for them before their row, and the unique indexes on the id and
                # on (source, delivery_id) tell a duplicate by refusing it: one statement, not two.
                as_is = digest is None and (resolved or event.source not in self.systems)
                if as_is and event.source not in ("timer", "engine"):
                    if event.caused_by:
                        as_is = False
                    elif event.entity is not None:
                        if echoes is None:
                            echoes = self.expecting_echoes(now)
                        as_is = not echoes
                if as_is:
                    out.append(event if insert(event, None) else None)
                    continue
                if event.delivery_id and conn.execute(
                        "select 1 from journal where source = ? and delivery_id = ?",
                        [event.source, event.delivery_id]).fetchone():
                    out.append(None)
                    continue
                if digest and conn.execute(
                        "select 1 from journal where source = ? and digest = ? and received_at >= ?",
                        [event.source, digest, since]).fetchone():
                    out.append(None)
                    continue
                if not resolved:
                    # Before its echo is looked for: an effect on a client expects its echo on the person.
                    event = self.resolve(event, now)
                if event.source not in ("timer", "engine"):
                    if event.caused_by and not event.echo_of:
                        event = self._own_effect(event)
                    elif event.entity is not None and not event.caused_by:
                        if echoes is None:
                            echoes = self.expecting_echoes(now)
                        if echoes:
                            event = self._recognise_echo(event, stamp)
                    if event.caused_by and event.entity is not None:
                        event = self._first_report(event, stamp)
                out.append(event if insert(event, digest) else None)
        return out

    def expecting_echoes(self, now: datetime) -> bool:
        """True when some effect's echo is still expected (see expect_echo)."""
        return self.db.conn.execute("select 1 from echoes where until >= ? limit 1", [utc(now)]).fetchone() is not None

    def _recognise_echo(self, event: Event, stamp: str) -> Event:
        rows = self.db.conn.execute("select fields, effect, rule_id, depth from echoes where entity = ? and "
                                    "until >= ?", [str(event.entity), stamp]).fetchall()
        for fields, effect, rule_id, depth in rows:
            expected = json.loads(fields)
            if all(k in event.data and same(event.data[k], v) for k, v in expected.items()):
                self.db.conn.execute("delete from echoes where entity = ? and effect = ?", [str(event.entity), effect])
                return replace(event, depth=max(event.depth, depth + 1), caused_by=effect, echo_of=rule_id)
        return event

    def _first_report(self, event: Event, stamp: str) -> Event:
        """The event, marked as repeating the earlier one when that one reported the same change of the same
        effect: whichever of the action's answer, the webhook and the poll comes first is the report, in every
        order they can arrive in."""
        change = f"{event.caused_by}|{event.type}|{event.entity}"
        conn = self.db.conn
        if conn.execute("insert or ignore into reports (change, event, at) values (?, ?, ?)",
                        [change, event.id, stamp]).rowcount:
            return event
        first = conn.execute("select event from reports where change = ?", [change]).fetchone()[0]
        return event if first == event.id else replace(event, repeats=first)

    def _own_effect(self, event: Event) -> Event:
        """An event the system says our effect caused (it carries the effect key): it takes the effect's rule and
        chain depth."""
        row = self.db.conn.execute("select rule_id, depth from effects where key = ?", [event.caused_by]).fetchone()
        if row is None:
            return event
        return replace(event, depth=max(event.depth, (row[1] or 0) + 1), echo_of=row[0])

    def expect_echo(self, entity: EntityRef, fields: dict[str, Any], effect: str, rule_id: str,
                    depth: int, until: datetime) -> None:
        """Remember a change our effect made, so the system's webhook that reports it back is known as ours."""
        self.db.conn.execute("insert or replace into echoes (entity, fields, effect, rule_id, depth, until) "
                             "values (?, ?, ?, ?, ?, ?)",
                             [str(entity), dump(fields), effect, rule_id, depth, utc(until)])

    def claim_events(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Event]:
        """Claim the oldest unprocessed events whose key no other live claim holds, in journal order."""
        with self.atomic():
            taken = self._pending(worker, now, limit)
            if taken:
                self.db.conn.executemany(
                    "update journal set status = 'claimed', claimed_by = ?, claimed_until = ? where seq = ?",
                    [[worker, utc(now + lease), seq] for seq, _ in taken])
        return [event_from_body(body) for _, body in taken]

    def pending_events(self, worker: str, now: datetime, limit: int) -> list[Event]:
        """The events claim_events would claim, read without claiming them (no write lock is taken): the worker
        decides them first and takes each one in the transaction that commits its decision (commit_pending)."""
        return [event_from_body(body) for _, body in self._pending(worker, now, limit)]

    def _pending(self, worker: str, now: datetime, limit: int) -> list[tuple[int, str]]:
        stamp = utc(now)
        held = {row[0] for row in self.db.conn.execute(
            "select distinct key from journal where status = 'claimed' and claimed_until >= ? and claimed_by != ?",
            [stamp, worker])}
        # Two index range scans (status, seq), each stopping at the limit, merged: with `status = 'pending'
        # or ...` SQLite read every pending event (body included) and sorted them, so a claim cost grew
        # with the backlog (bench/daemon_profile.py: 4.7 ms at 20,000 pending, 0.09 ms this way).
        rows = self.db.conn.execute(
            "select seq, key, body from (select seq, key, body from journal where status = 'pending' "
            "order by seq limit ?3) union all select seq, key, body from (select seq, key, body from journal "
            "where status = 'claimed' and (claimed_until < ?1 or claimed_by = ?2) order by seq limit ?3) "
            "order by seq limit ?3",
            [stamp, worker, limit + len(held) * 4]).fetchall()
        return [(seq, body) for seq, key, body in rows if key not in held][:limit]

    def commit(self, event: Event, decision: Decision, now: datetime) -> list[Event]:
        """Write a decision and mark its event done, atomically; journal the events it emits. Returns them."""
        emitted = self.commit_pending(event, decision, now, None)
        assert emitted is not None
        return emitted

    def commit_pending(self, event: Event, decision: Decision, now: datetime, worker: str | None,
                       writes: Writes | None = None) -> list[Event] | None:
        """commit(), if the event is still undecided and no other worker's live claim holds it (with `worker`);
        None, with nothing written, when it is not. `writes` are the decision's rows, when already built."""
        rows = writes if writes is not None else writes_of(decision)
        with self.atomic(savepoint=False):
            if not self._mark_done([(event, rows)], now, worker):
                return None
            return self._write_decisions([rows], now)

    def commit_all_pending(self, items: Sequence[tuple[Event, Decision, Writes]], now: datetime,
                           worker: str) -> list[Event] | None:
        """commit_pending() for many decisions at once, statement by statement over all of them (the batch holds
        the write lock for less time than event after event); None, with nothing written, unless every event is
        still pending (looked at before anything is written; the caller then goes event by event).

        A row that cannot be written (a bug) raises, and what was written stays in the caller's transaction: the
        caller undoes it whole. No savepoint is kept for that rare case: under one SQLite copies every page the
        batch changes into a temporary file, opened, written and deleted per batch (the engine's system calls
        per event at 500/s: see worker.process_batch)."""
        with self.atomic(savepoint=False):
            if not self._all_pending([e.id for e, _, _ in items], now, worker):
                return None
            self._mark_done([(e, w) for e, _, w in items], now, None)
            return self._write_decisions([w for _, _, w in items], now)

    def _all_pending(self, ids: list[str], now: datetime, worker: str) -> bool:
        """True when every one of these events is still pending, or claimed by `worker`, or its claim lapsed."""
        stamp = utc(now)
        found = 0
        for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters is 999 at least
            chunk = ids[start:start + 500]
            found += self.db.conn.execute(
                f"select count(*) from journal where id in ({', '.join('?' * len(chunk))}) and (status = 'pending' "
                "or (status = 'claimed' and (claimed_by = ? or claimed_until < ?)))", [*chunk, worker, stamp]
            ).fetchone()[0]
        return found == len(ids)

    def _mark_done(self, items: Sequence[tuple[Event, Writes]], now: datetime, worker: str | None
                   ) -> bool:
        """Mark the events done with their why-not reports; with `worker`, only those still pending and held by no
        other live claim. True when every one was marked."""
        stamp = utc(now)
        sql = ("update journal set status = 'done', done_at = ?, why_not = ?, claimed_by = null, "
               "claimed_until = null where id = ?")
        if worker is None:
            self.db.conn.executemany(sql, [[stamp, w.why_not, e.id] for e, w in items])
            return True
        sql += " and (status = 'pending' or (status = 'claimed' and (claimed_by = ? or claimed_until < ?)))"
        rows = [[stamp, w.why_not, e.id, worker, stamp] for e, w in items]
        return self.db.conn.executemany(sql, rows).rowcount == len(items)

    def _write_decisions(self, many: list[Writes], now: datetime) -> list[Event]:
        """Write decisions' rows and journal the events they emit; the ones journaled (not duplicates)."""
        self.write_all(many)
        events = [e for w in many for e in w.events]
        return [e for e, fresh in zip(events, self.append(events, now)) if fresh] if events else []

    def fail_event(self, event: Event, error: str, now: datetime) -> None:
        """Park an event the engine could not decide (a bug, not bad input): kept, visible, never retried blindly."""
        with self.atomic():
            self.db.conn.execute("update journal set status = 'failed', error = ?, done_at = ?, claimed_by = null "
                                 "where id = ?", [error, utc(now), event.id])

    def release_dead_claims(self, me: str, gone: Callable[[str, str], bool] = owner_is_gone) -> int:
        """At start-up: events claimed by a dead process of this host are pending again (they are decided anew)."""
        owners = [r[0] for r in self.db.conn.execute(
            "select distinct claimed_by from journal where status = 'claimed'")]
        dead = [o for o in owners if o and gone(o, me)]
        with self.atomic():
            count = 0
            for owner in dead:
                count += self.db.conn.execute("update journal set status = 'pending', claimed_by = null, "
                                              "claimed_until = null where status = 'claimed' and claimed_by = ?",
                                              [owner]).rowcount
        return count

    def journal_event(self, event_id: str) -> dict[str, Any] | None:
        """One journaled event with its status and why-not report."""
        rows = list(self.db.query("select * from journal where id = ?", [event_id]))
        if not rows:
            return None
        row = rows[0]
        return {**row, "body": json.loads(row["body"]), "why_not": json.loads(row["why_not"] or "[]")}

    def journal_lag(self, now: datetime) -> tuple[int, float]:
        """How many events wait to be decided, and the age in seconds of the oldest."""
        row = self.db.conn.execute("select count(*), min(received_at) from journal where status in "
                                   "('pending', 'claimed')").fetchone()
        if not row or not row[0]:
            return 0, 0.0
        return int(row[0]), max(0.0, (now - datetime.fromisoformat(row[1])).total_seconds())

    def prune(self, now: datetime, keep: timedelta) -> dict[str, int]:
        """Forget what is finished and older than `keep`: decided events, ended runs, settled effects, stale echoes."""
        cutoff = utc(now - keep)
        with self.atomic():
            conn = self.db.conn
            counts = {
                "journal": conn.execute("delete from journal where status = 'done' and done_at < ?", [cutoff]).rowcount,
                "runs": conn.execute("delete from runs where status not in ('waiting', 'queued') and updated_at < ?",
                                     [cutoff]).rowcount,
                "effects": conn.execute("delete from effects where status in ('done', 'dropped') and updated_at < ?",
                                        [cutoff]).rowcount,
                "echoes": conn.execute("delete from echoes where until < ?", [utc(now)]).rowcount,
                "reports": conn.execute("delete from reports where at < ?", [cutoff]).rowcount,
            }
        return counts
