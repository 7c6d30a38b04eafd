"""Benchmark: RFM segments at scale (issue 16) — the full rescoring of every client, and one client's rescoring
after a visit as decide() does it.

A store of CLIENTS clients and VISITS visits and purchases over the last 365 days (all of them in segments.yaml's
365-day window: the most a rescoring reads) is filled deterministically in SQL (a multiplicative hash of the row
number and `--seed`: half the visits spread evenly, half skewed to regulars, amounts 500–10,000 ₽, one in twenty a purchase), with
each client's entity, and cached under the temporary folder by its parameters. Then:

  - `automator segments compute` on the store never scored (every client moves from no segment), with its write;
    then, for quantiles, after segments.yaml changed (most clients move);
  - the daily rescoring a day later on that scored store (`automator.rescoring.rescore_all`, what the daemon runs),
    median of `--runs` (3), each in a child process: time split into reading (SQLite groups each client's visits
    through its covering index, read through ADBC into DuckDB) and scoring, the changes listed, and the child's
    peak memory (ru_maxrss); by thresholds (the shipped segments.yaml) and by quantiles, target under 10 s;
  - one client's rescoring after a visit, through decide() on a `visit.completed` (the visit recorded, the client
    rescored from their visits in the window, segment.changed when they moved) against decide() of the same event
    in a project without segments.yaml: the difference is the rescoring's cost; median over `--calls` (1000)
    random clients, target under 1 ms.

`--quick`: 10,000 clients and 100,000 visits, a check that it runs. The full size writes about 1.5 GB once.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automator.client_segment import rescore  # noqa: E402
from automator.config.load import load_project  # noqa: E402
from automator.core.decide import decide  # noqa: E402
from automator.model import EntityRef, Event  # noqa: E402
from automator.rescoring import context, rescore_all, write_changes  # noqa: E402
from automator.store.sqlite import SqliteStore  # noqa: E402
from reports import _hash, fresh_store  # noqa: E402  (bench/ is on sys.path: the reports bench's fill helpers)

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
DAY_AFTER = NOW + timedelta(days=1)  # the daily rescoring's: recency aged a day since the first scoring
SPAN_S = 365 * 86400
FULL = {"clients": 1_000_000, "visits": 10_000_000}
QUICK = {"clients": 10_000, "visits": 100_000}
RUNS = 3
CALLS = 1000
TARGET_S = 10.0
TARGET_MS = 1.0
QUANTILES = """\
rfm:
  window: 365d
  recency: {quantiles: 5}
  frequency: {quantiles: 5}
  monetary: {of: average, quantiles: 5}
"""


def store_path(clients: int, visits: int, seed: int) -> Path:
    """The cached store for these parameters."""
    return Path(tempfile.gettempdir()) / f"automator-bench-segments-{clients}-{visits}-{seed}-v4.db"


def fill(path: Path, clients: int, visits: int, seed: int) -> None:
    """Fill a new store at `path`: visits first (no index while they go in), then each client's entity."""
    part, db = fresh_store(path)
    db.execute("drop index if exists visits_by_client")  # made again once the visits are in: faster in one go
    start = int(NOW.timestamp()) - SPAN_S
    # Every client's first visit, then half the rest spread evenly over the clients and half skewed to a few (the
    # product of two uniform numbers): regulars with dozens of visits, and most clients with a handful.
    client = (f"case when n <= {clients} then n when n % 2 = 0 then 1 + ({_hash('n', 6, seed)} >> 11) % {clients} else "
              f"1 + ({_hash('n', 1, seed)} % 65536) * ({_hash('n', 2, seed)} % 65536) / 4294967296.0 * {clients} "
              "end")
    db.execute(f"""
        insert into visits (id, client, at, kind, branch, services, category, staff, amount, currency, booking, source)
        with recursive n(n) as (select 1 union all select n + 1 from n where n < {visits})
        select 'b:' || n, cast(cast({client} as integer) as text),
               strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', {start} + {_hash('n', 3, seed)} % {SPAN_S}, 'unixepoch'),
               case when {_hash('n', 4, seed)} % 20 = 0 then 'purchase' else 'visit' end,
               'main', '[]', null, null, (500 + {_hash('n', 5, seed)} % 191 * 50) * 100, 'RUB', null, 'bench'
        from n""")
    db.execute("create index visits_by_client on visits (client, at, kind, amount)")  # as store.schema's m006
    # Every client who came has an entity with their visit count (what the product derives; `ever` in rescoring).
    db.execute("""
        insert into entities (kind, id, fields, prev, updated_at)
        select 'client', client, json_object('name', 'Клиент ' || client, 'visit_count', sum(kind = 'visit')),
               null, '2026-12-01T00:00:00.000000+00:00'
        from visits group by client""")
    db.execute("pragma journal_mode=wal")
    db.commit()
    db.close()
    part.rename(path)


def project(folder: Path, segments: str | None) -> Any:
    """A project with the shipped segments.yaml (or `segments`' rfm over its segments), or none at all."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "automator.yaml").write_text("timezone: Europe/Moscow\n")
    shipped = (REPO / "segments.yaml").read_text()
    if segments is not None:
        text = segments + shipped[shipped.index("rescore:"):] if segments else shipped
        (folder / "segments.yaml").write_text(text)
    loaded, problems = load_project(folder)
    assert loaded is not None, problems
    return loaded


def child(path: Path, mode: str) -> dict[str, Any]:
    """One full rescoring in this process (a child of the benchmark): its times and this process's peak memory."""
    with tempfile.TemporaryDirectory() as folder:
        loaded = project(Path(folder), QUANTILES if mode == "quantiles" else "")
    found = rescore_all(path, loaded.segments, DAY_AFTER, loaded.config.timezone, context(loaded, DAY_AFTER))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**found.seconds, "changes_n": len(found.changes), "clients": found.clients,
            "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


def compute(copy: Path, work: Path, mode: str) -> dict[str, float]:
    """`automator segments compute` with segments.yaml by `mode` (the store left scored as the daemon keeps it)."""
    loaded = project(work / mode, QUANTILES if mode == "quantiles" else "")
    started = time.perf_counter()
    found = rescore_all(copy, loaded.segments, NOW, loaded.config.timezone, context(loaded, NOW))
    scored = time.perf_counter()
    store = SqliteStore(str(copy), synchronous="NORMAL")
    write_changes(store, found, loaded.segments, NOW)
    store.close()
    done = time.perf_counter()
    return {"score_s": scored - started, "write_s": done - scored, "written": len(found.changes)}


def incremental(path: Path, work: Path, calls: int, clients: int, seed: int) -> dict[str, float]:
    """decide() of a new visit with segments.yaml and without: per call, the median and p99 in ms."""
    with_segments, without = project(work / "with", ""), project(work / "without", None)
    store = SqliteStore(str(path), read_only=True)
    rng = random.Random(seed)
    timings: dict[str, list[float]] = {"with": [], "without": []}
    for call in range(calls):
        client = str(rng.randrange(1, clients // 2))
        at = NOW - timedelta(hours=1)
        event = Event(id=f"bench-{call}", type="visit.completed", at=at, entity=EntityRef("client", client),
                      source="booking", data={"visit": f"new-{call}", "at": at.isoformat(), "amount": "2500.00"})
        for name, loaded in (("without", without), ("with", with_segments)):
            started = time.perf_counter()
            decision = decide(loaded, store, event, NOW)
            timings[name].append((time.perf_counter() - started) * 1000)
            if name == "with":
                assert decision.entity_after is not None and "rfm" in decision.entity_after.fields
    # The rescoring alone, as decide() calls it (the client's visits in the window read, scored, classified).
    config, tz = with_segments.segments, with_segments.config.timezone
    ectx = context(with_segments, NOW)
    timings["alone"] = []
    for _ in range(calls):
        client = str(rng.randrange(1, clients // 2))
        started = time.perf_counter()
        rescore(config, store, client, NOW, tz, ectx)
        timings["alone"].append((time.perf_counter() - started) * 1000)
    store.close()
    out = {}
    for name, values in timings.items():
        values.sort()
        out[f"{name}_median_ms"] = statistics.median(values)
        out[f"{name}_p99_ms"] = values[int(len(values) * 0.99) - 1]
    out["rescoring_median_ms"] = out["alone_median_ms"]
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 clients, 100,000 visits: a check that it runs")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--child", nargs=2, metavar=("DB", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1])))
        return {}
    size = QUICK if args.quick else FULL
    path = store_path(size["clients"], size["visits"], args.seed)
    if path.exists():
        print(f"store: {path} (cached)")
    else:
        started = time.perf_counter()
        fill(path, size["clients"], size["visits"], args.seed)
        print(f"store: {path} filled in {time.perf_counter() - started:.1f} s, {path.stat().st_size / 2**20:,.0f} MB")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    clients = db.execute("select count(*) from entities where kind = 'client'").fetchone()[0]
    visits = db.execute("select count(*) from visits").fetchone()[0]
    db.close()
    print(f"{clients:,} clients, {visits:,} visits and purchases, all within the 365-day window "
          f"(load average {os.getloadavg()[0]:.1f})")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        scored = work / "scored.db"
        shutil.copy(path, scored)
        for mode in ("thresholds", "quantiles"):
            # The first scoring of a store (thresholds), then segments.yaml changed to quantiles: every client moves.
            first = compute(scored, work, mode)
            print(f"`segments compute` by {mode}, {'a first scoring' if mode == 'thresholds' else 'after the change'}:"
                  f" scored {first['score_s']:.2f} s, {first['written']:,.0f} clients written in "
                  f"{first['write_s']:.2f} s")
            figures.update({f"compute_{mode}_{k}": v for k, v in first.items()})
            runs = []
            for _ in range(args.runs):
                out = subprocess.run([sys.executable, __file__, "--child", str(scored), mode], check=True,
                                     capture_output=True, text=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            middle = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]
            peak = max(r["peak_mb"] for r in runs)
            verdict = "ok" if middle["total"] < TARGET_S else "OVER"
            print(f"full rescoring by {mode:<10} {middle['total']:6.2f} s (read {middle['read']:5.2f} s, score "
                  f"{middle['score']:5.2f} s, {middle['changes_n']:,} changes listed {middle['changes']:5.2f} s)  "
                  f"CPU {middle['cpu']:5.1f} s  peak {peak:5.0f} MB  "
                  f"[{verdict}: target < {TARGET_S:g} s; median of {args.runs}]")
            figures[f"full_{mode}_s"] = middle["total"]
            figures[f"full_{mode}_peak_mb"] = peak
        inc = incremental(scored, work, args.calls, clients, args.seed)
    verdict = "ok" if inc["rescoring_median_ms"] < TARGET_MS else "OVER"
    print(f"decide() of a visit, median / p99 over {args.calls}: {inc['with_median_ms']:.3f} / "
          f"{inc['with_p99_ms']:.3f} ms with segments, {inc['without_median_ms']:.3f} / {inc['without_p99_ms']:.3f} ms "
          f"without; the rescoring alone {inc['alone_median_ms']:.3f} / {inc['alone_p99_ms']:.3f} ms "
          f"[{verdict}: target < {TARGET_MS:g} ms median]")
    figures.update(inc)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
