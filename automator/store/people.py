"""People across systems and their history, as tables: each system's id of a person (`links`), their visits and
purchases (`visits`), and their bookings, deals and tasks found by the `client` field (part of SqliteStore)."""
from __future__ import annotations

from datetime import datetime
from collections.abc import Iterable

from automator.identity import all_ids_of, ids_of
from automator.model import Entity, EntityRef, Visit
from automator.store.codec import VISIT_COLUMNS, dump, load, time_of, utc, visit_of, visit_row
from automator.store.connection import Connection

INSERT_VISIT = (f"insert or ignore into visits ({', '.join(VISIT_COLUMNS)}) values "
                 f"({', '.join('?' * len(VISIT_COLUMNS))})")


class People:
    """Links and history over one connection."""

    def __init__(self, connection: Connection) -> None:
        self.db = connection.db

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
    def related(self, kind: str, client: str) -> list[Entity]:
        """The entities of a kind whose `client` field is this person, oldest first (the index on the field)."""
        # A test's `given:` may write an id as a number: both forms are asked for.
        forms: list[object] = [client, int(client)] if client.isdigit() and len(client) < 18 else [client, client]
        rows = self.db.conn.execute(
            "select id, fields, updated_at from entities where kind = ? and json_extract(fields, '$.client') "
            "in (?, ?) order by updated_at, id", [kind, *forms]).fetchall()
        return [Entity(EntityRef(kind, str(i)), load(f), time_of(u)) for i, f, u in rows]

    # ---- history -----------------------------------------------------------------------------------
    def visits_of(self, client: str, since: datetime | None = None) -> list[Visit]:
        """A person's visits and purchases, oldest first; since a moment, when given."""
        sql = f"select {', '.join(VISIT_COLUMNS)} from visits where client = ?"
        args: list[object] = [client]
        if since is not None:
            sql += " and at >= ?"
            args.append(utc(since))
        return [visit_of(row) for row in self.db.conn.execute(sql + " order by at, id", args)]

    def has_visit(self, visit_id: str) -> bool:
        """True when a visit of this id is stored."""
        return self.db.conn.execute("select 1 from visits where id = ?", [visit_id]).fetchone() is not None

    def put_visits(self, visits: Iterable[Visit]) -> int:
        """Store visits, keeping any already stored under the same id; how many were new."""
        before = self.db.conn.total_changes
        self.db.conn.executemany(INSERT_VISIT, [visit_row(v) for v in visits])
        return self.db.conn.total_changes - before
