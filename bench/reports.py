"""Benchmark: the four reports (issue 15) over 1,000,000 leads and 10,000,000 events and visits.

A store (SQLite, migrated as the daemon migrates it) is filled deterministically in SQL (recursive counters and an
integer hash of the row number and the seed: no Python row by row) with LEADS leads and deals over two years
(first and last touch over 8 channels, one an aggregator; 3 campaigns each), about 3 stage moves a lead, 5 visits,
1 booking and 0.2 reviews a lead, each client's first channel, and spend per day, channel and campaign. The file is
cached under the temporary folder, named by its parameters, so a second run does not fill it again.

Then each report (channels, funnel, retention, staff) over the last PERIOD_DAYS days is computed RUNS times, each
in a child process (at lower priority, as `automator report` runs: report_delivery.lower_priority), printing the median
time, its split between reading the SQLite snapshot (ADBC → DuckDB) and computing in DuckDB, and the child's peak
memory (ru_maxrss) and CPU time (user + system: on a machine others load, the wall time grows, this does not).
Last, one aggregate (visits' revenue by first channel over the period) in SQLite alone and in
DuckDB over the snapshot, to show why the reports compute in DuckDB. Target: each report under 10 s.

`--quick`: 100,000 leads (about a million rows) — a check that it runs, in under a minute. Run the full size only
on a quiet machine (nothing else benchmarking): it fills about 1.5 GB once and keeps both cores busy.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automator.channels import DEFAULTS  # noqa: E402
from automator.report_delivery import lower_priority  # noqa: E402
from automator.reports import REPORTS  # noqa: E402
from automator.reports.period import between  # noqa: E402
from automator.reports.snapshot import Limits, Snapshot  # noqa: E402
from automator.store.sqlite import SqliteStore  # noqa: E402

TZ = ZoneInfo("Europe/Moscow")
END = date(2026, 11, 30)                 # the data's last day; reports end here
SPAN_DAYS = 730
PERIOD_DAYS = 365
RUNS = 3
TARGET_S = 10.0
CHANNELS = ("site", "call_tracking", "vk", "instagram", "yandex_direct", "aggregator", "recommendation", "walk_in")
CAMPAIGNS = ("spring", "summer", "")
FULL = 1_000_000
QUICK = 100_000


def _hash(expr: str, salt: int, seed: int) -> str:
    """A deterministic pseudo-random non-negative integer of `expr` in SQLite SQL (a multiplicative hash)."""
    return f"((({expr}) * 2654435761 + {salt * 40503 + seed * 9973}) % 4294967296)"


def store_path(leads: int, seed: int) -> Path:
    """The cached store for these parameters."""
    return Path(tempfile.gettempdir()) / f"automator-bench-reports-{leads}-{seed}-v1.db"


def fresh_store(path: Path) -> tuple[Path, sqlite3.Connection]:
    """A new migrated store beside `path` (renamed to it once filled) opened for a bulk fill: no journal, no sync."""
    part = path.with_suffix(".part")
    part.unlink(missing_ok=True)
    SqliteStore(str(part)).close()
    db = sqlite3.connect(part)
    db.execute("pragma journal_mode=off")
    db.execute("pragma synchronous=off")
    return part, db


def fill(path: Path, leads: int, seed: int) -> dict[str, int]:
    """Fill a new store at `path`; the number of rows of each table."""
    part, db = fresh_store(path)
    clients = leads * 2 // 5
    start = int(datetime.combine(END - timedelta(days=SPAN_DAYS - 1), datetime.min.time(), TZ).timestamp())
    span = SPAN_DAYS * 86400
    h = lambda expr, salt: _hash(expr, salt, seed)  # noqa: E731
    channels, campaigns = json.dumps(list(CHANNELS)), json.dumps(list(CAMPAIGNS))
    counter = "with recursive n(i) as (select 0 union all select i + 1 from n where i < {count} - 1)"
    # Indexes are made after the rows: a bulk insert into indexed tables is several times slower.
    indexes = [row for row in db.execute("select name, sql from sqlite_master where type = 'index' and sql is not null "
                                         "and tbl_name in ('leads', 'stage_moves', 'visits', 'bookings', 'reviews')")]
    for name, _ in indexes:
        db.execute(f"drop index {name}")
    with db:
        db.execute(f"""
            insert into leads (id, kind, source, client, pipeline, stage, outcome, responsible, created_at,
                               qualified_at, closed_at, amount, currency, first_channel, first_campaign, first_at,
                               last_channel, last_campaign, last_at, raw_source)
            {counter.format(count=leads)}, l as (
                select i, {start} + {h('i', 1)} % {span} as created, {h('i', 2)} % 4 + 1 as steps,
                       {h('i', 3)} % 8 as ch, {h('i', 4)} % 3 as cmp, {h('i', 5)} % 10 as other from n)
            select 'deal:' || i, 'deal', 'crm', case when other = 0 then null else 'p' || ({h('i', 6)} % {clients}) end,
                   'sales', json_extract('["new", "contacted", "qualified", "won"]', '$[' || (steps - 1) || ']'),
                   case when steps = 4 then case when other < 6 then 'won' else 'lost' end else 'open' end,
                   'm' || (i % 12), created,
                   case when steps >= 3 then created + 2 * 86400 end,
                   case when steps = 4 then created + 5 * 86400 end,
                   case when steps = 4 and other < 6 then 100000 + ({h('i', 7)} % 50) * 10000 end, 'RUB',
                   json_extract('{channels}', '$[' || ch || ']'), json_extract('{campaigns}', '$[' || cmp || ']'),
                   created,
                   json_extract('{channels}', '$[' || case when other = 9 then (ch + 1) % 8 else ch end || ']'),
                   json_extract('{campaigns}', '$[' || cmp || ']'), created, 'src' || ch
            from l""")
        db.execute(f"""
            insert into stage_moves (record, pipeline, stage, from_stage, at, by, responsible, event)
            with k(step, stage, previous) as (values (0, 'new', null), (1, 'contacted', 'new'),
                                                     (2, 'qualified', 'contacted'), (3, 'won', 'qualified'))
            select l.id, 'sales', case when k.step = 3 and l.outcome = 'lost' then 'lost' else k.stage end,
                   k.previous, l.created_at + k.step * ({h('k.step + 4 * l.created_at', 8)} % 172800 + 3600),
                   null, l.responsible, 'e:' || l.id || ':' || k.step
            from leads l join k
              on k.step < case l.stage when 'new' then 1 when 'contacted' then 2 when 'qualified' then 3 else 4 end""")
        db.execute(f"""
            insert into visits (id, client, at, kind, branch, services, category, staff, amount, currency, booking,
                                source)
            {counter.format(count=leads * 5)}
            select 'booking:' || i, 'p' || ({h('i', 9)} % {clients}),
                   strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', {start} + {h('i', 10)} % {span}, 'unixepoch'),
                   'visit', 'b' || (i % 5), '[]', null, 's' || ({h('i', 11)} % 30),
                   case when i % 20 = 0 then 0 else 50000 + ({h('i', 12)} % 100) * 5000 end, 'RUB', null, 'booking'
            from n""")
        db.execute(f"""
            insert into bookings (id, source, client, staff, branch, status, created_at, starts_at, amount, channel)
            {counter.format(count=leads)}, b as (select i, {start} + {h('i', 13)} % {span} as created from n)
            select 'b' || i, 'booking', 'p' || ({h('i', 14)} % {clients}), 's' || ({h('i', 15)} % 30),
                   'b' || (i % 5), case when i % 12 = 0 then 'no_show' else 'visited' end, created,
                   created + {h('i', 16)} % (14 * 86400), null, null from b""")
        db.execute(f"""
            insert into reviews (id, client, at, score, staff, branch, booking)
            {counter.format(count=leads // 5)}
            select 'r' || i, 'p' || ({h('i', 17)} % {clients}), {start} + {h('i', 18)} % {span},
                   {h('i', 19)} % 11, case when i % 2 = 0 then 's' || ({h('i', 20)} % 30) end, null, null from n""")
        db.execute(f"""
            insert into client_channels (client, channel, campaign, at, record)
            {counter.format(count=clients)}
            select 'p' || i, json_extract('{channels}', '$[' || ({h('i', 21)} % 8) || ']'), '', 0, null from n""")
        db.execute(f"""
            insert into spend (day, channel, campaign, amount, currency, source, imported_at)
            {counter.format(count=SPAN_DAYS)}, c(ch) as (select value from json_each('{channels}')
                                                         where value not in ('aggregator', 'walk_in', 'recommendation')),
                 m(cmp) as (select value from json_each('{campaigns}'))
            select date({start}, 'unixepoch', '+' || (i + 1) || ' days'), c.ch, m.cmp,
                   100000 + {h('i * 31 + length(c.ch) * 7 + length(m.cmp)', 22)} % 2000000, 'RUB', 'bench',
                   '2026-12-01T00:00:00+00:00'
            from n, c, m""")
    for _, sql in indexes:
        db.execute(sql)
    db.commit()
    counts = {t: db.execute(f"select count(*) from {t}").fetchone()[0]
              for t in ("leads", "stage_moves", "visits", "bookings", "reviews", "client_channels", "spend")}
    db.execute("pragma journal_mode=wal")
    db.close()
    part.rename(path)
    return counts


def child(name: str, path: Path, threads: int | None) -> dict[str, Any]:
    """One report computed in this process (a child of the benchmark): its times and this process's peak memory."""
    lower_priority()  # as every report's process runs: the daemon first
    period = between(END - timedelta(days=PERIOD_DAYS - 1), END, TZ)
    now = datetime.combine(END + timedelta(days=1), datetime.min.time(), TZ)
    started = time.perf_counter()
    with Snapshot(path, Limits(threads=threads)) as snapshot:
        REPORTS[name](snapshot, period, {"by": None, "touch": "first", "stages": {}}, DEFAULTS, now)
        read = snapshot.read_seconds
    total = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"total": total, "read": read, "compute": total - read, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024}


def sqlite_vs_duckdb(path: Path) -> dict[str, float]:
    """Visits' revenue by the client's first channel over the period: SQLite alone, and DuckDB over the snapshot."""
    period = between(END - timedelta(days=PERIOD_DAYS - 1), END, TZ)
    since = datetime.fromtimestamp(period.start_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    started = time.perf_counter()
    expected = db.execute("select c.channel, sum(v.amount) from visits v join client_channels c using (client) "
                          "where v.at >= ? group by 1 order by 1", [since]).fetchall()
    sqlite_s = time.perf_counter() - started
    db.close()
    started = time.perf_counter()
    with Snapshot(path) as snapshot:
        snapshot.read("v", "visits", {"client": "text", "amount": "int"}, f"at >= '{since}'")
        snapshot.read("c", "client_channels", {"client": "text", "channel": "text"})
        read = time.perf_counter() - started
        computed = time.perf_counter()
        got = snapshot.duck.execute("select c.channel, sum(v.amount)::bigint from v join c using (client) "
                                    "group by 1 order by 1").fetchall()
        duck_s = time.perf_counter() - computed
    assert [tuple(r) for r in got] == [tuple(r) for r in expected], (got, expected)
    return {"sqlite_s": sqlite_s, "duckdb_read_s": read, "duckdb_compute_s": duck_s}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 leads: a check that it runs")
    parser.add_argument("--leads", type=int, help="how many leads (default 1,000,000; --quick 100,000)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--threads", type=int, help="DuckDB's threads (default: every core)")
    parser.add_argument("--only", action="append", choices=list(REPORTS), help="only this report (repeatable)")
    parser.add_argument("--child", nargs=2, metavar=("REPORT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.threads)))
        return {}
    leads = args.leads or (QUICK if args.quick else FULL)
    path = store_path(leads, args.seed)
    if path.exists():
        print(f"store: {path} (cached)")
    else:
        started = time.perf_counter()
        counts = fill(path, leads, args.seed)
        print(f"store: {path} filled in {time.perf_counter() - started:.1f} s, {path.stat().st_size / 2**20:,.0f} MB: "
              + ", ".join(f"{t} {n:,}" for t, n in counts.items())
              + f"; events and visits {sum(n for t, n in counts.items() if t not in ('client_channels', 'spend')):,}")
    print(f"reports over the last {PERIOD_DAYS} days, median of {args.runs} runs, each in a child process at "
          f"`automator report`'s priority (nice 10, SCHED_IDLE; load average {os.getloadavg()[0]:.1f} at the start):")
    figures: dict[str, float] = {}
    for name in args.only or REPORTS:
        runs = []
        for _ in range(args.runs):
            command = [sys.executable, __file__, "--child", name, str(path)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        middle = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]
        peak = max(r["peak_mb"] for r in runs)
        verdict = "ok" if middle["total"] < TARGET_S else "OVER"
        print(f"  {name:<10} {middle['total']:6.2f} s  (read {middle['read']:5.2f} s, compute {middle['compute']:5.2f} s)"
              f"  CPU {middle['cpu']:5.1f} s  peak {peak:5.0f} MB  [{verdict}: target < {TARGET_S:g} s]")
        figures[f"report_{name}_s"] = middle["total"]
        figures[f"report_{name}_peak_mb"] = peak
    if args.only:
        return figures
    compared = sqlite_vs_duckdb(path)
    print(f"visits' revenue by first channel, {PERIOD_DAYS} days: SQLite alone {compared['sqlite_s']:.2f} s; DuckDB "
          f"{compared['duckdb_compute_s']:.2f} s on a snapshot read in {compared['duckdb_read_s']:.2f} s")
    figures.update({f"aggregate_{k}": v for k, v in compared.items()})
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
