"""Benchmark: time from starting `automator run` to /healthz answering 200, with 1,000 rules and 1,000,000 pending
timers in the store (median of STARTS starts; each start is stopped with SIGTERM before the next).

Beside it, in the same run: the same 1,000 rules on an empty store, and 100 rules on an empty store, so the share
of the rules and of the timers shows; and one start-up taken apart in a fresh interpreter (imports, loading the
project, opening the store, the recovery and schedule queries the daemon runs before it listens).

`--quick`: 100,000 timers, 2 starts each.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as d  # noqa: E402
from _project import write_project  # noqa: E402

FULL = {"timers": 1_000_000, "starts": 3}
QUICK = {"timers": 100_000, "starts": 2}
TARGET_S = 2.0

# Run in a fresh interpreter: the stages of Daemon.serve() before uvicorn listens, timed one by one.
STAGES = r"""
import datetime, json, sys, time
t = time.perf_counter()
from automator.cli import cli  # what the console script imports
from automator.daemon.process import Daemon
import uvicorn, uvloop
out = {"imports": time.perf_counter() - t}
from automator.config.load import load_project
from automator.store.sqlite import SqliteStore
from automator.daemon.timers import sync_schedules
now = datetime.datetime.now(datetime.timezone.utc)
t = time.perf_counter(); project, _ = load_project(sys.argv[1]); out["load_project"] = time.perf_counter() - t
t = time.perf_counter(); store = SqliteStore(sys.argv[2]); out["open_store"] = time.perf_counter() - t
t = time.perf_counter(); store.release_dead_claims("bench:0:0"); out["release_dead_claims"] = time.perf_counter() - t
t = time.perf_counter(); store.release_dead_effects("bench:0:0", now); out["release_dead_effects"] = time.perf_counter() - t
t = time.perf_counter(); sync_schedules(store, project, now); out["sync_schedules"] = time.perf_counter() - t
t = time.perf_counter(); store.next_due(); out["next_due"] = time.perf_counter() - t
print(json.dumps(out))
"""


def starts(config: Path, count: int) -> list[float]:
    """Seconds from Popen to the first 200 of /healthz, for `count` starts."""
    times = []
    for _ in range(count):
        port = d.free_port()
        began = time.monotonic()
        proc = d.start(d.daemon_command(config, port), config.parent / "daemon.log")
        try:
            times.append(d.wait_healthy(port, proc, poll=0.002) - began)
        finally:
            d.stop(proc)
    return times


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv if argv is not None else [])
    size = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="automator-bench-restart-"))
    results: dict[str, list[float]] = {}
    try:
        big = work / "big"
        big.mkdir()
        write_project(big, 1000)
        now = time.time()
        fill = d.fill_timers(big / "automator.db", d.held_rules(1000), size["timers"], lambda: [],
                             far_from=now + 86400)
        stages = json.loads(subprocess.run([sys.executable, "-c", STAGES, str(big), str(big / "automator.db")],
                                           check=True, capture_output=True, text=True, timeout=120).stdout)
        results["1,000 rules, %s timers" % f"{size['timers']:,}"] = starts(big / "automator.yaml", size["starts"])
        for rules in (1000, 100):
            folder = work / f"empty{rules}"
            folder.mkdir()
            write_project(folder, rules)
            results[f"{rules:,} rules, empty store"] = starts(folder / "automator.yaml", size["starts"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"automator run: process start to /healthz 200, median of {size['starts']} starts"
          f"{' (--quick)' if args.quick else ''}; {d.machine_load()}:")
    rows = [[name, statistics.median(times), min(times), max(times)] for name, times in results.items()]
    print(d.table(["store", "median s", "min s", "max s"], rows))
    main_median = rows[0][1]
    print(f"  target < {TARGET_S:g} s with 1,000 rules and {size['timers']:,} timers: {main_median:.2f} s "
          f"(x{main_median / TARGET_S:.2f} of it); the store was filled in {fill:.1f} s")
    print("  one start-up taken apart (fresh interpreter, same store): " +
          ", ".join(f"{k} {v * 1000:,.0f} ms" for k, v in stages.items()))
    figures = {"restart_big_s": round(rows[0][1], 3), "restart_1000_empty_s": round(rows[1][1], 3),
               "restart_100_empty_s": round(rows[2][1], 3),
               **{f"restart_stage_{k}_ms": round(v * 1000, 1) for k, v in stages.items()}}
    print(d.json_line("restart", {**figures, "quick": args.quick}))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
