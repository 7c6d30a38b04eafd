"""What evaluation needs besides the data (`EvalContext`, and the store as lookups read it: `Lookups`, `Record`),
and `now`/`today` as both values and calls."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo


def _no_segment(client: Mapping[str, Any]) -> str | None:
    return None


def _no_recency(client: Mapping[str, Any]) -> timedelta | None:
    return None


class Record(dict[str, Any]):
    """A stored record as a lookup gives it: its fields, and its kind (`booking`, `deal`, `visit`), so that
    `for_each: {items: ...}` knows which record each item is. Expressions read it as any record; it is a dict so
    that a run's `set:` keeps it, and stores it, as the record it is; nothing changes it (expressions cannot)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self.kind = kind

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a looked-up record is read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only


class Lookups(Protocol):
    """The store as the library's lookup functions read it: one person's records through an index, never a scan
    of every record. Each answer is as the decision's snapshot holds it (pure: `dry-run` and `test` show it)."""

    def client_by_phone(self, phone: str) -> Record | None:
        """The person with this E.164 phone, or None."""

    def records(self, kind: str, client: str, limit: int) -> list[Record]:
        """Up to `limit` of a person's bookings or deals, oldest first (`Snapshot.related`'s order)."""

    def bookings_starting(self, after: datetime, before: datetime, limit: int) -> list[Record]:
        """Up to `limit` of every client's bookings that start in [after, before) as the store reads their start
        (text without an offset as UTC), earliest first."""

    def visits(self, client: str, since: datetime | None, limit: int) -> list[Record]:
        """Up to `limit` of a person's visits and purchases, oldest first, since a moment when given."""


MAX_ROWS = 10_000  # records the lookups of one evaluation may read


@dataclass(frozen=True, slots=True)
class EvalContext:
    """What evaluation needs besides the data: the time, the timezone, segment and business-hours lookups, and
    the store's records (`lookups`; None where no store is read, and the lookup functions then say so)."""

    now: datetime
    tz: ZoneInfo
    segment_of: Callable[[Mapping[str, Any]], str | None] = _no_segment
    segment_avg_recency: Callable[[Mapping[str, Any]], timedelta | None] = _no_recency
    end_of_day: Callable[[datetime, str | None], datetime] | None = None
    start_of_day: Callable[[datetime, str | None], datetime] | None = None
    deadline_s: float = 0.05
    lookups: Lookups | None = None
    max_rows: int = MAX_ROWS

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("EvalContext.now must be timezone-aware")


class _Now(datetime):
    """`now` is both a value and a call: `now` and `now()` are the same moment."""

    __slots__ = ()

    def __call__(self) -> _Now:
        return self


class _Today(date):
    """`today` is both a value and a call."""

    __slots__ = ()

    def __call__(self) -> _Today:
        return self


def _now(ctx: EvalContext) -> _Now:
    n = ctx.now.astimezone(ctx.tz)
    return _Now(n.year, n.month, n.day, n.hour, n.minute, n.second, n.microsecond, n.tzinfo, fold=n.fold)


def _plain(value: Any) -> Any:
    # The callable stand-ins must not leak into traces and effects.
    if value.__class__ is _Now:
        return datetime.combine(value, value.timetz())
    if value.__class__ is _Today:
        return date(value.year, value.month, value.day)
    return value


def _today_of(ctx: EvalContext) -> _Today:
    d = ctx.now.astimezone(ctx.tz)
    return _Today(d.year, d.month, d.day)
