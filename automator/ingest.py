"""History brought in from outside the event stream: `automator import visits FILE.csv` and `automator backfill`.

Both feed the same ingestion: each record's person is matched as the journal matches a webhook's (`identity`:
by the system's id, then by phone; the links are written and the persons' `ids` kept up to them), the visits are
staged aside as they are read, and at the end stored once by id (importing the same file or backfilling the same
months again adds nothing) in the order of the index on (client, at), with the derived fields of every client
touched recomputed in SQL (`Store.put_staged_visits`). No rule runs: history is not news, and a year of visits
must not send a year of messages. Work is committed in chunks, so a long import holds the store's write lock only
briefly; persons and links read before an interruption stay, and the same file imported again stores its visits.

The CSV's columns (a header row names them, in any order; `,` or `;` between fields, UTF-8 with or without BOM):
`client` (the system's client id) or `phone` (or both), `at` (ISO 8601; without an offset, the project's
timezone), `amount` (decimal text in major units, `1500.00`), and optionally `visit` (the system's visit id),
`branch`, `services` (titles separated by `|`), `staff`, `category` (the service category), `kind` (visit or
purchase), `currency` (RUB), `booking`. A row that cannot be read (a bad value, bytes that are not UTF-8, a field
longer than the csv module's limit) is reported as `FILE:LINE:COL: error: …` and skipped; every good row is
imported all the same.
"""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, NamedTuple

from automator import history, identity
from automator.config.problems import Problem
from automator.csvtable import read_table
from automator.core.decide import apply_event
from automator.model import Entity, EntityRef, Event, Visit
from automator.phone import Policy, to_e164
from automator.store.base import Store
from automator.store.codec import stored_visit, visit_row

COLUMNS = ("client", "phone", "at", "amount", "visit", "branch", "services", "staff", "category", "kind",
           "currency", "booking")
# The import's own: the system of `--system import` client ids (ids of no system), and the source (the ids' prefix)
# of the visits of rows naming their person by phone only and of visits given no id.
IMPORT = "import"
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
    """One import or backfill into a store: persons matched and linked, visits staged, then stored with the derived
    fields of their clients recomputed (`finish`)."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        # A batch job on a history of millions of visits: its connection caches 256 MB of pages (the default
        # 2 MB makes every insert into the visits' indexes a read from disk once they outgrow it).
        store.db.conn.execute("pragma cache_size = -262144")
        self.counts = Counts()
        self._people: dict[tuple[str, str], str] = {}
        self._visits: list[list[Any]] = []  # visit rows (`codec.visit_row`), staged with the chunk

    def person(self, system: str, ext_id: str, phone: str | None) -> str:
        """The person system's record `ext_id` is (with this phone), links written as the journal writes them."""
        key = (system, ext_id)
        client = self._people.get(key)
        if client is None:
            client, links = identity.match(system, ext_id, phone, self.store)
            changed = self._link(links)
            ref = EntityRef("client", client)
            if self.store.entity(ref) is None:
                self.store.put_entity(Entity(ref, {"phone": phone} if phone else {}, self.now), None)
                changed.add(client)
            self.store.refresh_ids(changed)
            self._people[key] = client
        return client

    def _link(self, links: tuple[identity.Link, ...]) -> set[str]:
        """Write links; the persons whose `ids` they change."""
        for link in links:
            self.store.link(link.system, link.ext_id, link.client, self.now)
        return {link.client for link in links if link.system != identity.PHONE}

    def client_event(self, event: Event) -> None:
        """A `client.*` event of a backfill: the person matched, their fields merged as the engine merges them."""
        resolved, links = identity.resolve(event, self.store)
        assert resolved.entity is not None and event.entity is not None
        # The event carries its person's ids itself; another person a link moved from is brought up to theirs.
        self.store.refresh_ids(self._link(links) - {resolved.entity.id})
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
        self.store.refresh_ids(self._link(links))
        if resolved.entity is not None:
            self._people[(event.source, event.entity.id)] = resolved.entity.id
        return history.visit_of(resolved)

    def refuse(self, problem: Problem) -> None:
        """A record that cannot be kept: reported, skipped, the others go on."""
        self.counts.skipped += 1
        self.counts.problems.append(problem)

    def add(self, row: list[Any]) -> None:
        """Keep a visit, as the row it is stored in, to be staged with the chunk."""
        self._visits.append(row)

    def flush(self) -> None:
        """Stage the visits kept so far (stored by `finish`)."""
        if self._visits:
            self.store.stage_visits(self._visits)
            self._visits = []

    def finish(self, progress: Callable[[Counts], None] = lambda counts: None) -> Counts:
        """Store the staged visits and recompute the derived fields of every client they name, from all their
        visits, batch by batch (`progress` after each)."""
        self.flush()

        def stored(new: int, clients: int) -> None:
            self.counts.new, self.counts.clients = new, clients
            progress(self.counts)

        self.store.put_staged_visits(self.now, progress=stored)
        return self.counts


# ---- the CSV -----------------------------------------------------------------------------------------------

class Row(NamedTuple):
    """One good row of a visits file, its person not yet matched."""

    line: int
    system: str  # with ext_id, what the person is matched by: a system's id, or (`phone`) the phone alone
    ext_id: str
    phone: str | None
    # The visit as the row it is stored in (`codec.stored_visit`), its client (index 1) filled in once the person
    # is matched.
    stored: list[Any]


class _RowError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def read_visits(path: Path, system: str, tz: tzinfo) -> Iterator[Row | Problem]:
    """The rows of a visits file, each a Row or a Problem at its line and column."""
    seen: dict[bytes, int] = {}  # how many rows so far had each content (rows without a visit id)
    for item in read_table(path, COLUMNS, ("at", "amount"), _names_whose):
        if isinstance(item, Problem):
            yield item
            continue
        try:
            yield _row(item.cells, item.line, system, tz, seen)
        except _RowError as exc:
            yield Problem(str(path), item.line, item.column(exc.column), str(exc))


def _names_whose(names: list[str]) -> str | None:
    """A visits file must say whose visits they are."""
    if "client" not in names and "phone" not in names:
        return "a column `client` or `phone` is needed to know whose visits these are"
    return None


def _row(cells: dict[str, str], line: int, system: str, tz: tzinfo, seen: dict[bytes, int]) -> Row:
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
    try:
        at = history.plausible(at if at.tzinfo is not None else at.replace(tzinfo=tz))
    except history.HistoryError as exc:
        raise _RowError("at", str(exc)) from None
    try:
        amount = history.minor_units(cells["amount"])
    except history.HistoryError as exc:
        raise _RowError("amount", str(exc)) from None
    kind = cells.get("kind") or "visit"
    if kind not in ("visit", "purchase"):
        raise _RowError("kind", f"kind {kind!r} is neither visit nor purchase")
    services = tuple(s.strip() for s in (cells.get("services") or "").split("|") if s.strip())
    # A row naming its person by phone only is matched by the phone alone; its visits are the import's own.
    source, ext = (system, ext_id) if ext_id else (IMPORT, phone or "")
    if cells.get("visit"):
        ident = f"{source}:{cells['visit']}"
    else:
        ident = f"{IMPORT}:{_content_id([source, ext, at.isoformat(), str(amount), kind, *services], seen)}"
    stored = stored_visit(ident, "", at, kind, cells.get("branch") or None, services, cells.get("category") or None,
                          cells.get("staff") or None, amount, cells.get("currency") or "RUB",
                          cells.get("booking") or None, source)
    return Row(line, system if ext_id else identity.PHONE, ext_id or (phone or ""), phone, stored)


def _content_id(content: list[str], seen: dict[bytes, int]) -> str:
    """The id of a visit without one, from its content: the same row imported again has the same id (the second
    import adds nothing), and the second of two equal rows in one file (two equal purchases in one minute) is
    told from the first by its place among them (`.2`), so both are kept."""
    digest = hashlib.sha1("|".join(content).encode()).digest()[:10]
    count = seen[digest] = seen.get(digest, 0) + 1
    return digest.hex() if count == 1 else f"{digest.hex()}.{count}"


def import_visits(store: Store, path: Path, system: str, tz: tzinfo, now: datetime,
                  progress: Callable[[Counts], None] = lambda counts: None) -> Counts:
    """Import a visits file into the store (see the module's docstring); the problems are in the counts."""
    ingestion = Ingestion(store, now)
    rows = read_visits(path, system, tz)
    while chunk := list(itertools.islice(rows, CHUNK)):
        with store.atomic():
            for item in chunk:
                ingestion.counts.read += 1
                if isinstance(item, Problem):
                    ingestion.refuse(item)
                else:
                    item.stored[1] = ingestion.person(item.system, item.ext_id, item.phone)
                    ingestion.add(item.stored)
            ingestion.flush()
        progress(ingestion.counts)
    return ingestion.finish(progress)


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
                        ingestion.add(visit_row(visit))
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
    return ingestion.finish(progress)
