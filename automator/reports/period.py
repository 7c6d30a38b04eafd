"""The period a report covers (pure): from one day to another, inclusive, in the project's time zone, or a named
period (`last_week`, `this_month`, …) relative to now there. The reports read its bounds as seconds since the
epoch, the way the store keeps moments.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

# Named periods as `automator report --period` and `report.send` take them.
NAMES = ("yesterday", "last_week", "this_week", "last_month", "this_month", "last_30d", "last_90d", "this_year")


class PeriodError(ValueError):
    """A period that cannot be: a bad date, an end before the start, an unknown name."""


@dataclass(frozen=True, slots=True)
class Period:
    """Days `start`..`end` (inclusive) in the time zone `tz`."""

    start: date
    end: date
    tz: tzinfo

    @property
    def start_at(self) -> int:
        """The first second of the period (epoch seconds): local midnight at its start."""
        return _midnight(self.start, self.tz)

    @property
    def end_at(self) -> int:
        """The first second after the period: local midnight after its last day."""
        return _midnight(self.end + timedelta(days=1), self.tz)

    @property
    def days(self) -> int:
        """How many days it has."""
        return (self.end - self.start).days + 1

    def label(self) -> str:
        """As a title shows it: "01.03.2026 – 31.03.2026"."""
        return f"{self.start:%d.%m.%Y} – {self.end:%d.%m.%Y}"


def between(start: date, end: date, tz: tzinfo) -> Period:
    """The days from `start` to `end`, inclusive; a PeriodError when `end` is before `start`."""
    if end < start:
        raise PeriodError(f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return Period(start, end, tz)


def parse_day(text: str, what: str = "date") -> date:
    """A day written YYYY-MM-DD; a PeriodError naming `what` otherwise."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise PeriodError(f"{what} {text!r} is not a date written YYYY-MM-DD") from None


def named(name: str, now: datetime, tz: tzinfo) -> Period:
    """The named period (NAMES) relative to `now` in `tz`; weeks start on Monday and `last_30d` is the 30 days
    before today (today is not over yet, so it is not in it; `this_*` periods end today)."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    match name:
        case "yesterday":
            return Period(today - timedelta(days=1), today - timedelta(days=1), tz)
        case "last_week":
            return Period(monday - timedelta(days=7), monday - timedelta(days=1), tz)
        case "this_week":
            return Period(monday, today, tz)
        case "last_month":
            last = first - timedelta(days=1)
            return Period(last.replace(day=1), last, tz)
        case "this_month":
            return Period(first, today, tz)
        case "last_30d":
            return Period(today - timedelta(days=30), today - timedelta(days=1), tz)
        case "last_90d":
            return Period(today - timedelta(days=90), today - timedelta(days=1), tz)
        case "this_year":
            return Period(today.replace(month=1, day=1), today, tz)
    raise PeriodError(f"unknown period {name!r} (one of {', '.join(NAMES)})")


def _midnight(day: date, tz: tzinfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp())
