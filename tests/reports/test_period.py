"""Periods: named ones relative to now in the project's time zone (week and month boundaries), explicit days."""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from automator.reports.period import NAMES, PeriodError, between, named, parse_day

MSK = ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize("name, start, end", [
    ("yesterday", date(2026, 3, 1), date(2026, 3, 1)),
    ("last_week", date(2026, 2, 23), date(2026, 3, 1)),   # Mon–Sun before this week
    ("this_week", date(2026, 3, 2), date(2026, 3, 2)),    # today is Monday 2 March
    ("last_month", date(2026, 2, 1), date(2026, 2, 28)),
    ("this_month", date(2026, 3, 1), date(2026, 3, 2)),
    ("last_30d", date(2026, 1, 31), date(2026, 3, 1)),
    ("last_90d", date(2025, 12, 2), date(2026, 3, 1)),
    ("this_year", date(2026, 1, 1), date(2026, 3, 2)),
])
def test_named_periods_on_a_monday(name: str, start: date, end: date) -> None:
    # 1 March 2026 22:30 UTC is already Monday 2 March 01:30 in Moscow.
    period = named(name, datetime(2026, 3, 1, 22, 30, tzinfo=timezone.utc), MSK)
    assert (period.start, period.end) == (start, end)


def test_the_time_zone_decides_the_day() -> None:
    now = datetime(2026, 3, 1, 22, 30, tzinfo=timezone.utc)
    assert named("yesterday", now, timezone.utc).start == date(2026, 2, 28)  # still Sunday in UTC
    assert named("last_month", datetime(2026, 1, 10, tzinfo=MSK), MSK).start == date(2025, 12, 1)
    assert named("last_week", datetime(2026, 3, 8, 23, 59, tzinfo=MSK), MSK).end == date(2026, 3, 1)  # a Sunday
    assert set(NAMES) == {"yesterday", "last_week", "this_week", "last_month", "this_month", "last_30d", "last_90d",
                          "this_year"}


def test_bounds_are_local_midnights() -> None:
    period = between(date(2026, 3, 1), date(2026, 3, 31), MSK)
    assert period.start_at == int(datetime(2026, 2, 28, 21, tzinfo=timezone.utc).timestamp())
    assert period.end_at == int(datetime(2026, 3, 31, 21, tzinfo=timezone.utc).timestamp())
    assert period.days == 31 and between(date(2026, 3, 1), date(2026, 3, 1), MSK).days == 1


def test_bad_periods() -> None:
    with pytest.raises(PeriodError, match="before it starts"):
        between(date(2026, 3, 2), date(2026, 3, 1), MSK)
    with pytest.raises(PeriodError, match="--to '31.03.2026' is not a date"):
        parse_day("31.03.2026", "--to")
    with pytest.raises(PeriodError, match="unknown period"):
        named("last_decade", datetime(2026, 3, 1, tzinfo=MSK), MSK)


def test_local_days_in_duckdb_agree_with_the_zone() -> None:
    import duckdb

    from automator.reports.snapshot import local_day

    berlin = ZoneInfo("Europe/Berlin")
    moments = [int(datetime(2026, month, day, hour, 30, tzinfo=timezone.utc).timestamp())
               for month, day in ((3, 28), (3, 29), (10, 24), (10, 25)) for hour in (0, 21, 22, 23)]
    start, end = min(moments), max(moments)
    for tz, fast in ((MSK, True), (berlin, False)):  # Moscow: one offset; Berlin: daylight saving in the span
        expression = local_day("m", tz, start, end)
        assert expression.startswith("(DATE") is fast
        got = duckdb.connect().execute(f"select {expression} from (select unnest(?) as m)", [moments]).fetchall()
        assert [row[0] for row in got] == [datetime.fromtimestamp(m, tz).date() for m in moments]
