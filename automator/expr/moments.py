"""Dates, times and spans as expressions read them: ISO text in the project's timezone, calendar arithmetic."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Any

from automator.clock import Duration, parse_offset
from automator.expr.context import EvalContext, _plain
from automator.expr.describe import _describe, _short
from automator.expr.errors import EvalError

# `duration('2mo')`, `add(x, '-1d')`, `now - duration('1d')` are clock's calendar spans, the same as `wait: 2mo`:
# added to a date or time they move its wall clock in the project's timezone. Where a length is needed instead
# (a comparison, days(), a division), a span without months has a fixed one (a day is 24 hours); months do not.

_MOMENTS = "compare moments instead, e.g. client.last_visit_at < now - duration('2mo')"
_MONTHS_HINT = f"a month is 28 to 31 days; {_MOMENTS}"


def _exact(value: Any) -> Any:
    """A Duration as its fixed length; other values as they are."""
    if value.__class__ is not Duration:
        return value
    try:
        return value.exact()
    except ValueError as exc:
        raise EvalError(f"{exc}; {_MOMENTS}") from None


def _shift(ctx: EvalContext, at: Any, span: Duration | timedelta, fn: str) -> date:
    """A date or time moved by a span: a Duration in calendar time, a timedelta in exact time."""
    if isinstance(at, date) and not isinstance(at, datetime) and isinstance(span, Duration) and not span.seconds:
        return span.add_to_date(date(at.year, at.month, at.day))
    moment = _in_tz(ctx, at, fn)
    moved = span.add_to(moment, ctx.tz) if isinstance(span, Duration) else moment.astimezone(timezone.utc) + span
    return _plain(moved.astimezone(ctx.tz))


def _by_length(left: Any, right: Any, symbol: str) -> bool:
    """Whether a comparison involving a Duration compares lengths: against a timedelta, or two spans ordered."""
    spans = (Duration, timedelta)
    if not (isinstance(left, spans) and isinstance(right, spans)):
        return False
    return not (left.__class__ is right.__class__ is Duration and symbol in ("==", "!="))


def _is_moment(value: Any) -> bool:
    """A date, a date-time, or ISO text of one (entity fields may still arrive as text, as functions accept)."""
    if isinstance(value, date):
        return True
    if isinstance(value, str) and 10 <= len(value) <= 40:
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            return False
        return True
    return False


def _calendar_binop(op: Callable[[Any, Any], Any], symbol: str, ctx: EvalContext, left: Any, right: Any) -> Any:
    """An operator with a Duration operand: `x ± span` and `span + x` move a date or time in calendar time;
    spans add up and multiply by whole numbers as spans; anything else uses their fixed length."""
    if symbol in ("+", "-") and right.__class__ is Duration and _is_moment(left):
        return _shift(ctx, left, right if symbol == "+" else -right, f"'{symbol}'")
    if symbol == "+" and left.__class__ is Duration and _is_moment(right):
        return _shift(ctx, right, left, "'+'")
    try:
        return op(left, right)
    except TypeError:
        if not all(isinstance(v, (Duration, timedelta, int, float)) for v in (left, right)):
            raise
        return op(_exact(left), _exact(right))


def _in_tz(ctx: EvalContext, value: Any, fn: str) -> datetime:
    """An ISO string, date or datetime as an aware datetime in the project's timezone (naive means local)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return datetime.combine(value, dtime(), tzinfo=ctx.tz)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise EvalError(f"{fn}(): not a date or time: {_short(value)}") from None
    else:
        raise EvalError(f"{fn}() expects a date or time, got {_describe(value)}")
    return moment.replace(tzinfo=ctx.tz) if moment.utcoffset() is None else moment.astimezone(ctx.tz)


def _wall_seconds(later: datetime, earlier: datetime) -> float:
    # Calendar arithmetic on local wall clocks, so a day is a day even across a DST change.
    return (later.replace(tzinfo=None) - earlier.replace(tzinfo=None)).total_seconds()


def _now_in_tz(ctx: EvalContext) -> datetime:
    return ctx.now.astimezone(ctx.tz)


def _as_duration(value: Any, fn: str) -> Duration | timedelta:
    """A span from a duration text ('14d', '-1d'), a number of seconds, a Duration or a timedelta."""
    if isinstance(value, (Duration, timedelta)):
        return value
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return parse_offset(value)
        except ValueError as exc:
            raise EvalError(f"{fn}(): {exc}") from None
    raise EvalError(f"{fn}() expects a duration such as '14d', got {_describe(value)}")
