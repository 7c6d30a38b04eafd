"""Time for the engine: clocks, admin-written durations, business hours and cron, all DST-safe.

Conventions, shared by every function here:

* Instants go in tz-aware (any zone) and come out tz-aware in **UTC**. UTC instants compare and sort
  correctly even across a fall-back hour (two aware datetimes with the *same* ZoneInfo compare by wall
  time and ignore `fold`), and they serialise to text that sorts. Convert with `.astimezone(tz)` to show.
* Wall-clock (local) arithmetic is done on naive local datetimes and turned back into an instant by
  `localize`: a local time that does not exist (inside a spring-forward gap) resolves forward to the
  first existing moment, i.e. the transition itself (02:30 on the Berlin spring-forward day -> 03:00
  CEST); an ambiguous local time (inside a fall-back hour) resolves to its first occurrence (fold=0).
"""
from __future__ import annotations

import calendar
import difflib
import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

UTC = timezone.utc
_Day = TypeVar("_Day", date, datetime)


# --- clocks -----------------------------------------------------------------------------------------

class Clock(Protocol):
    """Where the current time comes from; logic receives one instead of reading the system clock."""

    def now(self) -> datetime:
        """The current instant, tz-aware, in UTC."""
        ...


class SystemClock:
    """The real clock, for the daemon."""

    def now(self) -> datetime:
        """The current instant in UTC."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to, for tests and the simulated test runner."""

    def __init__(self, start: datetime) -> None:
        self._now = _utc(start, "start")

    def now(self) -> datetime:
        """The clock's current instant in UTC."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move forward by `delta` of exact elapsed time; a negative delta is refused."""
        if delta < timedelta(0):
            raise ValueError(f"cannot advance the clock by a negative amount ({delta})")
        self._now += delta

    def set(self, at: datetime) -> None:
        """Jump to `at`; going backwards is refused, since timers already fired cannot un-fire."""
        target = _utc(at, "at")
        if target < self._now:
            raise ValueError(f"cannot set the clock back from {self._now.isoformat()} to {target.isoformat()}")
        self._now = target


def _utc(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """Turn a naive local wall time in `tz` into a UTC instant.

    A non-existent time (spring-forward gap) resolves to the first existing moment after it, the
    transition; an ambiguous time (fall-back) resolves to its first occurrence.
    """
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)  # ambiguous: fold=0 is the earlier instant
    # In a gap, fold=1 applies the new offset (an instant before the transition) and fold=0 the old
    # one (an instant after it); bisect between them for the transition itself.
    after_offset = second.utcoffset()
    lo = second.astimezone(UTC).replace(microsecond=0)
    hi = first.astimezone(UTC)
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=max(1, (hi - lo) // timedelta(seconds=1) // 2))
        if mid.astimezone(tz).utcoffset() == after_offset:
            hi = mid
        else:
            lo = mid
    return hi


def _wall(at: datetime, tz: ZoneInfo) -> datetime:
    return _utc(at, "time").astimezone(tz).replace(tzinfo=None)


def show_time(at: datetime | str | None, tz: tzinfo, *, seconds: bool = True) -> str:
    """A moment as an operator reads it: the wall time in the project's zone with its UTC offset,
    `2026-03-02 15:05:07 +03:00` (`seconds=False`: `2026-03-02 15:05 +03:00`); `-` for none.

    Text is read as ISO 8601 (a naive one as UTC, as the store writes it)."""
    if at is None or at == "":
        return "-"
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    local = at.astimezone(tz)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" {offset[:3]}:{offset[3:]}"


# --- durations --------------------------------------------------------------------------------------

_UNITS_HINT = "use s, m, h, d, w or mo"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_MAX_SPAN = timedelta(days=3653)  # ten years: anything longer is a typo, not a plan
# One part: digits, an optional fraction (only to refuse it clearly), a unit. No nested quantifiers,
# and every match consumes at least one digit, so scanning is linear.
_PART = re.compile(r"(\d+)(\.\d*)?[ \t]*([^\d\s.]*)")


@dataclass(frozen=True, slots=True)
class Duration:
    """A span as admins write it: '30s', '5m', '2h', '14d', '2w', '2mo', or combined '1h30m', '1d12h'.

    Days, weeks and months are CALENDAR units: added in local wall-clock time of the project's timezone,
    so `14d` from 10:00 is 10:00 fourteen days later even across a DST change, and `1mo` from Jan 31 is
    Feb 28/29 (clamped). Weeks are stored as days. `text` is what the admin wrote, kept for messages; it
    takes no part in equality, so '90m' == '1h30m'. An expression's offset may be negative ('-1d', all
    parts negative); a wait, a setting or a trigger's duration never is (`parse_duration` refuses it).
    """

    months: int = 0
    days: int = 0
    seconds: int = 0  # the s/m/h part, exact elapsed time
    text: str = field(default="", compare=False)

    def add_to(self, at: datetime, tz: ZoneInfo) -> datetime:
        """`at` plus this span: months (clamped to the month's length), then days, in local wall time of
        `tz` (see `localize` for gaps and folds), then seconds as exact elapsed time. Returns UTC."""
        result = _utc(at, "at")
        if self.months or self.days:
            wall = _wall(result, tz)
            if self.months:
                wall = _add_months(wall, self.months)
            result = localize(wall + timedelta(days=self.days), tz)
        return result + timedelta(seconds=self.seconds)

    def add_to_date(self, day: date) -> date:
        """A calendar date plus this span's months and days (a date has no time of day to move)."""
        return _add_months(day, self.months) + timedelta(days=self.days)

    def approx(self) -> timedelta:
        """The span with months counted as 30 days; for display and ordering, never for scheduling."""
        return timedelta(days=self.months * 30 + self.days, seconds=self.seconds)

    def exact(self) -> timedelta:
        """The span's fixed length, a day counted as 24 hours; ValueError when it has months, whose
        length depends on where they start."""
        if self.months:
            raise ValueError(f"'{self}' has no fixed length: a month is 28 to 31 days")
        return timedelta(days=self.days, seconds=self.seconds)

    def __neg__(self) -> Duration:
        text = self.text[1:] if self.text.startswith("-") else f"-{self.text}" if self.text else ""
        return Duration(-self.months, -self.days, -self.seconds, text)

    def __add__(self, other: object) -> Duration:
        if not isinstance(other, Duration):
            return NotImplemented
        return Duration(self.months + other.months, self.days + other.days, self.seconds + other.seconds)

    def __sub__(self, other: object) -> Duration:
        return self + -other if isinstance(other, Duration) else NotImplemented

    def __mul__(self, count: object) -> Duration:
        # Only whole multiples stay calendar spans: half a month is not a calendar unit.
        if isinstance(count, bool) or not isinstance(count, int):
            return NotImplemented
        return Duration(self.months * count, self.days * count, self.seconds * count)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return self.text or format_duration(self)


def _add_months(moment: _Day, months: int) -> _Day:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    return moment.replace(year=year, month=month + 1, day=min(moment.day, calendar.monthrange(year, month + 1)[1]))


def format_duration(value: Duration | timedelta) -> str:
    """The compact form the parser reads: `14d`, `1h30m`, `2mo`, `45s`, `0s`; `-1d` for a negative span.

    A timedelta is shown in days, hours, minutes and seconds (rounded to the second)."""
    if isinstance(value, timedelta):
        seconds = round(value.total_seconds())
        direction = -1 if seconds < 0 else 1
        days, rest = divmod(abs(seconds), 86400)
        value = Duration(days=direction * days, seconds=direction * rest)
    parts = (value.months, value.days, value.seconds)
    sign = "-" if all(p <= 0 for p in parts) and any(parts) else ""
    months, days, seconds = (abs(p) for p in parts) if sign else parts
    hours, rest = divmod(seconds, 3600) if seconds >= 0 else (0, seconds)
    minutes, secs = divmod(rest, 60) if rest >= 0 else (0, rest)
    units = zip((months, days, hours, minutes, secs), ("mo", "d", "h", "m", "s"))
    return sign + ("".join(f"{n}{unit}" for n, unit in units if n) or "0s")


# Units admins spell out, in English and Russian, and the short unit they mean: `2 hours` is `2h`.
_UNIT_WORDS = (
    (re.compile(r"^(sec|secs|second|seconds|сек|секунд[аы]?)$"), "s"),
    (re.compile(r"^(min|mins|minute|minutes|мин|минут[аы]?)$"), "m"),
    (re.compile(r"^(hr|hrs|hour|hours|час|часа|часов)$"), "h"),
    (re.compile(r"^(day|days|день|дня|дней|сут|суток|сутки)$"), "d"),
    (re.compile(r"^(week|weeks|нед|недел[ьяию])$"), "w"),
    (re.compile(r"^(month|months|мес|месяц|месяца|месяцев)$"), "mo"),
)


def spelled_duration(text: str) -> str | None:
    """The short form of a duration written with words (`2 hours 30 min` -> `2h30m`, `3 дня` -> `3d`), for a hint;
    None when the text is not such a duration."""
    parts = re.findall(r"(\d+)\s*([^\d\s,]+)", text.lower())
    if not parts or re.sub(r"[\d\s,]|[^\d\s,]+", "", text):
        return None
    short = []
    for number, word in parts:
        unit = next((u for pattern, u in _UNIT_WORDS if pattern.match(word)), None)
        if unit is None:
            return None
        short.append(f"{number}{unit}")
    return "".join(short)


def parse_duration(text: str | int | float) -> Duration:
    """Parse an admin's duration; a bare number means seconds. Raises ValueError naming the bad part.

    Durations here are spans to wait, hold or keep: zero and negative ones are refused."""
    if isinstance(text, str) and text.strip().startswith("-"):
        raise ValueError(f"negative duration '{text.strip()}'; durations must be positive")
    if not isinstance(text, (str, bool)) and isinstance(text, (int, float)) and text < 0:
        raise ValueError(f"negative duration '{text}'; durations must be positive")
    duration = _parse(text)
    if duration.approx() <= timedelta(0):
        raise ValueError(f"zero duration '{duration.text}'; durations must be positive")
    return duration


def parse_offset(text: str | int | float) -> Duration:
    """Parse an offset for expressions: what `parse_duration` reads, and also zero and a leading minus
    ('-1d' is one calendar day back, -3600 an hour back). Same units, limits and messages."""
    if isinstance(text, str):
        source = text.strip()
        if source.startswith("-"):
            return -_parse(source[1:].lstrip() or source, shown=source)
        if source.startswith("+"):
            return _parse(source[1:].lstrip() or source, shown=source)
    elif not isinstance(text, bool) and isinstance(text, (int, float)) and text < 0:
        return -_parse(-text, shown=f"{text}")
    return _parse(text)


def _parse(text: str | int | float, shown: str | None = None) -> Duration:
    """The unsigned grammar shared by `parse_duration` and `parse_offset`; `shown` is the admin's whole text
    (with its sign) for messages, the Duration's own text is the unsigned part."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"expected a duration such as '30m', '2h' or '14d', got {text!r}")
    if not isinstance(text, str):
        return _seconds_duration(text, None, shown)
    source = text.strip()
    whole = shown or source
    if not source:
        raise ValueError("empty duration; write e.g. '30s', '5m', '2h', '14d', '2w' or '2mo'")
    if len(source) > 64:
        raise ValueError(f"duration '{source[:20]}...' is too long to be a duration")
    if source.startswith(("-", "+")):
        raise ValueError(f"cannot read '{whole}'; write one sign before the number, e.g. '-1d'")
    if re.fullmatch(r"\d+(?:\.\d+)?", source):
        return _seconds_duration(float(source) if "." in source else int(source), source, whole)
    totals = {"mo": 0, "d": 0, "s": 0}
    seen: set[str] = set()
    pos = 0
    while pos < len(source):
        if source[pos].isspace():
            pos += 1
            continue
        match = _PART.match(source, pos)
        if match is None:
            raise ValueError(f"cannot read '{source[pos:]}' in '{whole}'; write a number and a unit, "
                             f"e.g. '1h30m' ({_UNITS_HINT})")
        digits, fraction, unit = match.groups()
        if fraction is not None:
            raise ValueError(f"'{digits}{fraction}{unit}' in '{whole}': use whole numbers, "
                             f"e.g. '1h30m' instead of '1.5h'")
        if not unit:
            raise ValueError(f"missing unit after '{digits}' in '{whole}'; {_UNITS_HINT}")
        if unit not in ("s", "m", "h", "d", "w", "mo"):
            short = spelled_duration(whole)
            raise ValueError(f"unknown unit '{unit}' in '{whole}'; " + (f"write '{short}'" if short else _UNITS_HINT))
        if unit in seen:
            raise ValueError(f"unit '{unit}' appears twice in '{whole}'")
        seen.add(unit)
        if len(digits) > 10:
            raise ValueError(f"duration '{whole}' is too long; at most 10 years")
        number = int(digits)
        if unit == "mo":
            totals["mo"] += number
        elif unit in ("d", "w"):
            totals["d"] += number * (7 if unit == "w" else 1)
        else:
            totals["s"] += number * _UNIT_SECONDS[unit]
        pos = match.end()
    return _checked(Duration(totals["mo"], totals["d"], totals["s"], source), whole)


def _seconds_duration(value: int | float, text: str | None = None, shown: str | None = None) -> Duration:
    shown = shown or text or str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"duration {shown} is not a number of seconds")
    if value != int(value):
        raise ValueError(f"duration {shown} is not a whole number of seconds")
    if value > _MAX_SPAN.total_seconds():
        raise ValueError(f"duration '{shown}' is too long; at most 10 years")
    return _checked(Duration(seconds=int(value), text=text or f"{int(value)}s"), shown)


def _checked(duration: Duration, shown: str) -> Duration:
    # Counted in plain integers first: a timedelta of 9999999999 days would overflow, not compare.
    days = duration.months * 30 + duration.days + duration.seconds // 86400
    if days > _MAX_SPAN.days or duration.approx() > _MAX_SPAN or duration.months > 120:
        raise ValueError(f"duration '{shown}' is too long; at most 10 years")
    return duration


# --- business hours ---------------------------------------------------------------------------------

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_SETS = {"daily": range(7), "every day": range(7), "weekdays": range(5), "weekends": range(5, 7)}
_HOURS = re.compile(r"(\d{1,2}):(\d{2})[ \t]*[-\u2013\u2014][ \t]*(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When a branch works. `closes` at or before `opens` means it closes the next day ('10:00-02:00');
    `days` (0=Mon..6=Sun) are the days it opens on, so Friday's '22:00-02:00' ends early on Saturday."""

    opens: time
    closes: time
    days: frozenset[int]
    tz: ZoneInfo  # the branch's timezone (the project's unless the branch says otherwise)

    @property
    def overnight(self) -> bool:
        """True when the working day ends after midnight."""
        return self.closes <= self.opens

    def _session(self, day: date) -> tuple[datetime, datetime]:
        """The UTC opening and closing instants of the working day that opens on `day`."""
        close_day = day + timedelta(days=1) if self.overnight else day
        return (localize(datetime.combine(day, self.opens), self.tz),
                localize(datetime.combine(close_day, self.closes), self.tz))


def parse_business_hours(hours: str, days: str | list[str], tz: ZoneInfo) -> BusinessHours:
    """Parse '09:00-21:00' and days such as 'mon-sat', 'mon-fri,sun', ['mon', 'tue'] or 'daily'.

    A closing time at or before the opening time closes the next day; '00:00-24:00' is open all day.
    Raises ValueError with a message naming the bad part.
    """
    match = _HOURS.fullmatch(hours.strip()) if isinstance(hours, str) else None
    if match is None:
        raise ValueError(f"business hours {hours!r} must look like '09:00-21:00'")
    oh, om, ch, cm = (int(g) for g in match.groups())
    for hour, minute, what in ((oh, om, "opening"), (ch, cm, "closing")):
        if minute > 59:
            raise ValueError(f"{what} minute {minute} in '{hours}' is out of range 0-59")
        if hour > 23 and not (what == "closing" and hour == 24 and minute == 0):
            raise ValueError(f"{what} hour {hour} in '{hours}' is out of range 0-23 "
                             f"(24:00 only as a closing time)")
    opens, closes = time(oh, om), time(ch % 24, cm)
    if opens == closes and not (ch == 24 and oh == 0 and om == 0):
        raise ValueError(f"business hours '{hours}' open and close at the same time; "
                         f"write '00:00-24:00' for a branch open all day")
    return BusinessHours(opens, closes, _parse_days(days), tz)


def _parse_days(days: str | list[str]) -> frozenset[int]:
    items = days.split(",") if isinstance(days, str) else list(days) if isinstance(days, (list, tuple)) else None
    if items is None:
        raise ValueError(f"working days must be text such as 'mon-sat' or a list of days, got {days!r}")
    result: set[int] = set()
    for item in items:
        word = str(item).strip().lower()
        if word in _DAY_SETS:
            result.update(_DAY_SETS[word])
            continue
        ends = [_day_number(part.strip(), days) for part in word.split("-")]
        if len(ends) > 2:
            raise ValueError(f"day range '{item}' in {days!r} has more than two ends; write e.g. 'mon-fri'")
        first, last = ends[0], ends[-1]
        # A range may wrap past Sunday: 'fri-mon' is Friday to Monday.
        result.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    if not result:
        raise ValueError("no working days given; write days such as 'mon-sat', 'mon-fri,sun' or 'daily'")
    return frozenset(result)


def _day_number(word: str, days: str | list[str]) -> int:
    if word in _DAY_NAMES:
        return _DAY_NAMES.index(word)
    if word in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(word)
    if not word:
        raise ValueError(f"empty day in {days!r}; write days such as 'mon-sat' or 'mon-fri,sun'")
    close = difflib.get_close_matches(word, _DAY_NAMES + _FULL_DAY_NAMES + tuple(_DAY_SETS), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(f"unknown day '{word}' in {days!r}; {hint}use mon, tue, wed, thu, fri, sat, sun, "
                     f"ranges such as 'mon-fri', or 'daily'")


def end_of_day(at: datetime, hours: BusinessHours) -> datetime:
    """The close time of the working day that `at` falls in: if `at` is on a working day before (or at)
    its close, that day's close; if after close, or on a day off, the close of the next working day.
    Returns UTC. Working days are computed in the branch's local time, so DST changes are respected."""
    moment = _utc(at, "at")
    today = moment.astimezone(hours.tz).date()
    # Start from yesterday: an overnight working day that opened yesterday may still be running.
    for offset in range(-1, 9):
        day = today + timedelta(days=offset)
        if day.weekday() in hours.days:
            closes = hours._session(day)[1]
            if closes >= moment:
                return closes
    raise ValueError("business hours have no working days")


def start_of_day(at: datetime, hours: BusinessHours) -> datetime:
    """The next opening time at or after `at` (today's opening if before it, else the next working
    day's). Returns UTC."""
    moment = _utc(at, "at")
    today = moment.astimezone(hours.tz).date()
    for offset in range(0, 9):
        day = today + timedelta(days=offset)
        if day.weekday() in hours.days:
            opens = hours._session(day)[0]
            if opens >= moment:
                return opens
    raise ValueError("business hours have no working days")


def is_open(at: datetime, hours: BusinessHours) -> bool:
    """Whether the branch is working at `at` (opening inclusive, closing exclusive)."""
    moment = _utc(at, "at")
    today = moment.astimezone(hours.tz).date()
    for day in (today - timedelta(days=1), today):
        if day.weekday() in hours.days:
            opens, closes = hours._session(day)
            if opens <= moment < closes:
                return True
    return False


# --- cron -------------------------------------------------------------------------------------------

_CRON_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                 "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                 "@hourly": "0 * * * *"}
# English names, spelled out: the calendar module's names follow the process locale.
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()),
           ("month", 1, 12, tuple(m[:3].lower() for m in _MONTH_NAMES)),
           ("day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
_FIELD_LIST = "minute hour day-of-month month day-of-week"
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February can have 29


def cron_problem(expr: str) -> str | None:
    """None if the 5-field cron expression is valid and can ever fire; else a readable message.

    Catches syntax errors per field ("hour 25 is out of range 0-23"), 6/7-field expressions (seconds,
    years), steps wider than their field, and schedules that can never match ('0 0 30 2 *'). The
    never-fires check is static over day-of-month x month, honouring cron's rule that a restricted
    day-of-month and a restricted day-of-week are OR-ed; only '#'/'W' forms need a bounded croniter probe.
    """
    try:
        _compile(expr)
    except ValueError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=512)
def _compile(expr: str) -> tuple[str, bool]:
    """Validate and normalise `expr`; return the 5-field form and whether its hour field is a wildcard."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"empty cron expression; write 5 fields ({_FIELD_LIST}), e.g. '0 10 * * *'")
    source = expr.strip()
    bad = f"bad cron expression '{source}'"
    if source.startswith("@"):
        if source.lower() not in _CRON_ALIASES:
            raise ValueError(f"{bad}: unknown alias; use {', '.join(_CRON_ALIASES)}")
        source = _CRON_ALIASES[source.lower()]
    fields = source.split()
    if len(fields) in (6, 7):
        extra = "seconds are" if len(fields) == 6 else "seconds and years are"
        raise ValueError(f"{bad}: {len(fields)} fields given, but schedules use 5 ({_FIELD_LIST}); "
                         f"{extra} not supported")
    if len(fields) != 5:
        raise ValueError(f"{bad}: expected 5 fields ({_FIELD_LIST}), got {len(fields)}")
    normal = " ".join(fields)
    try:
        probe = croniter(normal, datetime(2000, 1, 1))
    except CroniterError as exc:
        raise ValueError(f"{bad}: {_explain(fields) or _clean(str(exc), normal)}") from None
    for (name, low, high, _names), text in zip(_FIELDS, fields):
        for step in re.findall(r"/(\d+)", text):
            if int(step) > high - low:
                raise ValueError(f"{bad}: {name} step {step} is wider than the field ({low}-{high}); "
                                 f"cron cannot say 'every {step} {name}s'")
    never = _never_fires(probe, normal)
    if never:
        raise ValueError(f"never fires: {never}")
    return normal, fields[1].startswith("*")


def _explain(fields: list[str]) -> str | None:
    """Name the first field croniter refuses on its own, and why, in words an admin reads."""
    for index, ((name, low, high, names), text) in enumerate(zip(_FIELDS, fields)):
        alone = ["*"] * 5
        alone[index] = text
        if croniter.is_valid(" ".join(alone)):
            continue
        accepted = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
        for item in text.split(","):
            base, slash, step = item.partition("/")
            if slash and not step.isdigit():
                return f"{name} step '{step}' in '{item}' is not a number"
            if slash and int(step) == 0:
                return f"{name} step 0 in '{item}' must be at least 1"
            if base in ("*", "?"):
                continue
            for part in base.split("-") if base else [""]:
                if part.isdigit():
                    if not low <= int(part) <= high:
                        return f"{name} {int(part)} is out of range {low}-{high}"
                elif part.lower() not in names:
                    return f"{name} '{part or text}' is not a valid value; use {accepted}"
        return f"{name} field '{text}' is not valid; use {accepted}"
    return None


def _clean(message: str, expr: str) -> str:
    return message.replace(f"[{expr}]", "").replace(expr, "").strip(" .,:") or "not a valid expression"


def _never_fires(probe: croniter, normal: str) -> str | None:
    """Why the expression can never match, or None; static unless '#' or 'W' make it irregular."""
    doms, months, dows = probe.expanded[2], probe.expanded[3], probe.expanded[4]
    if probe.nth_weekday_of_month or probe.nearest_weekday:
        try:  # bounded: 30 years cover every weekday/leap-year arrangement
            croniter(normal, datetime(2000, 1, 1), max_years_between_matches=30).get_next(datetime)
        except CroniterBadDateError:
            return "no date matches its day-of-month, month and day-of-week fields"
        return None
    if doms[0] == "*" or "l" in doms or dows[0] != "*":
        return None  # with a restricted weekday, cron ORs the two day fields: it fires on that weekday
    wanted = [m for m in range(1, 13)] if months[0] == "*" else [int(m) for m in months]
    days = sorted(int(d) for d in doms)
    if any(d <= _MONTH_DAYS[m - 1] for m in wanted for d in days):
        return None
    names = [_MONTH_NAMES[m - 1] for m in wanted]
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    numbers = ", ".join(map(str, days[:-1])) + " or " + str(days[-1]) if len(days) > 1 else str(days[0])
    return f"{who} {'has' if len(names) == 1 else 'have'} no day {numbers}"


def cron_next(expr: str, after: datetime, tz: ZoneInfo) -> datetime:
    """The next fire time strictly after `after`, with the schedule read in local time of `tz`; UTC.

    DST, following Vixie cron's documented behaviour:
    * A schedule with a fixed hour fires each local time at most once. On the spring-forward day a
      time that does not exist (daily 02:30 in Europe/Berlin) fires once at the first existing moment
      after it (03:00 CEST); on the fall-back day an ambiguous time fires once, at its first occurrence.
    * A schedule whose hour field is '*' or '*/n' (hourly, every 5 minutes) follows real time: during
      the repeated fall-back hour it fires in both passes, and wall times skipped by spring-forward
      are skipped (the next real hour fires as usual).
    Raises ValueError for an expression `cron_problem` refuses.
    """
    for fire in _fires(expr, after, tz):
        return fire
    raise ValueError(f"cron expression '{expr}' never fires")


def cron_between(expr: str, start: datetime, end: datetime, tz: ZoneInfo, limit: int = 1000) -> list[datetime]:
    """All fire times in (start, end], ascending, in UTC; at most `limit` of them (the earliest), so a
    long outage or a per-minute schedule cannot flood catch-up. DST rules as in `cron_next`."""
    stop = _utc(end, "end")
    result: list[datetime] = []
    for fire in _fires(expr, start, tz):
        if fire > stop or len(result) >= limit:
            break
        result.append(fire)
    return result


def _fires(expr: str, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    """Fire instants after `after`, ascending. Candidates come from croniter over naive local wall
    times (no DST logic of croniter involved) and are localized here."""
    normal, real_time = _compile(expr)
    moment = _utc(after, "after")
    start = _wall(moment, tz)
    offset = moment.astimezone(tz).utcoffset()
    if real_time and any((moment + timedelta(hours=h)).astimezone(tz).utcoffset() != offset for h in (-3, 3)):
        # Near a transition, the second pass of a repeated hour has wall times before `after`'s.
        start -= timedelta(hours=3)
    candidates = croniter(normal, start)
    pending: list[datetime] = []
    last = moment
    while True:
        try:
            wall = candidates.get_next(datetime)
        except CroniterBadDateError:
            return
        first = localize(wall, tz)
        exists = _wall(first, tz) == wall
        if exists or not real_time:
            heapq.heappush(pending, first)
        later = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if real_time and later != first and _wall(later, tz) == wall:
            heapq.heappush(pending, later)  # the repeated hour's second pass
        # Every later candidate lands at or after `first`, so what is queued up to it is final.
        while pending and pending[0] <= first:
            fire = heapq.heappop(pending)
            if fire > last:
                last = fire
                yield fire
