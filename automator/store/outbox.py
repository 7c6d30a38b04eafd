"""The outbox: effects claimed with a lease, settled atomically with the events they cause; dead letters."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from collections.abc import Callable, Collection, Sequence
from typing import Any

from automator.actions import answered
from automator.identity import sent_phone
from automator.model import Effect, Event
from automator.store.base import Claimed, Released, Settlement
from automator.store.codec import dump, effect_of, utc
from automator.store.connection import Connection
from automator.store.journal import Journal, owner_is_gone
from automator.store.state import State

PARKED = ("dead", "uncertain")  # what `automator dead` lists
ECHO_WINDOW = timedelta(minutes=10)
# Every try is kept for `explain`: appended to the effect's `tries` (a JSON list) in the statement that settles it,
# so the history costs no statement of its own. A replay appends the parked state it ends (its error, which the
# replay clears), and the tries after it count from 1 again.
_ONE_MORE_TRY = ("json_insert(coalesce(tries, '[]'), '$[#]', "
                 "json_object('try', attempts, 'at', ?, 'status', ?, 'error', ?))")
_REPLAYED = ("json_insert(coalesce(tries, '[]'), '$[#]', "
             "json_object('replayed', ?, 'status', status, 'error', error))")


class Outbox:
    """Claiming, settling and parking effects, over one connection (part of SqliteStore)."""

    def __init__(self, connection: Connection, journal: Journal, state: State) -> None:
        self.db = connection.db
        self.atomic = connection.atomic
        self.durable = connection.durable
        self.link_back = state.link_back
        # A settled effect's events are journaled, and their echoes expected, in the transaction that settles it.
        self.journal_events = journal.journal_events
        self.expect_echo = journal.expect_echo
        self.resolve = journal.resolve

    def claim_effects(self, worker: str, now: datetime, limit: int, lease: timedelta,
                      connectors: Sequence[str] | None = None,
                      start: Callable[[Effect], bool] | None = None) -> list[Claimed]:
        """Take up to `limit` effects that are due, oldest first, marking them running under `worker`'s lease.

        `start` says which of them are marked started in this same transaction (the daemon: those whose call is a
        write into this store). The others are claimed only, and marked started by `mark_started` just before
        their call may reach the system, so that a crash before then leaves them to be performed, not parked as
        uncertain."""
        with self.atomic(savepoint=False):
            claimed = [replace(c, started=start is not None and start(c.effect))
                       for c in self.due_effects(now, limit, connectors)]
            if claimed:
                self.db.conn.executemany(
                    "update effects set status = 'running', attempts = attempts + 1, claimed_by = ?, "
                    "claimed_until = ?, updated_at = ?, started_at = ? where key = ?",
                    [[worker, utc(now + lease), utc(now), utc(now) if c.started else None, c.effect.key]
                     for c in claimed])
        return claimed

    def due_effects(self, now: datetime, limit: int, connectors: Sequence[str] | None = None,
                    skip: Collection[str] = ()) -> list[Claimed]:
        """Up to `limit` effects that are due (of `connectors`, when given; none of `skip`), oldest first, as their
        next try would be (attempts counted, not started); read only: `claim_keys` takes them."""
        only = ""
        args: list[Any] = [utc(now)]
        if connectors is not None:
            if not connectors:
                return []
            only = f" and connector in ({', '.join('?' * len(connectors))})"
            args.extend(connectors)
        cursor = self.db.conn.execute(
            "select * from effects where status in ('pending', 'retry') and next_try_at <= ?"
            f"{only} order by next_try_at, rowid limit ?", [*args, limit + len(skip)])
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor]  # sqlite-utils' query() would add a savepoint
        return [Claimed(e, (r["attempts"] or 0) + 1, False, bool(r["interrupted"]))
                for r, e in ((r, effect_of(r)) for r in rows if r["key"] not in skip)][:limit]

    def claim_keys(self, worker: str, keys: Sequence[str], now: datetime, lease: timedelta, *,
                   started: bool) -> list[str]:
        """Take these effects, if they still wait (pending or retry), running under `worker`'s lease with one
        more attempt, marked started when `started` (their call begins once this commits); the keys taken."""
        stamp = utc(now)
        taken = []
        with self.atomic(savepoint=False):
            for key in keys:
                cursor = self.db.conn.execute(
                    "update effects set status = 'running', attempts = attempts + 1, claimed_by = ?, "
                    "claimed_until = ?, updated_at = ? where key = ? and status in ('pending', 'retry')",
                    [worker, utc(now + lease), stamp, key])
                if cursor.rowcount == 1:
                    taken.append(key)
            if started and taken:
                self.mark_started(taken, now)  # the one way a call is marked begun, whatever that takes
        return taken

    def mark_started(self, keys: Sequence[str], now: datetime) -> None:
        """The calls of these claimed effects are about to begin: committed before they do, so that recovery
        knows they may have been performed."""
        stamp = utc(now)
        with self.atomic(savepoint=False):
            self.durable()  # the call's first byte follows: a power cut must not unsay that it may have begun
            self.db.conn.executemany("update effects set started_at = ? where key = ? and status = 'running'",
                                     [[stamp, key] for key in keys])

    def mark_interrupted(self, keys: Sequence[str]) -> None:
        """Tries of these effects may have been performed without an answer: every later try looks first."""
        with self.atomic(savepoint=False):
            self.db.conn.executemany("update effects set interrupted = 1 where key = ?", [[key] for key in keys])

    def settle(self, effect: Effect, outcome: Settlement, now: datetime) -> list[Event]:
        """Record a try's outcome; on success journal the events the system sends back. Returns them."""
        with self.atomic(savepoint=False):
            stamp = utc(now)
            self.db.conn.execute(
                "update effects set status = ?, result = ?, error = ?, next_try_at = ?, claimed_by = null, "
                f"claimed_until = null, updated_at = ?, tries = {_ONE_MORE_TRY} where key = ?",
                [outcome.status, dump(dict(outcome.result)) if outcome.result else None, outcome.error,
                 utc(outcome.next_try_at or now), stamp, stamp, outcome.status, outcome.error, effect.key])
            if outcome.status != "done":
                return []
            # The answer names the system's records: resolved to persons first (the record the system found or
            # made by the phone we sent is that person's), so that the echoes below are expected on them.
            phone = sent_phone(effect.params)
            caused = [self.resolve(answered(effect.action, effect.params, replace(
                e, depth=effect.depth + 1, caused_by=effect.key, echo_of=effect.rule_id)), now, phone)
                for e in outcome.events]
            for event in caused:
                self.link_back(effect.action, event)  # the booking learns its new deal
                if event.entity is not None and event.data:
                    # The real system reports our change back by webhook: know that echo when it comes.
                    self.expect_echo(event.entity, dict(event.data), effect.key, effect.rule_id, effect.depth,
                                     now + ECHO_WINDOW)
            fresh = self.journal_events(caused, now, resolved=True) if caused else []
        return [e for e in fresh if e is not None]

    def release_dead_effects(self, me: str, now: datetime, repeatable: frozenset[str] = frozenset(),
                             gone: Callable[[str, str], bool] = owner_is_gone) -> Released:
        """Effects left running by a dead process (or past their lease). One whose call never began (claimed,
        not started) goes back to the outbox as if that try had not been made, and is performed. One whose call
        may have begun follows its delivery policy: at_least_once ones are tried again (looking first for what
        the interrupted try made), at_most_once ones become `uncertain` — the call may have happened, so they
        wait for an operator — unless their connector is in `repeatable` (it deduplicates by the effect key)."""
        stamp = utc(now)
        rows = [row for row in self.db.conn.execute(
            "select key, delivery, connector, claimed_by, claimed_until, started_at from effects "
            "where status = 'running'") if (row[3] and gone(row[3], me)) or (row[4] and row[4] < stamp)]
        retried = parked = unstarted = 0
        if not rows:  # the usual case, looked at every 30 s: no turn at the write lock for nothing
            return Released(0, 0, 0)
        with self.atomic():
            for key, delivery, connector, owner, until, started in rows:
                if started is None:
                    unstarted += 1
                    self.db.conn.execute(
                        "update effects set status = case when attempts > 1 then 'retry' else 'pending' end, "
                        "attempts = max(attempts - 1, 0), next_try_at = ?, claimed_by = null, claimed_until = null, "
                        "updated_at = ? where key = ?", [stamp, stamp, key])
                elif delivery == "at_most_once" and connector not in repeatable:
                    parked += 1
                    self.db.conn.execute(
                        "update effects set status = 'uncertain', interrupted = 1, claimed_by = null, "
                        "claimed_until = null, error = coalesce(error, '') || ?, updated_at = ? where key = ?",
                        [f"interrupted during the call (begun at {started}): it may or may not have been performed",
                         stamp, key])
                else:
                    retried += 1
                    self.db.conn.execute("update effects set status = 'retry', interrupted = 1, next_try_at = ?, "
                                         "claimed_by = null, claimed_until = null, updated_at = ? where key = ?",
                                         [stamp, stamp, key])
        return Released(retried, parked, unstarted)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Effects parked for an operator: dead (gave up) and uncertain (maybe performed), oldest first."""
        return [{**r, "params": json.loads(r["params"])} for r in self.db.query(
            f"select * from effects where status in ({', '.join('?' * len(PARKED))}) order by updated_at, key",
            list(PARKED))]

    def replay(self, key: str, now: datetime) -> bool:
        """Put a parked effect back in the outbox, with fresh attempts; False if no parked effect has that key."""
        with self.atomic():
            cur = self.db.conn.execute(
                f"update effects set status = 'pending', attempts = 0, next_try_at = ?, updated_at = ?, "
                f"error = null, tries = {_REPLAYED} where key = ? and status in ({', '.join('?' * len(PARKED))})",
                [utc(now), utc(now), utc(now), key, *PARKED])
        return cur.rowcount == 1

    def drop(self, key: str, now: datetime) -> bool:
        """Give up on a parked effect for good (kept as `dropped` for the record)."""
        with self.atomic():
            cur = self.db.conn.execute(
                f"update effects set status = 'dropped', updated_at = ? where key = ? and status in "
                f"({', '.join('?' * len(PARKED))})", [utc(now), key, *PARKED])
        return cur.rowcount == 1

    def next_effect_due(self, connectors: Sequence[str] | None = None,
                        after: datetime | None = None) -> datetime | None:
        """When the earliest waiting effect (of `connectors`, when given; due after `after`, when given) may be
        tried."""
        sql, args = "select min(next_try_at) from effects where status in ('pending', 'retry')", list(connectors or [])
        if connectors is not None:
            sql += f" and connector in ({', '.join('?' * len(args))})"
        if after is not None:
            sql += " and next_try_at > ?"
            args.append(utc(after))
        row = self.db.conn.execute(sql, args).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

