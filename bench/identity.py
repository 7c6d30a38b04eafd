"""Benchmark: what matching an incoming event to a person costs per journaled event (issue 13).

A store (SQLite, a file in a temporary folder, migrated as the daemon migrates it) is filled in SQL with PEOPLE
persons, each a stored client linked by a YCLIENTS id and a phone: 2 × PEOPLE links (1,000,000 at full size).
Then `Store.resolve` — what the journal does to every event from a connector whose ids are its own — is timed on
three kinds of `client.updated`, CALLS events each, all of a run in one transaction (as a group commit journals
them, so the figure is the matching and its link writes, not a commit's fsync):

  - a known id: YCLIENTS reports a client it reported before (one link read);
  - a known phone: Bitrix24 reports a contact it never reported, with the phone of a known person (the person is
    found by the phone, the contact linked to them);
  - a new person: a contact with an id and a phone nobody has (checked against a stored client of that id to
    adopt, then linked twice).

Each kind is run RUNS times on fresh ids; the figure is the median over the runs of the mean µs per event.
Nothing is asserted. `--small`: 10,000 persons, a check that it runs in seconds. Do not run the full size while
others are testing on this machine.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automator.model import EntityRef, Event  # noqa: E402
from automator.store.sqlite import SqliteStore  # noqa: E402

FULL = 500_000  # persons: a YCLIENTS id and a phone each, 1,000,000 links
SMALL = 5_000
CALLS = 2_000
RUNS = 5
AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
STAMP = "2026-03-01T00:00:00.000000+00:00"


def fill(store: SqliteStore, people: int) -> float:
    """The persons, their client records and their links, in SQL (recursive counters); seconds taken."""
    conn = store.db.conn
    started = time.perf_counter()
    with store.atomic():
        conn.execute(f"""
            insert into entities (kind, id, fields, prev, updated_at)
            with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
            select 'client', i, json_object('name', 'Клиент ' || i, 'phone', printf('+7916%07d', i),
                                            'ids', json_object('booking', cast(i as text))), null, '{STAMP}'
            from n""", [people])
        conn.execute(f"""
            insert into links (system, ext_id, client, at)
            with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
            select 'booking', cast(i as text), cast(i as text), '{STAMP}' from n
            union all
            select 'phone', printf('+7916%07d', i), cast(i as text), '{STAMP}' from n""", [people])
    return time.perf_counter() - started


def client_event(source: str, ident: str, phone: str) -> Event:
    """A system's report of one of its clients (a contact), as a connector emits it."""
    return Event(id=f"{source}:{ident}", type="client.updated", at=AT, entity=EntityRef("client", ident),
                 data={"name": "Клиент", "phone": phone}, source=source)


def timed(store: SqliteStore, events: list[Event]) -> float:
    """Mean µs per event of resolving these events, in one transaction."""
    gc.collect()
    gc.disable()  # the matching, not a collection that happens to fall in it
    try:
        with store.atomic():
            started = time.perf_counter()
            for event in events:
                store.resolve(event, AT)
            took = time.perf_counter() - started
    finally:
        gc.enable()
    return took / len(events) * 1e6


def kinds(people: int) -> dict[str, Callable[[int, int], Event]]:
    """Each kind of event, made for run r and call i (fresh ids every run: a second report is another kind)."""
    def known_id(r: int, i: int) -> Event:
        who = (r * CALLS + i) % people + 1
        return client_event("booking", str(who), f"+7916{who:07d}")

    def known_phone(r: int, i: int) -> Event:
        who = (r * CALLS + i) % people + 1
        return client_event("crm", str(10_000_000 + r * CALLS + i), f"+7916{who:07d}")

    def new_person(r: int, i: int) -> Event:
        fresh = 20_000_000 + r * CALLS + i
        return client_event("crm", str(fresh), f"+7903{fresh % 10_000_000:07d}")
    return {"known id": known_id, "known phone": known_phone, "new person": new_person}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help=f"{SMALL:,} persons: a quick check")
    args = parser.parse_args(argv)
    people = SMALL if args.small else FULL
    out: dict[str, Any] = {"people": people, "links": 2 * people, "calls": CALLS, "runs": RUNS}
    with tempfile.TemporaryDirectory(prefix="automator-identity-") as tmp:
        store = SqliteStore(str(Path(tmp) / "automator.db"), systems=("booking", "crm"))
        print(f"filling a store: {people:,} persons, {2 * people:,} links …", flush=True)
        out["fill_s"] = fill(store, people)
        print(f"  {out['fill_s']:.1f} s\nmatching per journaled event ({CALLS:,} events a run, median of {RUNS} runs):")
        out["us_per_event"] = {}
        for name, make in kinds(people).items():
            runs = [timed(store, [make(r, i) for i in range(CALLS)]) for r in range(RUNS)]
            out["us_per_event"][name] = statistics.median(runs)
            print(f"  {name:<12} {statistics.median(runs):8.1f} µs  (runs: {', '.join(f'{t:.1f}' for t in runs)})")
        store.close()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
