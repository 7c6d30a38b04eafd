"""Benchmark: `automator run` keeping 1,000,000 pending waits — its resident memory and how late timers fire.

A store is filled in bulk with 1,000,000 `held` timers of the generated project's `held` rules (ids and payloads
as the engine writes them); DUE of them come due during the bench, spread evenly over SPREAD seconds (their
bookings are stored holding the value, so each fires its rule and a `notify` effect), the rest between one day
and six months out. The daemon is started on it as an operator does, and:

  - memory: VmRSS after start, every SAMPLE s while timers fire, and VmHWM (peak) at the end;
  - lag: for each `timer.fired` event in the journal, `received_at - at` (when the timer loop journaled it
    minus when it was due), p50/p99/max; and `done_at - at` (when the worker had decided it too).

`--quick`: 100,000 timers, 500 due over 5 s.
"""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as d  # noqa: E402
from _loadgen import Load  # noqa: E402
from _project import write_project  # noqa: E402

RULES = 100
FULL = {"timers": 1_000_000, "due": 2000, "spread": 20.0}
QUICK = {"timers": 100_000, "due": 500, "spread": 5.0}
LEAD = 4.0  # seconds between the daemon answering /healthz and the first due timer
SAMPLE = 0.5
TARGET_RSS_MB = 150
TARGET_P99_MS = 250


def lags(db: Path) -> dict[str, list[float]]:
    """Per fired timer: seconds from due to journaled, and from due to decided."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("select at, received_at, done_at from journal where type = 'timer.fired'").fetchall()
    finally:
        conn.close()
    fired, decided = [], []
    for at, received, done in rows:
        due = datetime.fromisoformat(at)
        fired.append((datetime.fromisoformat(received) - due).total_seconds())
        if done:
            decided.append((datetime.fromisoformat(done) - due).total_seconds())
    return {"fired": sorted(fired), "decided": sorted(decided)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--load", type=float, default=0.0, metavar="RATE",
                        help="also post RATE webhooks/s (paced, 64 connections) while the timers fire")
    args = parser.parse_args(argv if argv is not None else [])
    size = QUICK if args.quick else FULL
    folder = Path(tempfile.mkdtemp(prefix="automator-bench-timers-"))
    out: dict[str, Any] = {}
    try:
        write_project(folder, RULES)
        db = folder / "automator.db"
        # The due ones are in the store the daemon opens, placed once the bulk is in: LEAD s after an expected
        # start-up, then evenly over the spread.
        now = time.time()
        due: list[float] = []

        def place() -> list[float]:
            first = time.time() + 1.0 + LEAD
            due.extend(first + size["spread"] * i / size["due"] for i in range(size["due"]))
            return due
        out["fill_s"] = d.fill_timers(db, d.held_rules(RULES), size["timers"], place, far_from=now + 86400)
        first_due = due[0]
        port = d.free_port()
        started = time.monotonic()
        proc = d.start(d.daemon_command(folder / "automator.yaml", port), folder / "daemon.log")
        samples: list[float] = []
        try:
            healthy = d.wait_healthy(port, proc)
            out["start_s"] = healthy - started
            out["margin_s"] = first_due - time.time()  # > 0: the daemon was up before the first timer
            out["rss_start_mb"] = d.proc_memory(proc.pid)["VmRSS"]
            end = due[-1] + 2.0
            load = None
            if args.load:
                time.sleep(max(0.0, first_due - 1.0 - time.time()))
                load = Load(mode="paced", port=port, path="/hooks/crm", conns=64, rate=args.load,
                            duration=size["spread"] + 2.0, nonce=f"timers-{uuid.uuid4().hex[:8]}")
            cpu0, cpu_t0 = d.cpu_seconds(proc.pid), time.time()
            while time.time() < end and time.time() < now + 300:
                samples.append(d.proc_memory(proc.pid)["VmRSS"])
                time.sleep(SAMPLE)
            out["cpu_pct"] = (d.cpu_seconds(proc.pid) - cpu0) / (time.time() - cpu_t0) * 100
            if load is not None:
                result = load.result(60)
                acks = sorted(result["from_write"])
                out["load_acks"] = len(acks)
                out["load_p99_ms"] = d.percentile(acks, 0.99) * 1000
            memory = d.proc_memory(proc.pid)
            out["rss_end_mb"], out["hwm_mb"] = memory["VmRSS"], memory["VmHWM"]
        finally:
            out["exit"] = d.stop(proc)
        found = lags(db)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    fired, decided = found["fired"], found["decided"]
    out.update(fired=len(fired), lag_p50_ms=d.percentile(fired, 0.5) * 1000, lag_p99_ms=d.percentile(fired, 0.99) * 1000,
               lag_max_ms=(fired[-1] * 1000 if fired else float("nan")),
               decided_p50_ms=d.percentile(decided, 0.5) * 1000, decided_p99_ms=d.percentile(decided, 0.99) * 1000,
               rss_max_mb=max(samples) if samples else float("nan"))
    print(f"automator run on {size['timers']:,} pending timers ({RULES} rules); {size['due']:,} due over "
          f"{size['spread']:g} s{' (--quick)' if args.quick else ''}"
          f"{f', {args.load:g} webhooks/s meanwhile' if args.load else ''}; {d.machine_load()}:")
    print(d.table(
        ["figure", "value", "target"],
        [["store filled (s, bulk insert)", out["fill_s"], None],
         ["start to /healthz 200 (s)", out["start_s"], None],
         ["VmRSS after start (MB)", out["rss_start_mb"], None],
         ["VmRSS max while firing (MB)", out["rss_max_mb"], f"< {TARGET_RSS_MB}"],
         ["VmHWM peak (MB)", out["hwm_mb"], f"< {TARGET_RSS_MB}"],
         ["timers fired (of due)", f"{out['fired']:,} / {size['due']:,}", None],
         ["lag due → fired p50 (ms)", out["lag_p50_ms"], None],
         ["lag due → fired p99 (ms)", out["lag_p99_ms"], f"< {TARGET_P99_MS}"],
         ["lag due → fired max (ms)", out["lag_max_ms"], None],
         ["lag due → decided p50 / p99 (ms)", f"{out['decided_p50_ms']:.1f} / {out['decided_p99_ms']:.1f}", None],
         ["daemon CPU while firing (%)", out["cpu_pct"], None]]
        + ([[f"webhooks meanwhile: {args.load:g}/s, acked / p99 ack (ms)",
             f"{out['load_acks']:,} / {out['load_p99_ms']:.1f}", None]] if args.load else [])))
    if out["margin_s"] <= 0:
        print(f"  !! the daemon came up {-out['margin_s']:.1f} s after the first timer was due: early lags are "
              "start-up time")
    figures = {f"timers_{k}": round(float(v), 3) for k, v in out.items() if isinstance(v, (int, float))}
    print(d.json_line("timers", {**figures, "quick": args.quick}))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
