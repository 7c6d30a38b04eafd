"""Benchmark: a client's history at scale — the store reads the lookups use, and the ingestion of visits.

A store (SQLite, a file in a temporary folder, migrated as the daemon migrates it) is filled in SQL with CLIENTS
clients (each with a YCLIENTS id and a phone in `links`, one booking and one deal naming them) and VISITS visits
spread over two years, and their derived fields are recomputed as an import does. Then, over CALLS calls each on
random clients, the median and p99 latency of:

  - `client_of(system, id)` and `client_of("phone", phone)` (who is this: by a system's id, by a phone);
  - `related("booking", client)` and `related("deal", client)` (the index on the `client` field);
  - `visits_of(client)` and `visits_of(client, since)` (the index on client and time);
  - a client's derived fields as rules read them (`entity` + the view's money and days).

Target: under 1 ms each. Then the ingestion of INGEST visits into that store, timed end to end:
`automator import visits` of a CSV (persons matched by id and phone, links written, visits kept once, derived
fields recomputed in SQL; about ten visits a client, a third of the clients known by id, a third by phone, a third
new) and `automator backfill`'s ingestion of the same number of visit events. Target: under
60 s for 1,000,000.

`--small`: 10,000 clients, 100,000 visits, 10,000 visits ingested — a check that it runs, in seconds. Do not run the
full size on a machine others are testing on: it writes about 3 GB and keeps two cores busy for minutes.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automator import history  # noqa: E402
from automator.ingest import backfill, import_visits  # noqa: E402
from automator.model import EntityRef, Event  # noqa: E402
from automator.store.sqlite import SqliteStore  # noqa: E402

FULL = {"clients": 1_000_000, "visits": 10_000_000, "ingest": 1_000_000}
SMALL = {"clients": 10_000, "visits": 100_000, "ingest": 10_000}
CALLS = 1000
TZ = ZoneInfo("Europe/Moscow")
START = datetime(2024, 3, 1, tzinfo=timezone.utc)
SPAN_S = 2 * 365 * 86400
TARGET_MS = 1.0
TARGET_INGEST_S = 60.0


def fill(store: SqliteStore, clients: int, visits: int) -> dict[str, float]:
    """The synthetic store, in SQL (recursive counters: no Python row by row); seconds per part."""
    conn = store.db.conn
    took: dict[str, float] = {}
    started = time.perf_counter()
    with store.atomic():
        conn.execute("""
            insert into entities (kind, id, fields, prev, updated_at)
            with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
            select 'client', i, json_object('name', 'Клиент ' || i, 'phone', printf('+7916%07d', i),
                                            'ids', json_object('booking', cast(i as text))),
                   null, '2026-03-01T00:00:00.000000+00:00' from n""", [clients])
        conn.execute("""
            insert into links (system, ext_id, client, at)
            with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
            select 'booking', cast(i as text), cast(i as text), '2026-03-01T00:00:00.000000+00:00' from n
            union all
            select 'phone', printf('+7916%07d', i), cast(i as text), '2026-03-01T00:00:00.000000+00:00' from n""",
                     [clients])
        for kind, extra in (("booking", "'status', 'confirmed'"), ("deal", "'stage', 'new'")):
            conn.execute(f"""
                insert into entities (kind, id, fields, prev, updated_at)
                with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
                select '{kind}', i, json_object('client', cast(i as text), {extra}), null,
                       '2026-03-01T00:00:00.000000+00:00' from n""", [clients])
    took["clients, links, bookings, deals"] = time.perf_counter() - started
    started = time.perf_counter()
    step = max(SPAN_S // max(visits // clients, 1), 1)
    chunk = 1_000_000
    for first in range(0, visits, chunk):
        with store.atomic():
            conn.execute(f"""
                insert into visits (id, client, at, kind, branch, services, category, staff, amount, currency,
                                    booking, source)
                with recursive n(i) as (select ? union all select i + 1 from n where i < ?)
                select 'booking:' || i, cast(i % {clients} + 1 as text),
                       strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', {int(START.timestamp())} + (i / {clients}) * {step}
                                + (i % 86400), 'unixepoch'),
                       case when i % 10 = 0 then 'purchase' else 'visit' end, 'main', '["Осмотр"]',
                       case i % 3 when 0 then 'Стоматология' when 1 then 'Терапия' else null end, 'Ольга',
                       100000 + (i % 7) * 25050, 'RUB', null, 'booking' from n""",
                         [first, min(first + chunk, visits) - 1])
    took["visits"] = time.perf_counter() - started
    started = time.perf_counter()
    batch = 100_000
    for first in range(1, clients + 1, batch):
        store.recompute_history([str(i) for i in range(first, min(first + batch, clients + 1))],
                                datetime.now(timezone.utc))
    took["derived fields recomputed"] = time.perf_counter() - started
    return took


def latency(call: Callable[[int], Any], clients: int, rng: random.Random) -> tuple[float, float]:
    """Median and p99 milliseconds of CALLS calls on random clients."""
    times = []
    gc.collect()
    gc.disable()  # the store's reads, not a collection that happens to fall in one of them
    try:
        for _ in range(CALLS):
            who = rng.randrange(1, clients + 1)
            started = time.perf_counter()
            call(who)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        gc.enable()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def reads(store: SqliteStore, clients: int) -> dict[str, tuple[float, float]]:
    rng = random.Random(13)
    now = datetime.now(TZ)
    since = START + timedelta(seconds=SPAN_S * 3 // 4)  # the last quarter of the history: a few visits each

    def derived(i: int) -> Any:
        entity = store.entity(EntityRef("client", str(i)))
        assert entity is not None
        return history.shown(dict(entity.fields), now, TZ)

    calls: dict[str, Callable[[int], Any]] = {
        "client_of(booking, id)": lambda i: store.client_of("booking", str(i)),
        "client_of(phone, +7…)": lambda i: store.client_of("phone", f"+7916{i:07d}"),
        "related(booking, client)": lambda i: store.related("booking", str(i)),
        "related(deal, client)": lambda i: store.related("deal", str(i)),
        "visits_of(client)": lambda i: store.visits_of(str(i)),
        "visits_of(client, since)": lambda i: store.visits_of(str(i), since),
        "derived fields (entity + view)": derived,
    }
    for call in calls.values():  # each query planned and its pages warm once before it is timed
        call(1)
    return {name: latency(call, clients, rng) for name, call in calls.items()}


def write_csv(path: Path, count: int, clients: int) -> None:
    """COUNT visits of COUNT / 10 clients (a clinic's export: about ten visits each): a third of them known by their
    YCLIENTS id, a third known by their phone only, a third new (an id and a phone the store has never seen)."""
    people = max(count // 10, 1)
    with path.open("w", encoding="utf-8") as out:
        out.write("client,phone,at,amount,visit,category,services\n")
        for i in range(count):
            at = (START + timedelta(seconds=(i * 7919) % SPAN_S)).isoformat()
            amount = f"{1000 + i % 5000}.{i % 100:02d}"
            who = i % people
            known = who * (clients // people or 1) % clients + 1
            if who % 3 == 0:
                out.write(f"{known},,{at},{amount},imp{i},Терапия,Осмотр\n")
            elif who % 3 == 1:
                out.write(f",+7916{known:07d},{at},{amount},,Стоматология,Пломба|Осмотр\n")
            else:
                out.write(f"{clients + who},+7903{who:07d},{at},{amount},imp{i},,\n")


async def events(count: int, clients: int) -> AsyncIterator[Event]:
    """A backfill as a connector yields it: each client once, then the visits."""
    touched = min(count // 10 or 1, clients)
    for i in range(1, touched + 1):
        yield Event(id=f"c{i}", type="client.updated", at=START, entity=EntityRef("client", str(i)),
                    data={"name": f"Клиент {i}", "phone": f"+7916{i:07d}"}, source="booking")
    for i in range(count):
        yield Event(id=f"v{i}", type="visit.completed", at=START, entity=EntityRef("client", str(i % touched + 1)),
                    data={"visit": f"bf{i}", "at": (START + timedelta(seconds=i * 61)).isoformat(),
                          "amount": f"{500 + i % 900}.00", "service_category": "Терапия"}, source="booking")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10,000 clients, 100,000 visits: a quick check")
    args = parser.parse_args(argv)
    size = SMALL if args.small else FULL
    out: dict[str, Any] = {"size": size}
    with tempfile.TemporaryDirectory(prefix="automator-history-") as tmp:
        store = SqliteStore(str(Path(tmp) / "automator.db"))
        print(f"filling a store: {size['clients']:,} clients, {size['visits']:,} visits …", flush=True)
        built = fill(store, size["clients"], size["visits"])
        for part, seconds in built.items():
            print(f"  {part:<34} {seconds:8.1f} s")
        out["fill_s"] = built
        print(f"\nstore reads, {CALLS:,} calls each on random clients (target < {TARGET_MS:g} ms):")
        print(f"  {'read':<34} {'median ms':>10} {'p99 ms':>10}")
        measured = reads(store, size["clients"])
        for name, (median, p99) in measured.items():
            print(f"  {name:<34} {median:10.3f} {p99:10.3f}{'' if p99 < TARGET_MS else '  over target'}")
        out["reads_ms"] = {name: {"median": m, "p99": p} for name, (m, p) in measured.items()}

        csv = Path(tmp) / "visits.csv"
        write_csv(csv, size["ingest"], size["clients"])
        now = datetime.now(timezone.utc)
        started = time.perf_counter()
        counts = import_visits(store, csv, "booking", TZ, now)
        imported = time.perf_counter() - started
        started = time.perf_counter()
        filled = asyncio.run(backfill(store, "booking", events(size["ingest"], size["clients"]), now))
        backfilled = time.perf_counter() - started
        print(f"\ningesting {size['ingest']:,} visits into that store (target < {TARGET_INGEST_S:g} s for 1,000,000):")
        print(f"  import visits (CSV)      {imported:8.1f} s  {counts.new:,} new, {counts.clients:,} clients "
              f"recomputed, {size['ingest'] / imported:,.0f} visits/s")
        print(f"  backfill (events)        {backfilled:8.1f} s  {filled.new:,} new, {filled.clients:,} clients "
              f"recomputed, {size['ingest'] / backfilled:,.0f} visits/s")
        out["ingest_s"] = {"import": imported, "backfill": backfilled}
        store.close()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
