"""The child process that composes a report for `report.send` (see automator/report_delivery.py, its parent side):

    python -m automator.reports.compose REPORT (--period NAME | --from DATE --to DATE) [--by …] [--touch …]
        [--pipeline …] --db STORE [--root PROJECT] --out DIR

It lowers its own priority first, computes the report over one snapshot of the store (`automator.reports.compute`,
the project's time zone, channels and pipelines read from PROJECT/automator.yaml), renders the page and the
headline summary (`automator.reports.html`), and writes them into DIR. Exit 0 when
written, 2 when the request is refused (an unknown report, a period it cannot read), 1 on any other failure.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from automator.config.project import CONFIG_FILE
from automator.reports import compute, period as periods, project_settings
from automator.reports.html import render_html, render_summary
from automator.report_delivery import (EXIT_REFUSED, TITLES, Composed, filename, lower_priority, shown_period,
                                       write_composed)


class Refused(Exception):
    """The request cannot be composed whatever is tried again (exit 2)."""


def compose(args: argparse.Namespace, now: datetime) -> Composed:
    """Compute the report the arguments ask for and render it.

    A request the reports refuse (a ValueError: ReportError, PeriodError) is Refused."""
    settings = project_settings(Path(args.root) / CONFIG_FILE) if args.root else None
    tz = settings.tz if settings is not None else timezone.utc
    try:
        if args.period:
            period = periods.named(args.period, now, tz)
        else:
            period = periods.between(periods.parse_day(args.start, "--from"), periods.parse_day(args.end, "--to"), tz)
        report = compute(args.report, args.db, start=period.start, end=period.end, by=args.by,
                                 touch=args.touch or "first", pipeline=args.pipeline,
                                 channels=settings.channels if settings is not None else None, tz=tz, now=now,
                                 pipelines=settings.pipelines if settings is not None else None)
    except ValueError as exc:  # an unknown report or period, a `by` the report has not, an end before the start
        raise Refused(str(exc)) from exc
    return Composed(summary=render_summary(report), html=render_html(report).encode("utf-8"),
                    filename=filename(args.report, period.start.isoformat(), period.end.isoformat()),
                    title=TITLES.get(args.report, args.report), period=shown_period(period.start, period.end))


def main(argv: list[str] | None = None) -> int:
    """Compose and write; the exit code says how it went (see the module docstring)."""
    lower_priority()
    parser = argparse.ArgumentParser(prog="python -m automator.reports.compose")
    parser.add_argument("report")
    parser.add_argument("--period")
    parser.add_argument("--from", dest="start")
    parser.add_argument("--to", dest="end")
    for flag in ("--by", "--touch", "--pipeline", "--root"):
        parser.add_argument(flag)
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if not Path(args.db).is_file():
        print(f"no store at {args.db}", file=sys.stderr)
        return 1  # the daemon's store is always there: a missing file is a passing accident, retried
    try:
        composed = compose(args, datetime.now(timezone.utc))
    except Refused as exc:
        print(exc, file=sys.stderr)
        return EXIT_REFUSED
    write_composed(Path(args.out), composed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
