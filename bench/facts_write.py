"""Benchmark: what keeping the reports' rows (automator/facts.py, store/facts.py) adds to the engine's hot path.

Two costs, each with and without the rows, on the example clinic project (its channels and pipelines), in a
SQLite store on disk (synchronous=NORMAL, so the figure is the statements', not the disk's):
  - deciding: decide() of a new deal, a deal moved to a stage, a booking changed, with facts_of (as the engine
    runs it) and with it replaced by one that returns nothing, the two taking turns on the same events;
  - writing: `Store.write_all` of batches of 200 decisions (the worker's batch), the same decisions written with
    their facts and with the facts left out; per event, in microseconds.
Deterministic inputs; figures are medians of several rounds, in this process's CPU time (a busy machine's other
processes show less in it than in wall time; the writes commit without an fsync). A run takes about 20 s.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from automator import facts as facts_module
from automator.config.load import load_project
from automator.core import decide as decide_module
from automator.core.decide import decide
from automator.facts import NO_FACTS, facts_of
from automator.model import EntityRef, Event
from automator.store.codec import writes_of
from automator.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
BATCH = 200
ROUNDS = 15


def events(start: int, count: int) -> list[Event]:
    """Deals made and moved, and bookings changed, a third each, as a CRM and a booking system send them."""
    out = []
    for n in range(start, start + count):
        at = T0 + timedelta(seconds=n)
        if n % 3 == 0:
            out.append(Event(id=f"e{n}", type="deal.created", at=at, entity=EntityRef("deal", str(n)), source="crm",
                             data={"pipeline": "first_sales", "stage": "new", "client": str(n % 5000),
                                   "lead_source": "WEB", "utm_source": "vk", "utm_campaign": "spring",
                                   "responsible": "7", "amount": "1500.00"}))
        elif n % 3 == 1:
            out.append(Event(id=f"e{n}", type="deal.updated", at=at, entity=EntityRef("deal", str(n - 1)),
                             source="crm", data={"stage": "in_progress", "modified_by": "3"}))
        else:
            out.append(Event(id=f"e{n}", type="booking.updated", at=at, entity=EntityRef("booking", str(n)),
                             source="booking", data={"status": "arrived", "client": str(n % 5000), "staff": "12",
                                                     "amount": "2500.00", "lead_source": "online",
                                                     "starts_at": "2026-03-05T15:00:00+03:00"}))
    return out


def main() -> None:
    project, problems = load_project(ROOT)
    assert project is not None, problems
    config = project.config
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "bench.db", synchronous="NORMAL")
        facts_times, decide_times, bare_times, with_rows, without_rows = [], [], [], [], []
        real = facts_module.facts_of
        serial = 0
        for _ in range(ROUNDS):
            batch = events(serial, BATCH)
            serial += BATCH
            decisions = []
            for bare in (False, True) if len(decide_times) % 2 else (True, False):  # in turn: neither always first
                decide_module.reports_facts.facts_of = (  # type: ignore[assignment]
                    (lambda *args: NO_FACTS) if bare else real)
                start = time.process_time()
                made = [decide(project, store, e, e.at) for e in batch]
                (bare_times if bare else decide_times).append((time.process_time() - start) / BATCH)
                decisions = decisions if bare else made
            decide_module.reports_facts.facts_of = real  # type: ignore[assignment]
            start = time.process_time()
            for d in decisions:
                facts_of(d.event, d.entity_before, d.entity_after, config.channels, project.pipelines,
                         config.timezone)
            facts_times.append((time.process_time() - start) / BATCH)
            writes = [writes_of(d) for d in decisions]
            bare = [replace(w, facts=None) for w in writes]
            # The same entities and runs each time, so both writes do the same work but for the reports' rows.
            start = time.process_time()
            store.write_all(bare)
            without_rows.append((time.process_time() - start) / BATCH)
            start = time.process_time()
            store.write_all(writes)
            with_rows.append((time.process_time() - start) / BATCH)
        store.close()
    us = 1e6
    print(f"per event, median of {ROUNDS} batches of {BATCH} (deals made, deals moved, bookings changed):")
    print(f"  decide() without facts_of:           {statistics.median(bare_times) * us:8.1f} µs")
    print(f"  decide() with facts_of:              {statistics.median(decide_times) * us:8.1f} µs")
    print(f"  facts_of alone:                      {statistics.median(facts_times) * us:8.1f} µs")
    print(f"  write_all without the reports' rows: {statistics.median(without_rows) * us:8.1f} µs")
    print(f"  write_all with them:                 {statistics.median(with_rows) * us:8.1f} µs")
    print(f"  the rows' share of the write:        "
          f"{(statistics.median(with_rows) - statistics.median(without_rows)) * us:8.1f} µs")


if __name__ == "__main__":
    sys.exit(main())
