"""History brought in from outside the event stream: `automator import visits FILE.csv` and `automator backfill`.

Both feed the same ingestion: each record's person is matched as the journal matches a webhook's (`identity`:
by the system's id, then by phone; the links are written), visits are stored once by id (importing the same file
or backfilling the same months again adds nothing), and the derived fields of every client touched are recomputed
in SQL at the end (`Store.recompute_history`). No rule runs: history is not news, and a year of visits must not
send a year of messages. Work is committed in chunks, so a long import holds the store's write lock only briefly
and what was read before an interruption stays.

The CSV's columns (a header row names them, in any order; `,` or `;` between fields, UTF-8 with or without BOM):
`client` (the system's client id) or `phone` (or both), `at` (ISO 8601; without an offset, the project's
timezone), `amount` (decimal text in major units, `1500.00`), and optionally `visit` (the system's visit id),
`branch`, `services` (titles separated by `|`), `staff`, `category` (the service category), `kind` (visit or
purchase), `currency` (RUB), `booking`. A row that cannot be read is reported as `FILE:LINE:COL: error: …` and
skipped; every good row is imported all the same.
"""
from __future__ import annotations

import csv
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from itertools import islice
from pathlib import Path
from typing import Any

from automator import history, identity
from automator.config.problems import Problem
from automator.core.decide import apply_event
from automator.model import Entity, EntityRef, Event, Visit
from automator.phone import Policy, to_e164
from automator.store.base import Store

COLUMNS = ("client", "phone", "at", "amount", "visit", "branch", "services", "staff", "category", "kind",
           "currency", "booking")
IMPORT = "import"  # the system of rows that name their person by phone only, and of visits without an id
CHUNK = 5000  # records per transaction


@dataclass
class Counts:
    """What an ingestion did, for its progress lines and its summary."""

    read: int = 0  # records read (rows, or events)
    new: int = 0  # visits stored that were not stored before
    clients: int = 0  # clients whose derived fields were recomputed
    skipped: int = 0  # rows or events refused (each reported) or not history
    problems: list[Problem] = field(default_factory=list)


class Ingestion:
    """One import or backfill into a store: persons matched and linked, visits stored, derived fields at the end."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        # A batch job on a history of millions of visits: its connection caches 256 MB of pages (the default
        # 2 MB makes every insert into the visits' indexes a read from disk once they outgrow it).
        store.db.conn.execute("pragma cache_size = -262144")
        self.counts = Counts()
        self.touched: set[str] = set()
        self._people: dict[tuple[str, str], str] = {}
        self._visits: list[Visit] = []

    def person(self, system: str, ext_id: str, phone: str | None) -> str:
        """The person system's record `ext_id` is (with this phone), links written as the journal writes them."""
        key = (system, ext_id)
        client = self._people.get(key)
        if client is None:
            client, links = identity.match(system, ext_id, phone, self.store)
            self._link(links)
            if self.store.entity(EntityRef("client", client)) is None:
                ids = identity.ids_of(self.store.links_of(client))
                fields: dict[str, Any] = {"ids": ids, **({"phone": phone} if phone else {})}
                self.store.put_entity(Entity(EntityRef("client", client), fields, self.now), None)
            self._people[key] = client
        return client

    def _link(self, links: Iterable[identity.Link]) -> None:
        for link in links:
            self.store.link(link.system, link.ext_id, link.client, self.now)

    def client_event(self, event: Event) -> None:
        """A `client.*` event of a backfill: the person matched, their fields merged as the engine merges them."""
        resolved, links = identity.resolve(event, self.store)
        self._link(links)
        assert resolved.entity is not None and event.entity is not None
        self._people[(event.source, event.entity.id)] = resolved.entity.id
        before = self.store.entity(resolved.entity)
        after = apply_event(before, resolved, self.now)
        if after is not None and after is not before:
            self.store.put_entity(after, before)

    def visit_event(self, event: Event) -> Visit | None:
        """A `visit.completed` / `purchase.completed` event of a backfill, as a visit of its person; a
        HistoryError when it cannot be kept."""
        assert event.entity is not None
        known = self._people.get((event.source, event.entity.id))
        if known is not None:  # its client seen already (the backfill's clients come first): no query
            return history.visit_of(replace(event, entity=EntityRef("client", known)))
        resolved, links = identity.resolve(event, self.store)
        self._link(links)
        if resolved.entity is not None:
            self._people[(event.source, event.entity.id)] = resolved.entity.id
        return history.visit_of(resolved)

    def refuse(self, problem: Problem) -> None:
        """A record that cannot be kept: reported, skipped, the others go on."""
        self.counts.skipped += 1
        self.counts.problems.append(problem)

    def add(self, visit: Visit) -> None:
        """Keep a visit to be stored with the chunk."""
        self._visits.append(visit)
        self.touched.add(visit.client)

    def flush(self) -> None:
        """Store the visits kept so far (the caller's transaction commits them)."""
        if self._visits:
            # In the order of the index on (client, at): neighbours in the file land on neighbouring pages.
            self._visits.sort(key=lambda v: (v.client, v.at))
            self.counts.new += self.store.put_visits(self._visits)
            self._visits = []

    def finish(self) -> Counts:
        """The derived fields of every client touched, recomputed from all their visits."""
        self.flush()
        if self.touched:
            self.counts.clients = self.store.recompute_history(sorted(self.touched), self.now)
        return self.counts


# ---- a test's `given:` ---------------------------------------------------------------------------------

def seed(store: Store, records: Iterable[Mapping[str, Any]], at: datetime, tz: tzinfo) -> list[Entity]:
    """Write a test's `given:` (or dry-run's `--state`): records as they are, visits into the history with their
    clients' derived fields recomputed as an import does. The entities as they then stand (clients' included)."""
    refs: list[EntityRef] = []
    visits: list[Visit] = []
    for number, raw in enumerate(records):
        if raw.get("kind") in history.GIVEN_KINDS:
            visits.append(history.given_visit(raw, number, tz))
            continue
        ref = EntityRef(str(raw["kind"]), str(raw["id"]))
        store.put_entity(Entity(ref, {k: v for k, v in raw.items() if k not in ("kind", "id")}, at))
        refs.append(ref)
    if visits:
        store.put_visits(visits)
        store.recompute_history({v.client for v in visits}, at)
        refs += [ref for ref in dict.fromkeys(EntityRef("client", v.client) for v in visits) if ref not in refs]
    return [entity for entity in map(store.entity, refs) if entity is not None]


# ---- the CSV -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Row:
    """One good row of a visits file, its person not yet matched."""

    line: int
    system: str
    ext_id: str
    phone: str | None
    visit: dict[str, Any]  # a Visit's fields but its `client`, known once the person is matched


class _RowError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def read_visits(path: Path, system: str, tz: tzinfo) -> Iterator[Row | Problem]:
    """The rows of a visits file, each a Row or a Problem at its line and column."""
    shown = str(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        delimiter = ";" if sample.partition("\n")[0].count(";") > sample.partition("\n")[0].count(",") else ","
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            yield Problem(shown, 1, 1, "the file is empty: a header row naming the columns is needed",
                          f"columns: {', '.join(COLUMNS)}")
            return
        names = [name.strip().lower() for name in header]
        for index, name in enumerate(names):
            if name not in COLUMNS:
                yield Problem(shown, 1, index + 1, f"unknown column {name!r}", f"columns: {', '.join(COLUMNS)}")
                return
        for needed in ("at", "amount"):
            if needed not in names:
                yield Problem(shown, 1, 1, f"the column {needed!r} is missing", f"columns: {', '.join(COLUMNS)}")
                return
        if "client" not in names and "phone" not in names:
            yield Problem(shown, 1, 1, "a column `client` or `phone` is needed to know whose visits these are")
            return
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                yield Problem(shown, line, 1, f"{len(values)} fields where the header names {len(names)}")
                continue
            cells = {name: value.strip() for name, value in zip(names, values)}
            try:
                yield _row(cells, line, system, tz)
            except _RowError as exc:
                yield Problem(shown, line, names.index(exc.column) + 1, str(exc))


def _row(cells: dict[str, str], line: int, system: str, tz: tzinfo) -> Row:
    phone = None
    if cells.get("phone"):
        # E.164 as written is taken as it is (the common case, and phonenumbers' parse is a tenth of a ms).
        phone = identity.phone_of(cells["phone"]) or to_e164(cells["phone"], policy=Policy.POSSIBLE)
        if phone is None:
            raise _RowError("phone", f"phone {cells['phone']!r} is not a phone number")
    ext_id = cells.get("client") or ""
    if not ext_id and phone is None:
        raise _RowError("client" if "client" in cells else "phone", "the row names no client: give a client id or "
                                                                    "a phone")
    try:
        at = datetime.fromisoformat(cells["at"])
    except ValueError:
        raise _RowError("at", f"at {cells['at']!r} is not an ISO 8601 date or moment (2026-03-02T15:00+03:00)"
                        ) from None
    at = at if at.tzinfo is not None else at.replace(tzinfo=tz)
    try:
        amount = history.minor_units(cells["amount"])
    except history.HistoryError as exc:
        raise _RowError("amount", str(exc)) from None
    kind = cells.get("kind") or "visit"
    if kind not in ("visit", "purchase"):
        raise _RowError("kind", f"kind {kind!r} is neither visit nor purchase")
    services = tuple(s.strip() for s in (cells.get("services") or "").split("|") if s.strip())
    person = (system, ext_id) if ext_id else (IMPORT, phone or "")
    if cells.get("visit"):
        ident = f"{person[0]}:{cells['visit']}"
    else:  # the same row imported again has the same id: the second import adds nothing
        digest = hashlib.sha1("|".join([*person, at.isoformat(), str(amount), kind, *services]).encode())
        ident = f"{IMPORT}:{digest.hexdigest()[:20]}"
    visit = {"id": ident, "at": at, "kind": kind, "branch": cells.get("branch") or None, "services": services,
             "category": cells.get("category") or None, "staff": cells.get("staff") or None, "amount": amount,
             "currency": cells.get("currency") or "RUB", "booking": cells.get("booking") or None, "source": person[0]}
    return Row(line, person[0], person[1], phone, visit)


def import_visits(store: Store, path: Path, system: str, tz: tzinfo, now: datetime,
                  progress: Callable[[Counts], None] = lambda counts: None) -> Counts:
    """Import a visits file into the store (see the module's docstring); the problems are in the counts."""
    ingestion = Ingestion(store, now)
    rows = read_visits(path, system, tz)
    while chunk := list(islice(rows, CHUNK)):
        with store.atomic():
            for item in chunk:
                ingestion.counts.read += 1
                if isinstance(item, Problem):
                    ingestion.refuse(item)
                else:
                    ingestion.add(Visit(client=ingestion.person(item.system, item.ext_id, item.phone), **item.visit))
            ingestion.flush()
        progress(ingestion.counts)
    with store.atomic():
        return ingestion.finish()


async def backfill(store: Store, name: str, events: AsyncIterator[Event], now: datetime,
                   progress: Callable[[Counts], None] = lambda counts: None) -> Counts:
    """Ingest a connector's `backfill(since)` events (`client.*`, then `visit.completed` / `purchase.completed`):
    persons matched and linked, clients' fields merged, visits stored once; other events are skipped."""
    ingestion = Ingestion(store, now)
    pending: list[Event] = []

    def take(batch: list[Event]) -> None:
        with store.atomic():
            for event in batch:
                ingestion.counts.read += 1
                if not event.source or event.source == "external":
                    event = replace(event, source=name)
                if event.type in history.VISIT_EVENTS:
                    try:
                        visit = ingestion.visit_event(event)
                    except history.HistoryError as exc:
                        ingestion.refuse(Problem(f"{name} backfill", ingestion.counts.read, 1,
                                                 f"{event.type} {event.id}: {exc}"))
                        continue
                    if visit is not None:
                        ingestion.add(visit)
                elif event.entity is not None and event.entity.kind == "client" and event.kind == "client":
                    ingestion.client_event(event)
                else:
                    ingestion.counts.skipped += 1
            ingestion.flush()
        progress(ingestion.counts)

    async for event in events:
        pending.append(event)
        if len(pending) >= CHUNK:
            take(pending)
            pending = []
    if pending:
        take(pending)
    with store.atomic():
        return ingestion.finish()
