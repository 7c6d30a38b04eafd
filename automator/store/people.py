"""People across systems and their history, as tables: each system's id of a person (`links`), their visits and
purchases (`visits`), and their bookings, deals and tasks found by the `client` field (part of SqliteStore)."""
from __future__ import annotations

from datetime import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from automator.history import MINOR_DIGITS
from automator.identity import all_ids_of, ids_of
from automator.model import Entity, EntityRef, Visit
from automator.store.codec import VISIT_COLUMNS, dump, load, time_of, utc, visit_of, visit_row
from automator.store.connection import Connection
from automator.store.order import START_SQL, order_sql, start_utc

_SCALE = 10 ** MINOR_DIGITS


def _money(total: str) -> str:
    """SQL for minor units as history.money_text writes them (amounts are never negative)."""
    return f"printf('%d.%0{MINOR_DIGITS}d', {total} / {_SCALE}, {total} % {_SCALE})"


def _figures() -> str:
    """SQL for one set of derived figures (history.PER_CATEGORY and the counts) over the grouped visits; nulls
    (a count of 0, a purchase-only client's first visit) are dropped by json_patch, as history leaves them out."""
    paid = "count(*)"
    return (f"json_object('first_visit_at', min(case when kind = 'visit' then at end), "
            f"'last_visit_at', max(case when kind = 'visit' then at end), "
            f"'visit_count', nullif(sum(kind = 'visit'), 0), 'purchase_count', nullif(sum(kind != 'visit'), 0), "
            f"'total_spent', {_money('sum(amount)')}, "
            f"'average_check', {_money(f'((2 * sum(amount) + {paid}) / (2 * {paid}))')})")


# The derived fields of every client in `touched`, recomputed from all their visits: the same fields, in the same
# form, as history.recorded keeps one decision at a time (tests/test_history.py holds both to it).
_RECOMPUTE = f"""
with own as (
    select client, {_figures()} as figures
    from visits where client in (select id from touched) group by client),
per_category as (
    select client, json_group_object(category, json(figures)) as services from (
        select client, category, {_figures()} as figures
        from visits where client in (select id from touched) and category is not null group by client, category)
    group by client)
select own.client, case when per_category.services is null then own.figures
    else json_patch(own.figures, json_object('services', json(per_category.services))) end
from own left join per_category on per_category.client = own.client
"""

_STAGED = "staged_visits"  # a bulk load's visits before they are stored (a temporary table)
INSERT_VISIT = (f"insert or ignore into visits ({', '.join(VISIT_COLUMNS)}) values "
                 f"({', '.join('?' * len(VISIT_COLUMNS))})")


def _no_limit(limit: int | None) -> int:
    """SQLite's `limit` for an optional one: a negative limit is none."""
    return -1 if limit is None else max(0, limit)


class People:
    """Links and history over one connection."""

    def __init__(self, connection: Connection) -> None:
        self.db = connection.db
        self.atomic = connection.atomic  # a bulk load commits batch by batch

    # ---- links -------------------------------------------------------------------------------------
    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's own id (or, with `system` "phone", an E.164 phone) belongs to."""
        row = self.db.conn.execute("select client from links where system = ? and ext_id = ?",
                                   [system, ext_id]).fetchone()
        return str(row[0]) if row else None

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person, phones included, in the order they were linked."""
        return [(str(s), str(e)) for s, e in self.db.conn.execute(
            "select system, ext_id from links where client = ? order by at, rowid", [client])]

    def link(self, system: str, ext_id: str, client: str, at: datetime) -> None:
        """Say that a system's id (or a phone) is this person's; a link already made is moved to them."""
        self.db.conn.execute("insert into links (system, ext_id, client, at) values (?, ?, ?, ?) "
                             "on conflict (system, ext_id) do update set client = excluded.client",
                             [system, ext_id, client, utc(at)])

    def refresh_ids(self, client: str) -> None:
        """Bring a stored person's `ids` and `all_ids` fields up to their links (a link made by another kind of
        event, such as the contact of a deal the CRM found by phone); a person not stored yet is left alone."""
        links = self.links_of(client)
        self.db.conn.execute("update entities set fields = json_set(fields, '$.ids', json(?), '$.all_ids', json(?)) "
                             "where kind = 'client' and id = ?",
                             [dump(ids_of(links)), dump(all_ids_of(links)), client])

    # ---- a person's records ------------------------------------------------------------------------
    def related(self, kind: str, client: str, limit: int | None = None) -> list[Entity]:
        """The entities of a kind whose `client` field is this person, oldest first (`store.order`: bookings by
        `starts_at`, deals and tasks by `created_at`, then id), at most `limit` of them: the cut is the query's, so
        a person with a hundred thousand records costs what `limit` does (the index on the field)."""
        # A test's `given:` may write an id as a number: both forms are asked for.
        forms: list[object] = [client, int(client)] if client.isdigit() and len(client) < 18 else [client, client]
        rows = self.db.conn.execute(
            "select id, fields, updated_at from entities where kind = ? and json_extract(fields, '$.client') "
            f"in (?, ?) order by {order_sql(kind)} limit ?", [kind, *forms, _no_limit(limit)]).fetchall()
        return [Entity(EntityRef(kind, str(i)), load(f), time_of(u)) for i, f, u in rows]

    def bookings_starting(self, after: datetime, before: datetime, limit: int | None = None) -> list[Entity]:
        """The bookings that start in [after, before), earliest first, at most `limit` (the index on the start)."""
        # Named: with no statistics SQLite would take an index on `kind` alone and read every booking.
        rows = self.db.conn.execute(
            f"select id, fields, updated_at from entities indexed by entities_booking_start where kind = 'booking' "
            f"and {START_SQL} >= ? and {START_SQL} < ? order by {START_SQL}, length(id), id limit ?",
            [start_utc(after), start_utc(before), _no_limit(limit)]).fetchall()
        return [Entity(EntityRef("booking", str(i)), load(f), time_of(u)) for i, f, u in rows]

    def clients_with_phone(self, phone: str) -> list[Entity]:
        """The clients whose `phone` field is this text, oldest first (the index on the field)."""
        rows = self.db.conn.execute(
            "select id, fields, updated_at from entities where kind = 'client' and json_extract(fields, '$.phone') "
            "= ? order by updated_at, id", [phone]).fetchall()
        return [Entity(EntityRef("client", str(i)), load(f), time_of(u)) for i, f, u in rows]

    # ---- history -----------------------------------------------------------------------------------
    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        """A person's visits and purchases, oldest first; since a moment, when given; at most `limit` (the query's
        cut, on the index by person and time)."""
        sql = f"select {', '.join(VISIT_COLUMNS)} from visits where client = ?"
        args: list[object] = [client]
        if since is not None:
            sql += " and at >= ?"
            args.append(utc(since))
        rows = self.db.conn.execute(sql + " order by at, id limit ?", [*args, _no_limit(limit)])
        return [visit_of(row) for row in rows]

    def has_visit(self, visit_id: str) -> bool:
        """True when a visit of this id is stored."""
        return self.db.conn.execute("select 1 from visits where id = ?", [visit_id]).fetchone() is not None

    def recompute(self, clients: Iterable[str], at: datetime) -> int:
        """Recompute the derived fields of these clients from all their visits, in SQL (an import touches many),
        making a client entity for a person who has none; how many clients were written."""
        conn = self.db.conn
        conn.execute("create temp table if not exists touched (id text primary key)")
        conn.execute("delete from touched")
        conn.executemany("insert or ignore into touched (id) values (?)", [(c,) for c in clients])
        # The figures replace the old ones field by field; `services` is replaced whole (a category never goes).
        rows = conn.execute(_RECOMPUTE).fetchall()
        conn.executemany(
            "insert into entities (kind, id, fields, prev, updated_at) values ('client', ?, json_patch('{}', ?), "
            "null, ?) on conflict (kind, id) do update set "
            "fields = json_patch(json_remove(fields, '$.services'), excluded.fields), updated_at = excluded.updated_at",
            [(client, figures, utc(at)) for client, figures in rows])
        conn.execute("delete from touched")
        return len(rows)

    def put_visits(self, visits: Iterable[Visit]) -> int:
        """Store visits, keeping any already stored under the same id; how many were new."""
        before = self.db.conn.total_changes
        self.db.conn.executemany(INSERT_VISIT, [visit_row(v) for v in visits])
        return self.db.conn.total_changes - before

    # ---- a bulk load of history (an import, a backfill) -----------------------------------------------
    def stage_visits(self, rows: Iterable[Sequence[Any]]) -> None:
        """Keep visit rows (`codec.visit_row`'s) aside in a temporary table of this connection (not the database:
        no other process sees them, and its writes take no turn at the write lock) until `put_staged` stores them."""
        conn = self.db.conn
        conn.execute(f"create temp table if not exists {_STAGED} ({', '.join(VISIT_COLUMNS)})")
        conn.executemany(f"insert into {_STAGED} ({', '.join(VISIT_COLUMNS)}) values "
                         f"({', '.join('?' * len(VISIT_COLUMNS))})", rows)

    def put_staged(self, at: datetime, batch: int, progress: Callable[[int, int], None]) -> tuple[int, int]:
        """Store the staged visits, keeping any already stored under the same id, and recompute the derived
        fields of every client they name: `batch` visits or so at a time, each batch a transaction of its own (a
        client's visits never split between two), `progress(new, clients)` after each. How many visits were new and
        how many clients were written; nothing stays staged."""
        new = written = 0
        try:
            for first, last in self._batches(batch):
                with self.atomic():
                    added, clients = self._put_range(first, last, at)
                new, written = new + added, written + clients
                progress(new, written)
        finally:
            self.db.conn.execute(f"drop table if exists temp.{_STAGED}")
        return new, written

    def _batches(self, size: int) -> list[tuple[str, str]]:
        """The staged visits' clients in ranges (first, last) of about `size` visits each, in the index's order."""
        conn = self.db.conn
        if not conn.execute("select 1 from temp.sqlite_master where name = ?", [_STAGED]).fetchone():
            return []
        # Sorted once here, so that each range below is read in the order of the index on (client, at).
        conn.execute(f"create index if not exists temp.{_STAGED}_order on {_STAGED} (client, at)")
        ranges: list[tuple[str, str]] = []
        first: str | None = None
        last, count = "", 0
        for last, visits in conn.execute(f"select client, count(*) from {_STAGED} group by client order by client"):
            first = last if first is None else first
            count += visits
            if count >= size:
                ranges.append((first, last))
                first, count = None, 0
        if first is not None:
            ranges.append((first, last))
        return ranges

    def _put_range(self, first: str, last: str, at: datetime) -> tuple[int, int]:
        conn = self.db.conn
        before = conn.total_changes
        # In the index's order the new entries of (client, at) land page after page, each page written once per
        # batch; in the file's order every visit dirtied a page of its own, written again at every commit.
        conn.execute(f"insert or ignore into visits ({', '.join(VISIT_COLUMNS)}) select {', '.join(VISIT_COLUMNS)} "
                     f"from {_STAGED} where client between ? and ? order by client, at", [first, last])
        new = conn.total_changes - before
        clients = [str(c) for c, in conn.execute(
            f"select distinct client from {_STAGED} where client between ? and ? order by client", [first, last])]
        return new, self.recompute(clients, at)
