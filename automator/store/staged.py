"""A Snapshot as the decisions of one batch leave it, before they are written.

The worker decides a batch without holding the write lock and writes the decisions afterwards, in one short
transaction (automator/daemon/worker.py). Each event must still see what the events before it in the batch
changed — a booking's second update sees the first, a client's new state is seen by the booking linked to it
— so the batch's decisions are staged over the store here, in journal order, as they would have been written.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from automator.loyalty.ledger import Entry, ordered
from automator.model import Decision, Entity, EntityRef, Run, Visit
from automator.store.base import Snapshot
from automator.store.order import sort_key, start_key, starting_within

ACTIVE = ("waiting", "queued")  # the statuses Snapshot.active_runs returns


def _last_change(entity: Entity) -> tuple[float, str]:
    """The store's order of clients found by phone: by when they last changed (never changed first), then id."""
    return (entity.updated_at.timestamp() if entity.updated_at is not None else 0.0, entity.ref.id)


class Staged:
    """`store` (a Snapshot) with the staged decisions' entities and runs laid over it; read-only, as decide()
    needs it: nothing of the store but the Snapshot protocol is reachable through it."""

    def __init__(self, store: Snapshot, *, entities: Mapping[EntityRef, Entity | None] | None = None,
                 runs: Mapping[str, list[Run]] | None = None) -> None:
        self.store = store
        self._entities: dict[EntityRef, Entity] = {}
        self._runs: dict[str, Run] = {}
        self._visits: dict[str, Visit] = {}
        self._ledger: dict[str, Entry] = {}
        self._clients_changed = False
        # Read ahead for the whole batch, in one query each (the worker's prefetch): stored states by ref, and
        # the active runs by key. What is not in them is read from the store.
        self._read_entities = dict(entities or {})
        self._read_runs = dict(runs or {})

    def stage(self, decision: Decision) -> None:
        """Lay one decision over the store, as committing it will."""
        after = decision.entity_after
        if after is not None:
            self._entities[after.ref] = after
            self._clients_changed = self._clients_changed or after.ref.kind == "client"
        for run in decision.runs:
            self._runs[run.id] = run
        for visit in decision.visits:
            self._visits.setdefault(visit.id, visit)
        for entry in decision.ledger:
            self._ledger.setdefault(entry.id, entry)

    def entity(self, ref: EntityRef) -> Entity | None:
        """The entity as the staged decisions leave it."""
        staged = self._entities.get(ref)
        if staged is not None:
            return staged
        if ref in self._read_entities:
            return self._read_entities[ref]
        return self.store.entity(ref)

    def entities(self, kind: str) -> Iterator[Entity]:
        """Every entity of a kind, staged states first replacing stored ones."""
        seen: set[EntityRef] = set()
        for entity in self.store.entities(kind):
            seen.add(entity.ref)
            yield self._entities.get(entity.ref, entity)
        for ref, entity in self._entities.items():
            if ref.kind == kind and ref not in seen:
                yield entity

    def run(self, run_id: str) -> Run | None:
        """One run, as staged or stored."""
        staged = self._runs.get(run_id)
        return staged if staged is not None else self.store.run(run_id)

    def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
        """Waiting or queued runs for a key: stored ones as staged decisions changed them, then staged new ones."""
        read = self._read_runs.get(key)
        if read is not None:
            stored = [r for r in read if rule_id is None or r.rule_id == rule_id]
        else:
            stored = self.store.active_runs(rule_id, key)
        known = {r.id for r in stored}
        runs = [self._runs.get(r.id, r) for r in stored]
        runs += [r for r in self._runs.values() if r.id not in known and r.key == key
                 and (rule_id is None or r.rule_id == rule_id)]
        return [r for r in runs if r.status in ACTIVE]

    def segment_recency(self) -> Mapping[str, timedelta]:
        """Average time between visits per segment, over clients as staged."""
        if not self._clients_changed:
            return self.store.segment_recency()
        from automator.segments import average_recency

        return average_recency({**e.fields} for e in self.entities("client"))

    def segment_cuts(self) -> Mapping[str, Any] | None:
        """The RFM cut points the store keeps (no decision changes them)."""
        return self.store.segment_cuts()

    # ---- people and their history: the store's links (written when events are journaled, before any decision),
    # with the staged decisions' entities and visits laid over them
    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's id belongs to (links are the journal's: nothing is staged)."""
        return self.store.client_of(system, ext_id)

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person."""
        return self.store.links_of(client)

    def related(self, kind: str, client: str, limit: int | None = None) -> list[Entity]:
        """The entities of a kind whose client is this person, as the staged decisions leave them, in the store's
        order (`store.order`), at most `limit`."""
        return self._overlaid(kind, lambda n: self.store.related(kind, client, n),
                              lambda e: str(e.fields.get("client")) == client, sort_key, limit)

    def bookings_starting(self, after: datetime, before: datetime, limit: int | None = None) -> list[Entity]:
        """The bookings that start in [after, before), as the staged decisions leave them, earliest first."""
        return self._overlaid("booking", lambda n: self.store.bookings_starting(after, before, n),
                              starting_within(after, before), start_key, limit)

    def clients_with_phone(self, phone: str) -> list[Entity]:
        """The clients whose phone field is this text, as the staged decisions leave them, oldest first."""
        return self._overlaid("client", lambda n: self.store.clients_with_phone(phone),
                              lambda e: e.fields.get("phone") == phone, _last_change, None)

    def _overlaid(self, kind: str, read: Callable[[int | None], list[Entity]], belongs: Callable[[Entity], bool],
                  key: Callable[[Entity], Any], limit: int | None) -> list[Entity]:
        """What `read` finds in the store (given how many to read) as the staged decisions leave it: a stored
        record staged anew is read as staged, and dropped when it no longer `belongs`; a staged record that belongs
        is added; all in the order of `key`, the store's own, and cut at `limit`."""
        staged = [e for ref, e in self._entities.items() if ref.kind == kind]
        # Each staged record can push at most one stored record out of the first `limit`: read that many more.
        stored = [self._entities.get(e.ref, e) for e in read(None if limit is None else limit + len(staged))]
        if not staged:
            return stored[:limit]
        known = {e.ref for e in stored}
        found = sorted((e for e in (*stored, *(e for e in staged if e.ref not in known)) if belongs(e)), key=key)
        return found[:limit]

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        """A person's visits, stored and staged, oldest first, at most `limit` (a staged visit never replaces a
        stored one, so the store's first `limit` are enough)."""
        stored = self.store.visits_of(client, since, limit)
        known = {v.id for v in stored}
        # Under a limit, a visit already stored may lie past the cut: it is the stored one, not a new one.
        staged = [v for v in self._visits.values() if v.client == client and v.id not in known
                  and (since is None or v.at >= since) and (limit is None or not self.store.has_visit(v.id))]
        return sorted((*stored, *staged), key=lambda v: (v.at, v.id))[:limit] if staged else stored

    def has_visit(self, visit_id: str) -> bool:
        """True when a visit of this id is stored or staged."""
        return visit_id in self._visits or self.store.has_visit(visit_id)

    def stored_ledger_ids(self, ids: Collection[str]) -> set[str]:
        """Which of these ledger row ids are stored or staged."""
        staged = {i for i in ids if i in self._ledger}
        rest = [i for i in ids if i not in staged]
        return staged | (self.store.stored_ledger_ids(rest) if rest else set())

    def ledger_of(self, client: str) -> list[Entry]:
        """A person's ledger rows, stored and staged (a staged row never replaces a stored one of its id)."""
        stored = self.store.ledger_of(client)
        staged = [e for e in self._ledger.values() if e.client == client]
        if not staged:
            return stored
        known = {e.id for e in stored}
        return ordered([*stored, *(e for e in staged if e.id not in known)])
