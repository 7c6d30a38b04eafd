"""A history held in memory as loyalty's mechanics read it (pure): the clients, the visits replayed so far and the
ledger rows made so far. `automator loyalty simulate` replays visits through the programs on one, and writes
nothing anywhere."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from automator.identity import PHONE
from automator.loyalty.ledger import Entry, ordered
from automator.model import Entity, EntityRef, Visit


class History:
    """A Reading over memory: `clients` by id (their fields: `referrer`, …), `phones` (E.164 → client id)."""

    def __init__(self, clients: Mapping[str, Entity] | None = None, phones: Mapping[str, str] | None = None) -> None:
        self.clients = dict(clients or {})
        self.phones = dict(phones or {})
        self.visits: dict[str, list[Visit]] = {}
        self.ledger: dict[str, list[Entry]] = {}
        self.known: set[str] = set()

    def entity(self, ref: EntityRef) -> Entity | None:
        """A client as given (other kinds are not kept)."""
        return self.clients.get(ref.id) if ref.kind == "client" else None

    def ledger_of(self, client: str) -> list[Entry]:
        """A client's rows so far, in the ledger's order."""
        return ordered(self.ledger.get(client, ()))

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        """A client's visits replayed so far, oldest first."""
        found = [v for v in self.visits.get(client, ()) if since is None or v.at >= since]
        return found[:limit] if limit is not None else found

    def client_of(self, system: str, ext_id: str) -> str | None:
        """The client a phone is (the other systems' ids are not kept: a replay's clients are named by id)."""
        return self.phones.get(ext_id) if system == PHONE else None

    def add_visit(self, visit: Visit) -> None:
        """A visit replayed: later mechanics see it in the client's history."""
        self.visits.setdefault(visit.client, []).append(visit)
        self.visits[visit.client].sort(key=lambda v: (v.at, v.id))

    def keep(self, entries: Iterable[Entry]) -> None:
        """Rows made, each kept once by id (as the ledger table does)."""
        for entry in entries:
            if entry.id not in self.known:
                self.known.add(entry.id)
                self.ledger.setdefault(entry.client, []).append(entry)

    def entries(self) -> list[Entry]:
        """Every row made, in the ledger's order."""
        return ordered(e for rows in self.ledger.values() for e in rows)
