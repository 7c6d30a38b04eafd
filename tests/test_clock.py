"""Tests for automator.clock: clocks, durations, business hours and cron, across DST changes."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from automator.clock import (
    BusinessHours,
    Duration,
    FakeClock,
    SystemClock,
    cron_between,
    cron_next,
    cron_problem,
    end_of_day,
    is_open,
    localize,
    parse_business_hours,
    parse_duration,
    spelled_duration,
    start_of_day,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")  # DST: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00
MOSCOW = ZoneInfo("Europe/Moscow")  # UTC+3 all year


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)


def moscow(*args: int) -> datetime:
    return datetime(*args, tzinfo=MOSCOW)


def local(at: datetime, tz: ZoneInfo = BERLIN) -> str:
    return at.astimezone(tz).isoformat()


# --- clocks -----------------------------------------------------------------------------------------

def test_system_clock_is_utc_aware() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC


def test_fake_clock_advance_and_set() -> None:
    clock = FakeClock(moscow(2026, 3, 2, 9, 0))
    assert clock.now() == datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    clock.advance(timedelta(minutes=5))
    assert clock.now() == moscow(2026, 3, 2, 9, 5)
    clock.set(moscow(2026, 3, 3, 9, 0))
    assert clock.now() == moscow(2026, 3, 3, 9, 0)
    clock.set(clock.now())  # standing still is allowed
    with pytest.raises(ValueError, match="cannot set the clock back"):
        clock.set(moscow(2026, 3, 3, 8, 59))
    with pytest.raises(ValueError, match="negative"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == moscow(2026, 3, 3, 9, 0)


def test_fake_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 1, 2))


# --- localize ---------------------------------------------------------------------------------------

def test_localize_gap_resolves_to_transition_and_fold_to_first_occurrence() -> None:
    assert local(localize(datetime(2026, 3, 29, 2, 30), BERLIN)) == "2026-03-29T03:00:00+02:00"
    assert local(localize(datetime(2026, 3, 29, 2, 0), BERLIN)) == "2026-03-29T03:00:00+02:00"
    assert local(localize(datetime(2026, 10, 25, 2, 30), BERLIN)) == "2026-10-25T02:30:00+02:00"
    assert localize(datetime(2026, 7, 1, 12, 0), BERLIN) == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert local(localize(datetime(2026, 3, 29, 2, 59, 59, 500000), BERLIN)) == "2026-03-29T03:00:00+02:00"
    assert local(localize(datetime(2026, 3, 29, 2, 0, 0, 1), BERLIN)) == "2026-03-29T03:00:00+02:00"


# --- durations --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, months, days, seconds", [
    ("30s", 0, 0, 30),
    ("5m", 0, 0, 300),
    ("2h", 0, 0, 7200),
    ("14d", 0, 14, 0),
    ("2w", 0, 14, 0),
    ("2mo", 2, 0, 0),
    ("1h30m", 0, 0, 5400),
    ("1d12h", 0, 1, 43200),
    ("1h 30m", 0, 0, 5400),
    ("  1mo 2w 3d 4h 5m 6s ", 1, 17, 4 * 3600 + 5 * 60 + 6),
    ("5 m", 0, 0, 300),
    ("120mo", 120, 0, 0),
    ("90", 0, 0, 90),
    (90, 0, 0, 90),
    (90.0, 0, 0, 90),
])
def test_parse_duration_valid(text: str | int | float, months: int, days: int, seconds: int) -> None:
    duration = parse_duration(text)
    assert (duration.months, duration.days, duration.seconds) == (months, days, seconds)
    assert duration.text


@pytest.mark.parametrize("text, message", [
    ("5x", "unknown unit 'x' in '5x'; use s, m, h, d, w or mo"),
    ("5M", "unknown unit 'M' in '5M'; use s, m, h, d, w or mo"),
    ("5min", "unknown unit 'min' in '5min'; write '5m'"),
    ("5x", "unknown unit 'x' in '5x'; use s, m, h, d, w or mo"),
    ("1h30", "missing unit after '30' in '1h30'; use s, m, h, d, w or mo"),
    ("", "empty duration"),
    ("   ", "empty duration"),
    ("h5", "cannot read 'h5' in 'h5'"),
    ("1.5h", "use whole numbers, e.g. '1h30m' instead of '1.5h'"),
    ("0s", "zero duration '0s'; durations must be positive"),
    ("0h0m", "zero duration"),
    (0, "zero duration"),
    ("-5m", "negative duration '-5m'; durations must be positive"),
    (-5, "negative duration"),
    (1.5, "not a whole number of seconds"),
    ("1h1h", "unit 'h' appears twice in '1h1h'"),
    ("11y", "unknown unit 'y'"),
    ("121mo", "too long; at most 10 years"),
    ("4000d", "too long; at most 10 years"),
    ("99999999999999999999s", "too long"),
    (10**12, "too long"),
    ("1" * 100 + "s", "too long"),
    (True, "expected a duration"),
    (None, "expected a duration"),
])
def test_parse_duration_errors(text: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_parse_duration_refuses_hostile_input_without_hanging(hang_alarm: None) -> None:
    hostile = "1" * 60 + " " * 3 + "x"
    for text in (hostile, "1h" + " " * 50 + "!", "9" * 64, "1d " * 3000 + "x"):
        with pytest.raises(ValueError):
            parse_duration(text)


def test_duration_equality_ignores_text_and_approx() -> None:
    assert parse_duration("90m") == parse_duration("1h30m")
    assert parse_duration("2w") == parse_duration("14d")
    assert parse_duration("1mo").approx() == timedelta(days=30)
    assert parse_duration("1d12h").approx() == timedelta(hours=36)
    assert str(parse_duration("1h 30m")) == "1h 30m"
    assert str(Duration(months=1, days=2, seconds=3661)) == "1mo2d1h1m1s"


def test_calendar_days_keep_wall_time_across_spring_forward() -> None:
    start = berlin(2026, 3, 20, 10, 0)  # CET, +01:00
    result = parse_duration("14d").add_to(start, BERLIN)
    assert local(result) == "2026-04-03T10:00:00+02:00"
    assert result - start == timedelta(days=14, hours=-1)  # one real hour fewer
    assert result.tzinfo is UTC


def test_calendar_days_keep_wall_time_across_fall_back() -> None:
    start = berlin(2026, 10, 20, 10, 0)  # CEST, +02:00
    result = parse_duration("14d").add_to(start, BERLIN)
    assert local(result) == "2026-11-03T10:00:00+01:00"
    assert result - start == timedelta(days=14, hours=1)


def test_hours_are_exact_elapsed_time_across_dst() -> None:
    start = berlin(2026, 3, 29, 1, 30)
    assert local(parse_duration("1h").add_to(start, BERLIN)) == "2026-03-29T03:30:00+02:00"
    assert local(parse_duration("24h").add_to(start, BERLIN)) == "2026-03-30T02:30:00+02:00"
    assert local(parse_duration("1d").add_to(start, BERLIN)) == "2026-03-30T01:30:00+02:00"


def test_calendar_day_landing_in_gap_or_fold() -> None:
    # 02:30 does not exist on 29 March: resolved forward to the transition, 03:00 CEST.
    assert local(parse_duration("1d").add_to(berlin(2026, 3, 28, 2, 30), BERLIN)) == "2026-03-29T03:00:00+02:00"
    # 02:30 happens twice on 25 October: the first occurrence, CEST.
    assert local(parse_duration("1d").add_to(berlin(2026, 10, 24, 2, 30), BERLIN)) == "2026-10-25T02:30:00+02:00"


def test_days_then_seconds() -> None:
    start = berlin(2026, 3, 28, 12, 0)
    assert local(parse_duration("1d12h").add_to(start, BERLIN)) == "2026-03-30T00:00:00+02:00"


@pytest.mark.parametrize("start, text, expected", [
    ((2026, 1, 31, 10, 0), "1mo", "2026-02-28T10:00:00+01:00"),
    ((2028, 1, 31, 10, 0), "1mo", "2028-02-29T10:00:00+01:00"),
    ((2026, 3, 31, 10, 0), "1mo", "2026-04-30T10:00:00+02:00"),
    ((2026, 11, 30, 10, 0), "3mo", "2027-02-28T10:00:00+01:00"),
    ((2026, 12, 15, 10, 0), "1mo", "2027-01-15T10:00:00+01:00"),
    ((2026, 1, 31, 10, 0), "1mo1d", "2026-03-01T10:00:00+01:00"),
])
def test_month_addition_clamps(start: tuple[int, ...], text: str, expected: str) -> None:
    assert local(parse_duration(text).add_to(berlin(*start), BERLIN)) == expected


def test_add_to_moscow_no_dst() -> None:
    start = moscow(2026, 3, 20, 10, 0)
    assert local(parse_duration("14d").add_to(start, MOSCOW), MOSCOW) == "2026-04-03T10:00:00+03:00"
    assert parse_duration("14d").add_to(start, MOSCOW) - start == timedelta(days=14)


# --- business hours ---------------------------------------------------------------------------------

def test_parse_business_hours() -> None:
    hours = parse_business_hours("09:00-21:00", "mon-sat", MOSCOW)
    assert hours == BusinessHours(time(9), time(21), frozenset(range(6)), MOSCOW)
    assert not hours.overnight
    assert parse_business_hours("9:00 - 21:00", "mon-fri,sun", MOSCOW).days == frozenset({0, 1, 2, 3, 4, 6})
    assert parse_business_hours("09:00-21:00", ["mon", "Tue"], MOSCOW).days == frozenset({0, 1})
    assert parse_business_hours("09:00-21:00", "daily", MOSCOW).days == frozenset(range(7))
    assert parse_business_hours("09:00-21:00", "every day", MOSCOW).days == frozenset(range(7))
    assert parse_business_hours("09:00-21:00", "fri-mon", MOSCOW).days == frozenset({4, 5, 6, 0})
    late = parse_business_hours("10:00-02:00", "daily", MOSCOW)
    assert late.overnight and late.closes == time(2)
    allday = parse_business_hours("00:00-24:00", "daily", MOSCOW)
    assert allday.opens == allday.closes == time(0)


@pytest.mark.parametrize("hours, days, message", [
    ("9-21", "mon-sat", "business hours '9-21' must look like '09:00-21:00'"),
    ("09:00", "mon-sat", "must look like '09:00-21:00'"),
    ("25:00-21:00", "mon-sat", "opening hour 25 in '25:00-21:00' is out of range 0-23"),
    ("09:00-21:60", "mon-sat", "closing minute 60 in '09:00-21:60' is out of range 0-59"),
    ("24:00-21:00", "mon-sat", "opening hour 24"),
    ("09:00-09:00", "mon-sat", "open and close at the same time"),
    ("09:00-21:00", "tuesdy-sat", "unknown day 'tuesdy' in 'tuesdy-sat'; did you mean 'tuesday'?"),
    ("09:00-21:00", "mon-sut", "use mon, tue, wed, thu, fri, sat, sun"),
    ("09:00-21:00", "mon-fri,", "empty day in 'mon-fri,'"),
    ("09:00-21:00", [], "no working days"),
    ("09:00-21:00", "mon-wed-fri", "more than two ends"),
    ("09:00-21:00", 5, "working days must be text"),
])
def test_parse_business_hours_errors(hours: str, days: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_business_hours(hours, days, MOSCOW)  # type: ignore[arg-type]
    assert message in str(info.value)


MAIN = parse_business_hours("09:00-21:00", "mon-sat", MOSCOW)  # 2026-03-02 is a Monday


@pytest.mark.parametrize("at, expected", [
    (moscow(2026, 3, 2, 7, 0), moscow(2026, 3, 2, 21, 0)),    # before opening: today's close
    (moscow(2026, 3, 2, 15, 0), moscow(2026, 3, 2, 21, 0)),   # during the day
    (moscow(2026, 3, 2, 21, 0), moscow(2026, 3, 2, 21, 0)),   # exactly at close
    (moscow(2026, 3, 2, 21, 1), moscow(2026, 3, 3, 21, 0)),   # after close: tomorrow's
    (moscow(2026, 3, 7, 22, 0), moscow(2026, 3, 9, 21, 0)),   # Saturday night: Monday's
    (moscow(2026, 3, 8, 12, 0), moscow(2026, 3, 9, 21, 0)),   # Sunday is a day off
])
def test_end_of_day_moscow(at: datetime, expected: datetime) -> None:
    result = end_of_day(at, MAIN)
    assert result == expected and result.tzinfo is UTC


@pytest.mark.parametrize("at, expected", [
    (moscow(2026, 3, 2, 7, 0), moscow(2026, 3, 2, 9, 0)),
    (moscow(2026, 3, 2, 9, 0), moscow(2026, 3, 2, 9, 0)),
    (moscow(2026, 3, 2, 15, 0), moscow(2026, 3, 3, 9, 0)),
    (moscow(2026, 3, 7, 22, 0), moscow(2026, 3, 9, 9, 0)),
    (moscow(2026, 3, 8, 12, 0), moscow(2026, 3, 9, 9, 0)),
])
def test_start_of_day_moscow(at: datetime, expected: datetime) -> None:
    assert start_of_day(at, MAIN) == expected


def test_is_open() -> None:
    assert is_open(moscow(2026, 3, 2, 9, 0), MAIN)
    assert is_open(moscow(2026, 3, 2, 20, 59), MAIN)
    assert not is_open(moscow(2026, 3, 2, 21, 0), MAIN)
    assert not is_open(moscow(2026, 3, 8, 12, 0), MAIN)  # Sunday
    assert is_open(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), MAIN)  # 13:00 in Moscow


def test_closing_after_midnight() -> None:
    bar = parse_business_hours("18:00-02:00", "fri-sat", MOSCOW)  # 2026-03-06 is a Friday
    # Saturday 01:00 still belongs to Friday's working day.
    assert end_of_day(moscow(2026, 3, 7, 1, 0), bar) == moscow(2026, 3, 7, 2, 0)
    assert is_open(moscow(2026, 3, 7, 1, 0), bar)
    assert end_of_day(moscow(2026, 3, 7, 3, 0), bar) == moscow(2026, 3, 8, 2, 0)
    # Sunday 01:00 is Saturday's night; Sunday 03:00 waits for next Friday.
    assert end_of_day(moscow(2026, 3, 8, 1, 0), bar) == moscow(2026, 3, 8, 2, 0)
    assert end_of_day(moscow(2026, 3, 8, 3, 0), bar) == moscow(2026, 3, 14, 2, 0)
    assert not is_open(moscow(2026, 3, 8, 3, 0), bar)
    assert start_of_day(moscow(2026, 3, 7, 1, 0), bar) == moscow(2026, 3, 7, 18, 0)
    assert start_of_day(moscow(2026, 3, 8, 1, 0), bar) == moscow(2026, 3, 13, 18, 0)


def test_business_hours_across_berlin_dst() -> None:
    hours = parse_business_hours("09:00-21:00", "daily", BERLIN)
    # Before spring-forward the close is 20:00 UTC; after it, 19:00 UTC; the wall time stays 21:00.
    assert local(end_of_day(berlin(2026, 3, 28, 22, 0), hours)) == "2026-03-29T21:00:00+02:00"
    assert local(start_of_day(berlin(2026, 3, 28, 22, 0), hours)) == "2026-03-29T09:00:00+02:00"
    assert local(end_of_day(berlin(2026, 10, 24, 22, 0), hours)) == "2026-10-25T21:00:00+01:00"
    assert local(start_of_day(berlin(2026, 10, 24, 22, 0), hours)) == "2026-10-25T09:00:00+01:00"


def test_overnight_hours_closing_on_the_fall_back_night() -> None:
    club = parse_business_hours("22:00-02:30", "sat", BERLIN)  # 2026-10-24 is a Saturday
    # 02:30 happens twice that night; the first occurrence (CEST) is the close, as documented.
    assert local(end_of_day(berlin(2026, 10, 24, 23, 0), club)) == "2026-10-25T02:30:00+02:00"
    # 02:30 does not exist on 29 March: the close moves to the first existing moment, 03:00 CEST.
    assert local(end_of_day(berlin(2026, 3, 28, 23, 0), club)) == "2026-03-29T03:00:00+02:00"


def test_business_hours_accept_any_input_zone() -> None:
    at = datetime(2026, 3, 2, 19, 0, tzinfo=UTC)  # 22:00 in Moscow, after close
    assert end_of_day(at, MAIN) == moscow(2026, 3, 3, 21, 0)


# --- cron -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    "0 10 * * *", "*/5 * * * *", "0 9 * * mon-fri", "0 0 29 2 *", "0 0 31 * *", "0 0 30 2 mon",
    "@daily", "@yearly", "@hourly", "@weekly", "@monthly", "0 0 L 2 *", "0 0 * * 1#5", "0 0 1-5,15 jan-mar *",
])
def test_cron_valid(expr: str) -> None:
    assert cron_problem(expr) is None


@pytest.mark.parametrize("expr, message", [
    ("0 25 * * *", "bad cron expression '0 25 * * *': hour 25 is out of range 0-23"),
    ("61 * * * *", "minute 61 is out of range 0-59"),
    ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
    ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
    ("0 0 * 13 *", "month 13 is out of range 1-12"),
    ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
    ("0 0 * foo *", "month 'foo' is not a valid value; use 1-12 or jan-dec"),
    ("0 0 * * mon-", "day-of-week 'mon-' is not a valid value"),
    ("*/0 * * * *", "minute step 0 in '*/0' must be at least 1"),
    ("*/75 * * * *", "minute step 75 is wider than the field"),
    ("0 10 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
    ("0 0 10 * * *", "6 fields given, but schedules use 5"),
    ("0 0 10 * * * 2026", "seconds and years are not supported"),
    ("@reboot", "unknown alias"),
    ("", "empty cron expression"),
    ("0 0 30 2 *", "never fires: February has no day 30"),
    ("0 0 31 4 *", "never fires: April has no day 31"),
    ("0 0 31 2,4,6,9,11 *", "never fires: February, April, June, September and November have no day 31"),
    ("0 0 30,31 2 *", "never fires: February has no day 30 or 31"),
    ("0 0 30 2 mon#1", "never fires"),
])
def test_cron_problems(expr: str, message: str) -> None:
    problem = cron_problem(expr)
    assert problem is not None and message in problem


def test_cron_or_semantics_fire_on_the_weekday() -> None:
    # Day 30 never comes in February, but cron ORs a restricted weekday: every Monday in February fires.
    fire = cron_next("0 0 30 2 mon", moscow(2026, 1, 1), MOSCOW)
    assert fire == moscow(2026, 2, 2, 0, 0)


def test_cron_next_refuses_bad_expressions() -> None:
    with pytest.raises(ValueError, match="never fires: February has no day 30"):
        cron_next("0 0 30 2 *", moscow(2026, 1, 1), MOSCOW)
    with pytest.raises(ValueError, match="hour 25"):
        cron_next("0 25 * * *", moscow(2026, 1, 1), MOSCOW)


def test_cron_next_is_strictly_after_and_utc() -> None:
    fire = cron_next("0 10 * * *", moscow(2026, 3, 2, 10, 0), MOSCOW)
    assert fire == moscow(2026, 3, 3, 10, 0) and fire.tzinfo is UTC
    assert cron_next("0 10 * * *", moscow(2026, 3, 2, 9, 59, 59), MOSCOW) == moscow(2026, 3, 2, 10, 0)


def test_cron_daily_0230_on_spring_forward_fires_once_at_0300() -> None:
    fires = cron_between("30 2 * * *", berlin(2026, 3, 27, 12, 0), berlin(2026, 3, 31, 12, 0), BERLIN)
    assert [local(f) for f in fires] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist: the first existing moment after it
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert local(cron_next("30 2 * * *", berlin(2026, 3, 28, 12, 0), BERLIN)) == "2026-03-29T03:00:00+02:00"


def test_cron_daily_0230_on_fall_back_fires_once() -> None:
    fires = cron_between("30 2 * * *", berlin(2026, 10, 24, 12, 0), berlin(2026, 10, 26, 12, 0), BERLIN)
    assert [local(f) for f in fires] == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    # Asked from inside the repeated hour, after the first 02:30, the next is the next day's.
    after_first = berlin(2026, 10, 25, 2, 10, fold=1)  # 02:10 CET, the second pass
    assert local(cron_next("30 2 * * *", after_first, BERLIN)) == "2026-10-26T02:30:00+01:00"


def test_cron_hourly_across_fall_back_fires_every_real_hour() -> None:
    # Documented: schedules with '*' hours follow real time, so the repeated 02:00 fires in both passes.
    fires = cron_between("0 * * * *", berlin(2026, 10, 25, 0, 30), berlin(2026, 10, 25, 4, 0), BERLIN)
    assert [local(f) for f in fires] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]
    assert all(b - a == timedelta(hours=1) for a, b in zip(fires, fires[1:]))
    assert local(cron_next("0 * * * *", berlin(2026, 10, 25, 2, 30), BERLIN)) == "2026-10-25T02:00:00+01:00"
    second_pass = berlin(2026, 10, 25, 2, 30, fold=1)
    assert local(cron_next("0 * * * *", second_pass, BERLIN)) == "2026-10-25T03:00:00+01:00"


def test_cron_hourly_across_spring_forward_fires_every_real_hour() -> None:
    fires = cron_between("0 * * * *", berlin(2026, 3, 29, 0, 30), berlin(2026, 3, 29, 4, 0), BERLIN)
    assert [local(f) for f in fires] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]
    assert all(b - a == timedelta(hours=1) for a, b in zip(fires, fires[1:]))


def test_cron_fixed_hour_minutes_in_the_gap_collapse_into_one_fire() -> None:
    fires = cron_between("*/15 2 * * *", berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 29, 12, 0), BERLIN)
    assert [local(f) for f in fires] == ["2026-03-29T03:00:00+02:00"]


def test_cron_between_three_days() -> None:
    fires = cron_between("0 10 * * *", moscow(2026, 3, 2, 10, 0), moscow(2026, 3, 5, 10, 0), MOSCOW)
    # (start, end]: the start itself is excluded, the end included.
    assert fires == [moscow(2026, 3, 3, 10, 0), moscow(2026, 3, 4, 10, 0), moscow(2026, 3, 5, 10, 0)]
    assert cron_between("0 10 * * *", moscow(2026, 3, 5, 10, 0), moscow(2026, 3, 2, 10, 0), MOSCOW) == []


def test_cron_between_is_bounded() -> None:
    fires = cron_between("* * * * *", moscow(2026, 3, 2), moscow(2026, 3, 12), MOSCOW, limit=50)
    assert len(fires) == 50
    assert fires[0] == moscow(2026, 3, 2, 0, 1) and fires[-1] == moscow(2026, 3, 2, 0, 50)


def test_cron_every_five_minutes_across_fall_back_is_regular() -> None:
    fires = cron_between("*/5 * * * *", berlin(2026, 10, 25, 1, 0), berlin(2026, 10, 25, 4, 0, fold=0), BERLIN)
    assert len(fires) == 4 * 12  # four real hours between 01:00 CEST and 04:00 CET
    assert all(b - a == timedelta(minutes=5) for a, b in zip(fires, fires[1:]))


def test_cron_daily_alias() -> None:
    assert cron_next("@daily", moscow(2026, 3, 2, 15, 0), MOSCOW) == moscow(2026, 3, 3, 0, 0)
    assert local(cron_next("@daily", berlin(2026, 3, 28, 12, 0), BERLIN)) == "2026-03-29T00:00:00+01:00"


def test_cron_in_moscow_has_no_dst_surprises() -> None:
    fires = cron_between("30 2 * * *", moscow(2026, 3, 28), moscow(2026, 3, 30), MOSCOW)
    assert fires == [moscow(2026, 3, 28, 2, 30), moscow(2026, 3, 29, 2, 30)]


def test_cron_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cron_next("0 10 * * *", datetime(2026, 3, 2), MOSCOW)


@pytest.mark.parametrize(("text", "short"), [("2 hours", "2h"), ("1 hour 30 minutes", "1h30m"), ("3 дня", "3d"),
                                             ("14 дней", "14d"), ("2 месяца", "2mo"), ("5 мин", "5m"),
                                             ("2h", None), ("soon", None), ("2 hours!", None)])
def test_a_duration_spelled_out_has_its_short_form_for_the_hint(text: str, short: str | None) -> None:
    assert spelled_duration(text) == short
    if short is not None:
        with pytest.raises(ValueError, match=f"write '{short}'"):
            parse_duration(text)
