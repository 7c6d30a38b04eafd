"""Benchmark: routing and evaluating one event with 100, 1,000 and 10,000 rules loaded, of which 10 match."""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _project import write_project  # noqa: E402

from automator.config.load import load_project  # noqa: E402
from automator.core.decide import decide  # noqa: E402
from automator.model import Entity, EntityRef, Event  # noqa: E402
from automator.store.sqlite import SqliteStore  # noqa: E402

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Moscow"))
MATCHING = 10
SIZES = (100, 1000, 10000)
REPEAT = 300


def store() -> SqliteStore:
    db = SqliteStore()
    db.put_entity(Entity(EntityRef("client", "7"), {"name": "Анна", "phone": "+79161234567", "visits": 3,
                                                    "last_visit_at": "2026-02-01T10:00:00+03:00"}, NOW))
    db.put_entity(Entity(EntityRef("booking", "1"), {"client": 7, "status": "confirmed", "branch": "main"}, NOW))
    return db


def timings(project: object, db: SqliteStore, event: Event) -> list[float]:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        decide(project, db, event, NOW)
        times.append(time.perf_counter() - start)
    return sorted(times)


def main() -> dict[str, float]:
    arrived = Event(id="e1", type="booking.updated", at=NOW, entity=EntityRef("booking", "1"),
                    data={"status": "arrived"})
    nothing = Event(id="e2", type="call.missed", at=NOW, entity=EntityRef("client", "7"), data={})
    results: dict[str, float] = {}
    print(f"decide() for booking.updated {{status: arrived}}, {MATCHING} rules match (median / p90 of {REPEAT}):")
    for size in SIZES:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            project, problems = load_project(write_project(Path(folder), size, matching=MATCHING))
            loaded = time.perf_counter() - start
            assert project is not None, problems
            db = store()
            decision = decide(project, db, arrived, NOW)
            assert len(decision.effects) == MATCHING, decision  # correctness, not timing
            times = timings(project, db, arrived)
            idle = timings(project, db, nothing)
        median, p90 = statistics.median(times) * 1000, times[int(len(times) * 0.9)] * 1000
        results[f"route_{size}_ms"] = median
        print(f"  {size:>6} rules: {median:.3f} ms / {p90:.3f} ms   (an event no rule listens to: "
              f"{statistics.median(idle) * 1000:.3f} ms; project loaded in {loaded:.1f} s)")
    ratio = results[f"route_{SIZES[-1]}_ms"] / results[f"route_{SIZES[0]}_ms"]
    print(f"  {SIZES[-1]:,} vs {SIZES[0]:,} rules: x{ratio:.2f} (flat: rules that cannot match cost nothing; "
          "target < 1 ms at 10,000)")
    return results


if __name__ == "__main__":
    main()
