"""What evaluation needs besides the data (`EvalContext`), and `now`/`today` as both values and calls."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def _no_segment(client: Mapping[str, Any]) -> str | None:
    return None


def _no_recency(client: Mapping[str, Any]) -> timedelta | None:
    return None


@dataclass(frozen=True, slots=True)
class EvalContext:
    """What evaluation needs besides the data: the time, the timezone, segment and business-hours lookups."""

    now: datetime
    tz: ZoneInfo
    segment_of: Callable[[Mapping[str, Any]], str | None] = _no_segment
    segment_avg_recency: Callable[[Mapping[str, Any]], timedelta | None] = _no_recency
    end_of_day: Callable[[datetime, str | None], datetime] | None = None
    start_of_day: Callable[[datetime, str | None], datetime] | None = None
    deadline_s: float = 0.05

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
