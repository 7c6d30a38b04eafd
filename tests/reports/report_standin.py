"""A stand-in for the report child process (`python -m automator.reports.compose`), run by the tests of sending
until the reports land: it lowers its priority as the real child does and writes a small composed report, or
fails the way its report name (or, where a rule must name a real report, its `--pipeline`) says: refuse → exit 2,
crash → exit 1, slow → sleeps, empty → writes nothing."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from automator.report_delivery import Composed, lower_priority, write_composed

# As large as a real report's page with its charts (tens to hundreds of kilobytes), so uploads are tried at size.
PAGE = ("<!doctype html><html lang=\"ru\"><meta charset=\"utf-8\"><title>Отчёт</title><p>Лиды: 12</p>"
        + "<!-- " + "диаграмма " * 20_000 + "-->\n</html>")


def _policy() -> str:
    """The scheduling policy this process runs under, by name (idle, other, …; unknown where the OS has none)."""
    if not hasattr(os, "sched_getscheduler"):
        return "unknown"
    names = {getattr(os, n): n[6:].lower() for n in ("SCHED_OTHER", "SCHED_BATCH", "SCHED_IDLE") if hasattr(os, n)}
    return names.get(os.sched_getscheduler(0), "unknown")


def main() -> int:
    """Compose, or fail as asked."""
    lower_priority()
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    for flag in ("--period", "--from", "--to", "--by", "--touch", "--pipeline", "--root", "--db", "--out"):
        parser.add_argument(flag)
    args = parser.parse_args()
    if args.pipeline in ("refuse", "crash"):
        args.report = args.pipeline
    if args.report == "refuse":
        print("some warning first", file=sys.stderr)
        print("unknown report 'refuse' (one of channels, funnel, retention, staff)", file=sys.stderr)
        return 2
    if args.report == "crash":
        print("Traceback: sqlite3.OperationalError: unable to open database file", file=sys.stderr)
        return 1
    if args.report == "slow":
        time.sleep(60)
    if args.report == "empty":
        return 0
    period = args.period or f"{args.__dict__['from']}..{args.to}"
    summary = (f"Каналы: откуда приходят клиенты, 24.11.2026 — 30.11.2026\nЛиды: 12\nВыручка: 84 000,00 ₽\nROMI: 180,0 %\nnice={os.nice(0)}\npolicy={_policy()}\nperiod={period}\n"
               f"db={Path(args.db).name}\nroot={args.root}")
    write_composed(Path(args.out), Composed(summary=summary, html=PAGE.encode(), title="Каналы",
                                            filename=f"report-{args.report}.html", period="24.11–30.11.2026"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
