"""Each client's loyalty ledger as a table (part of SqliteStore): rows read in the ledger's order, and written
once by their ids (`insert or ignore`: a decision decided again, or a repeated webhook, adds nothing)."""
from __future__ import annotations

from collections.abc import Collection, Iterable

from automator.loyalty.ledger import Entry
from automator.store.codec import LEDGER_COLUMNS, entry_of, ledger_row
from automator.store.connection import Connection

INSERT_LEDGER = (f"insert or ignore into ledger ({', '.join(LEDGER_COLUMNS)}) values "
                 f"({', '.join('?' * len(LEDGER_COLUMNS))})")


class Ledger:
    """The ledger table over one connection."""

    def __init__(self, connection: Connection) -> None:
        self.db = connection.db
        self.atomic = connection.atomic

    def ledger_of(self, client: str) -> list[Entry]:
        """A person's rows, by moment then id (the index by client and moment)."""
        rows = self.db.conn.execute(f"select {', '.join(LEDGER_COLUMNS)} from ledger where client = ? "
                                    "order by at, id", [client])
        return [entry_of(row) for row in rows]

    def stored_ledger_ids(self, ids: Collection[str]) -> set[str]:
        """Which of these row ids are stored, looked up by the primary key."""
        unique = list(dict.fromkeys(ids))
        found: set[str] = set()
        for start in range(0, len(unique), 500):  # SQLite's limit of bound parameters, with room to spare
            chunk = unique[start:start + 500]
            found.update(row[0] for row in self.db.conn.execute(
                f"select id from ledger where id in ({', '.join('?' * len(chunk))})", chunk))
        return found

    def put_ledger(self, entries: Iterable[Entry]) -> int:
        """Write rows outside a decision (an import, a bench); a row whose id is stored is kept as it is. How many
        were new."""
        with self.atomic():
            before = self.db.conn.total_changes
            self.db.conn.executemany(INSERT_LEDGER, [ledger_row(e) for e in entries])
            return self.db.conn.total_changes - before
