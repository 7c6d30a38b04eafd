"""Benchmark: accruals into the loyalty ledger (issue 16's target: 10,000 a second).

Two rates, each the median of 3 runs, in a SQLite store on disk (synchronous=NORMAL, as `--synchronous NORMAL`;
the daemon's default FULL adds one fsync per batch, not per row):
  - through the engine's real path: `decide()` of paid visits (`visit.completed` of 10,000 clients) in a project
    whose rule accrues 5 % of each payment with a 365-day expiry (`loyalty.accrue`, the engine's action: the row,
    its expiry and notice timers, the visit in the history, the client's derived fields), then the worker's batch
    write (`Store.write_all` of 500 decisions in one transaction); accruals per second of wall time, and the
    split between deciding and writing;
  - the same visits accrued by loyalty.yaml's points program inside decide() instead of a rule (`points: {percent:
    5, expires: 365d}`: the program's row, its timers, the client's first tier-less visit);
  - the raw write: `Store.put_ledger` of accrual rows in batches of 10,000 (`insert or ignore` by id).
Then the store's size on disk, and bytes per ledger row. Deterministic inputs. `--quick`: 5,000 visits a run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from automator.config.load import load_project
from automator.core.decide import decide
from automator.loyalty.ledger import Entry
from automator.model import Entity, EntityRef, Event
from automator.store.codec import writes_of
from automator.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
CLIENTS = 10_000
BATCH = 500
RAW_BATCH = 10_000
RUNS = 3
CONFIG = """\
timezone: Europe/Moscow
connectors:
  sms: {type: local}
  desk:
    type: local
    events:
      visit.completed: {entity: client}
"""
RULES = """\
rules:
  - id: bonus
    when: {event: visit.completed, where: "event.amount > 0"}
    do:
      - loyalty.accrue: {amount: "{{ event.amount * 0.05 }}", reason: "Бонусы за визит", expires: 365d}
"""
LOYALTY = "notice: 7d\nprograms:\n  bonus: {default: true}\n"
# The program that accrues by itself: the same 5 %, lapsing in 365 days.
LOYALTY_PROGRAM = "notice: 7d\nprograms:\n  bonus: {default: true, points: {percent: 5, expires: 365d}}\n"


def project_in(folder: Path, *, loyalty: bool = True, rule: bool = True):  # type: ignore[no-untyped-def]
    """The bench's project; without `loyalty`, the same visits go into the history and no rule runs; without
    `rule`, loyalty.yaml without the accruing rule (a program's mechanic accrues)."""
    folder.mkdir()
    (folder / "automator.yaml").write_text(CONFIG)
    (folder / "rules").mkdir()
    if loyalty:
        (folder / "loyalty.yaml").write_text(LOYALTY if rule else LOYALTY_PROGRAM)
    if loyalty and rule:
        (folder / "rules" / "bonus.yaml").write_text(textwrap.dedent(RULES))
    project, problems = load_project(folder)
    assert project is not None, problems
    return project


def visits(start: int, count: int) -> list[Event]:
    """Paid visits, one client after another, amounts 500.00–5,499.50 in steps of 0.50."""
    out = []
    for n in range(start, start + count):
        at = T0 + timedelta(seconds=n)
        amount = 50000 + (n * 7919) % 10000 * 50
        out.append(Event(id=f"v{n}", type="visit.completed", at=at, entity=EntityRef("client", str(n % CLIENTS)),
                         source="desk", data={"visit": str(n), "amount": f"{amount // 100}.{amount % 100:02d}",
                                              "currency": "RUB"}))
    return out


def engine_run(project, store: SqliteStore, start: int, count: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Decide and write `count` visits in batches; (wall seconds, deciding seconds, writing seconds)."""
    deciding = writing = 0.0
    began = time.perf_counter()
    for first in range(start, start + count, BATCH):
        batch = visits(first, min(BATCH, start + count - first))
        t = time.perf_counter()
        decisions = [decide(project, store, e, e.at) for e in batch]
        deciding += time.perf_counter() - t
        t = time.perf_counter()
        store.write_all([writes_of(d) for d in decisions])
        writing += time.perf_counter() - t
    return time.perf_counter() - began, deciding, writing


def raw_run(store: SqliteStore, start: int, count: int) -> float:
    rows = [Entry(id=f"raw/{n}", client=str(n % CLIENTS), account="points:bonus", kind="accrue",
                  amount=2500 + n % 1000, at=T0 + timedelta(seconds=n), expires_at=T0 + timedelta(days=365),
                  reason="Бонусы за визит", event=f"raw-{n}", rule="bench") for n in range(start, start + count)]
    began = time.perf_counter()
    for first in range(0, len(rows), RAW_BATCH):
        store.put_ledger(rows[first:first + RAW_BATCH])
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 visits a run instead of 20,000")
    args = parser.parse_args()
    per_run = 5_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        project = project_in(root / "project")
        store = SqliteStore(root / "bench.db", synchronous="NORMAL")
        for n in range(CLIENTS):
            store.put_entity(Entity(EntityRef("client", str(n)), {"name": f"Клиент {n}"}, T0))
        bare_project = project_in(root / "bare", loyalty=False)
        bare_store = SqliteStore(root / "bare.db", synchronous="NORMAL")
        for n in range(CLIENTS):
            bare_store.put_entity(Entity(EntityRef("client", str(n)), {"name": f"Клиент {n}"}, T0))
        program_project = project_in(root / "program", rule=False)
        program_store = SqliteStore(root / "program.db", synchronous="NORMAL")
        for n in range(CLIENTS):
            program_store.put_entity(Entity(EntityRef("client", str(n)), {"name": f"Клиент {n}"}, T0))
        engine, program, bare, raw = [], [], [], []
        for run in range(RUNS):  # in turn, so that none has the machine to itself
            engine.append(engine_run(project, store, run * per_run, per_run))
            program.append(engine_run(program_project, program_store, run * per_run, per_run))
            bare.append(engine_run(bare_project, bare_store, run * per_run, per_run))
            raw.append(raw_run(store, run * per_run * 5, per_run * 5))
        bare_store.close()
        program_store.close()
        rows = store.db.conn.execute("select count(*) from ledger").fetchone()[0]
        timers = store.db.conn.execute("select count(*) from timers").fetchone()[0]
        store.close()
        size = sum(p.stat().st_size for p in root.glob("bench.db*"))
    wall = statistics.median(e[0] for e in engine)
    print(f"accruals through decide() + the worker's batch write ({per_run:,} paid visits a run, batches of "
          f"{BATCH}, median of {RUNS}):")
    print(f"  {per_run / wall:10,.0f} accruals/s   ({wall / per_run * 1e6:.0f} µs each: deciding "
          f"{statistics.median(e[1] for e in engine) / per_run * 1e6:.0f} µs, writing "
          f"{statistics.median(e[2] for e in engine) / per_run * 1e6:.0f} µs)")
    program_wall = statistics.median(e[0] for e in program)
    print(f"  accrued by a points program's mechanic in decide() (no rule): {per_run / program_wall:,.0f} accruals/s "
          f"({program_wall / per_run * 1e6:.0f} µs each: deciding {statistics.median(e[1] for e in program) / per_run * 1e6:.0f} µs, "
          f"writing {statistics.median(e[2] for e in program) / per_run * 1e6:.0f} µs)")
    bare_wall = statistics.median(e[0] for e in bare)
    print(f"  the same visits with no loyalty (history only, no rule): {per_run / bare_wall:,.0f} visits/s "
          f"({bare_wall / per_run * 1e6:.0f} µs each): the accrual adds {(wall - bare_wall) / per_run * 1e6:.0f} µs")
    raw_wall = statistics.median(raw)
    print(f"raw ledger writes (Store.put_ledger, batches of {RAW_BATCH:,}, {per_run * 5:,} rows a run, median of "
          f"{RUNS}):")
    print(f"  {per_run * 5 / raw_wall:10,.0f} rows/s")
    print(f"store: {size / 1e6:.1f} MB for {rows:,} ledger rows, {timers:,} timers, {CLIENTS:,} clients "
          f"({size / rows:.0f} bytes a row, everything included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
