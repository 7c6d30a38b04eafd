"""The function library: every function an expression may call, registered with its signature, doc and examples.

Empty values: the time and text helpers pass None through (`days_since(None)` is None), `len(None)` is 0,
`contains`/`startswith`/`has` on None are false. `FUNCTIONS` and `REFERENCE` are what `automator functions`
and the README's reference show (`automator.functions` renders them).

Lookups (`client_by_phone`, `deals_of`, `bookings_of`, `bookings_at`, `visits_of`) read the decision's snapshot
through `EvalContext.lookups`, one person's records (or one slot's bookings) at a time, and count what they read
against `EvalContext.max_rows` (the store stops reading there); the aggregates (`count`, `sum`, `avg`, `min`,
`max`, `any`, `all`, `where`) work on any list, their results.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from automator import datefmt
from automator.clock import Duration
from automator.expr.context import EvalContext, Lookups, Record, _now, _Now, _plain, _today_of, _Today
from automator.expr.describe import _describe, _short
from automator.expr.errors import EvalError
from automator.expr.formatting import _format
from automator.expr.limits import _charge_rows, _check_size, _rows_left
from automator.expr.moments import _as_duration, _exact, _in_tz, _now_in_tz, _shift, _wall_seconds
from automator.phone import Policy, to_e164


_LIBRARY: dict[str, Callable[..., Any]] = {}
_DOCS: dict[str, str] = {}
_REFERENCE: dict[str, FunctionDoc] = {}


@dataclass(frozen=True, slots=True)
class FunctionDoc:
    """One library function as the reference shows it: the call, what it gives, and worked examples.

    Each example is an expression and the value it gives on the reference's fixed scope and clock
    (`automator.functions.EXAMPLE_SCOPE`), written as `automator functions` prints values."""

    name: str
    signature: str
    doc: str
    examples: tuple[tuple[str, str], ...]


def _fn(signature: str, doc: str, *examples: tuple[str, str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    name = signature.split("(")[0]

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        _LIBRARY[name], _DOCS[name] = impl, f"{signature}: {doc}"
        _REFERENCE[name] = FunctionDoc(name, signature, doc, examples)
        return impl
    return register


@_fn("now", "the current date-time in the project's timezone (also `now()`)",
     ("now", "2026-03-02T12:00:00+03:00"))
def _f_now(ctx: EvalContext) -> _Now:
    return _now(ctx)


@_fn("today", "the current date in the project's timezone (also `today()`)", ("today", "2026-03-02"))
def _f_today(ctx: EvalContext) -> _Today:
    return _today_of(ctx)


@_fn("days_since(x)", "calendar days (fractional) from x to now; empty if x is empty",
     ("days_since(client.last_visit_at)", "10"))
def _f_days_since(ctx: EvalContext, x: Any) -> float | None:
    if x is None:
        return None
    return _wall_seconds(_now_in_tz(ctx), _in_tz(ctx, x, "days_since")) / 86400


@_fn("hours_since(x)", "hours elapsed from x to now; empty if x is empty",
     ("hours_since('2026-03-02T09:30:00+03:00')", "2.5"))
def _f_hours_since(ctx: EvalContext, x: Any) -> float | None:
    return None if x is None else (ctx.now.timestamp() - _in_tz(ctx, x, "hours_since").timestamp()) / 3600


@_fn("minutes_since(x)", "minutes elapsed from x to now; empty if x is empty",
     ("minutes_since('2026-03-02T11:15:00+03:00')", "45"))
def _f_minutes_since(ctx: EvalContext, x: Any) -> float | None:
    return None if x is None else (ctx.now.timestamp() - _in_tz(ctx, x, "minutes_since").timestamp()) / 60


@_fn("days_until(x)", "calendar days (fractional) from now to x; empty if x is empty",
     ("days_until(booking.starts_at)", "3.125"))
def _f_days_until(ctx: EvalContext, x: Any) -> float | None:
    if x is None:
        return None
    return _wall_seconds(_in_tz(ctx, x, "days_until"), _now_in_tz(ctx)) / 86400


@_fn("hours_until(x)", "hours from now to x; empty if x is empty", ("hours_until(booking.starts_at)", "75"))
def _f_hours_until(ctx: EvalContext, x: Any) -> float | None:
    return None if x is None else (_in_tz(ctx, x, "hours_until").timestamp() - ctx.now.timestamp()) / 3600


@_fn("duration(x)", "a span: s, m, h, d, w, mo ('1h30m'); a leading '-' goes back; a number means seconds. "
     "Added to a date or time, days, weeks and months keep the wall-clock time, as `wait:` does; compared or "
     "measured, a day is 24 hours, and months (no fixed length) are refused",
     ("duration('1h30m')", "1h30m"), ("now + duration('1mo')", "2026-04-02T12:00:00+03:00"),
     ("booking.starts_at - duration('1d')", "2026-03-04T15:00:00+03:00"))
def _f_duration(ctx: EvalContext, x: Any) -> Duration | timedelta | None:
    return None if x is None else _as_duration(x, "duration")


@_fn("segment_of(client)", "the client's RFM segment name, or empty", ("segment_of(client)", "'loyal'"))
def _f_segment_of(ctx: EvalContext, client: Any) -> str | None:
    return None if client is None else ctx.segment_of(client)


@_fn("segment_avg_recency(client)", "the average time between visits in the client's segment",
     ("segment_avg_recency(client)", "21d"))
def _f_segment_avg_recency(ctx: EvalContext, client: Any) -> timedelta | None:
    return None if client is None else ctx.segment_avg_recency(client)


@_fn("phone(x)", "the number in E.164 form; Russian numbers may omit the +7 / 8",
     ("phone(client.phone)", "'+79161234567'"))
def _f_phone(ctx: EvalContext, x: Any) -> str | None:
    if x is None:
        return None
    number = None
    if not isinstance(x, bool) and isinstance(x, (str, int)) and len(str(x)) <= 40:
        number = to_e164(str(x), policy=Policy.VALID, region="RU")
    if number is None:
        raise EvalError(f"not a phone number: {_short(x)}")
    return number


def _date_text(ctx: EvalContext, x: Any, fmt: Any, fn: str) -> str | None:
    if x is None:
        return None
    if not isinstance(fmt, str) or len(fmt) > 200:
        raise EvalError(f"{fn}(): the format must be a short text such as 'DD.MM.YYYY'")
    try:
        compiled = datefmt.compile_format(fmt)
    except datefmt.FormatError as exc:
        raise EvalError(f"{fn}(): {exc.message}; {exc.hint}") from None
    if isinstance(x, date) and not isinstance(x, datetime):
        return compiled.render(x)
    return compiled.render(_in_tz(ctx, x, fn))


@_fn("fmt_date(x, fmt='DD.MM.YYYY')", "a date or time as text in the project's timezone, written in date format "
     "tokens: 'DD.MM.YYYY HH:mm', 'D MMMM' (2 марта)",
     ("fmt_date(booking.starts_at)", "'05.03.2026'"),
     ("fmt_date(booking.starts_at, 'D MMMM, dddd, [в] HH:mm')", "'5 марта, четверг, в 15:00'"))
def _f_fmt_date(ctx: EvalContext, x: Any, fmt: str = "DD.MM.YYYY") -> str | None:
    return _date_text(ctx, x, fmt, "fmt_date")


@_fn("fmt_time(x, fmt='HH:mm')", "the time of day in the project's timezone; fmt as in fmt_date",
     ("fmt_time(booking.starts_at)", "'15:00'"), ("fmt_time(booking.starts_at, 'H [ч] mm [мин]')", "'15 ч 00 мин'"))
def _f_fmt_time(ctx: EvalContext, x: Any, fmt: str = "HH:mm") -> str | None:
    return _date_text(ctx, x, fmt, "fmt_time")


@_fn("date(x)", "an ISO text, date or date-time as a date in the project's timezone",
     ("date(booking.starts_at)", "2026-03-05"))
def _f_date(ctx: EvalContext, x: Any) -> date | None:
    if x is None:
        return None
    if isinstance(x, date) and not isinstance(x, datetime):
        return date(x.year, x.month, x.day)
    if isinstance(x, str) and len(x.strip()) == 10:
        try:
            return date.fromisoformat(x.strip())
        except ValueError:
            raise EvalError(f"date(): not a date: {_short(x)}") from None
    return _in_tz(ctx, x, "date").date()


@_fn("datetime(x)", "an ISO text, date or date-time as a date-time in the project's timezone (no offset: local)",
     ("datetime('2026-03-05 15:00')", "2026-03-05T15:00:00+03:00"))
def _f_datetime(ctx: EvalContext, x: Any) -> datetime | None:
    return None if x is None else _plain(_in_tz(ctx, x, "datetime"))


@_fn("add(x, d)", "the date or time x moved by d ('2h', '-1d', duration(...) or seconds), as duration() says",
     ("add(booking.starts_at, '-1d')", "2026-03-04T15:00:00+03:00"), ("add(today, '1mo')", "2026-04-02"))
def _f_add(ctx: EvalContext, x: Any, d: Any) -> date | None:
    if x is None or d is None:
        return None
    return _shift(ctx, x, _as_duration(d, "add"), "add")


def _total(td: Any, fn: str, unit: int) -> float | None:
    if td is None:
        return None
    if not isinstance(td, (timedelta, Duration)):
        raise EvalError(f"{fn}() expects a duration, got {_describe(td)}")
    return _exact(td).total_seconds() / unit


@_fn("days(d)", "a duration in days (a number; a day is 24 hours, months are refused)",
     ("days(duration('36h'))", "1.5"))
def _f_days(ctx: EvalContext, d: Any) -> float | None:
    return _total(d, "days", 86400)


@_fn("hours(d)", "a duration in hours (a number; months are refused)", ("hours(segment_avg_recency(client))", "504"))
def _f_hours(ctx: EvalContext, d: Any) -> float | None:
    return _total(d, "hours", 3600)


@_fn("len(x)", "the length of a text, list or record; 0 if empty", ("len(client.tags)", "2"))
def _f_len(ctx: EvalContext, x: Any) -> int:
    if x is None:
        return 0
    if not isinstance(x, (str, list, tuple, set, frozenset, Mapping)):
        raise EvalError(f"len() expects a text, list or record, got {_describe(x)}")
    return len(x)


def _text_fn(name: str, method: Callable[[str], str], doc: str, example: tuple[str, str]) -> None:
    def impl(ctx: EvalContext, x: Any) -> str | None:
        if x is None or isinstance(x, str):
            return x if x is None else method(x)
        raise EvalError(f"{name}() expects a text, got {_describe(x)}")
    _fn(f"{name}(x)", doc, example)(impl)


_text_fn("lower", str.lower, "the text in lower case", ("lower('VIP')", "'vip'"))
_text_fn("upper", str.upper, "the text in upper case", ("upper(client.name)", "'АННА'"))
_text_fn("strip", str.strip, "the text with spaces trimmed at both ends", ("strip('  Анна ')", "'Анна'"))


@_fn("contains(haystack, needle)", "the text or list holds needle (case-sensitive); false if empty",
     ("contains(client.tags, 'vip')", "true"))
def _f_contains(ctx: EvalContext, haystack: Any, needle: Any) -> bool:
    if haystack is None:
        return False
    if isinstance(haystack, str) and not isinstance(needle, str):
        raise EvalError(f"contains(): cannot look for {_describe(needle)} in a text")
    if not isinstance(haystack, (str, list, tuple, set, frozenset, Mapping)):
        raise EvalError(f"contains() expects a text, list or record, got {_describe(haystack)}")
    try:
        return needle in haystack
    except TypeError:
        return False


@_fn("startswith(s, prefix)", "the text s begins with prefix; false if empty",
     ("startswith(client.phone, '8 916')", "true"))
def _f_startswith(ctx: EvalContext, s: Any, prefix: Any) -> bool:
    if s is None:
        return False
    if not isinstance(s, str) or not isinstance(prefix, str):
        raise EvalError(f"startswith() expects two texts, got {_describe(s)} and {_describe(prefix)}")
    return s.startswith(prefix)


def _number(x: Any, fn: str) -> Any:
    if isinstance(x, (int, float, Decimal)):  # a Decimal is money: round(), abs(), min() keep it exact
        return x
    raise EvalError(f"{fn}() expects a number, got {_describe(x)}")


@_fn("round(x, digits=0)", "x rounded; empty if x is empty", ("round(days_until(booking.starts_at), 1)", "3.1"))
def _f_round(ctx: EvalContext, x: Any, digits: int | None = None) -> Any:
    if x is None:
        return None
    if digits is not None and (not isinstance(digits, int) or abs(digits) > 20):
        raise EvalError("round(): digits must be a whole number between -20 and 20")
    return round(_number(x, "round"), digits)


@_fn("abs(x)", "the absolute value of a number or duration; empty if x is empty",
     ("abs(client.visits - 10)", "6"), ("abs(duration('-2h'))", "2h"))
def _f_abs(ctx: EvalContext, x: Any) -> Any:
    if x is None or isinstance(x, timedelta):
        return x if x is None else abs(x)
    if isinstance(x, Duration):
        return -x if min(x.months, x.days, x.seconds) < 0 else x
    return abs(_number(x, "abs"))


def _extreme(name: str, pick: Callable[[list[Any]], Any], args: tuple[Any, ...], field: Any) -> Any:
    items = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple, set, frozenset)) else args
    values = _present(_values(items, field, name))
    if not values:
        return None
    if any(v.__class__ is Duration for v in values):
        values = [_exact(v) for v in values]
    try:
        return pick(values)
    except TypeError:
        raise EvalError(f"{name}() cannot compare {', '.join(sorted({_describe(v) for v in values}))}") from None


@_fn("min(a, b, ..., field=None)", "the smallest value (or of one list; of each item's `field` when given), "
     "ignoring empty ones", ("min(client.visits, 3)", "3"), ("min(visits_of(client), field='at')",
                                                            "2025-12-10T12:00:00+03:00"))
def _f_min(ctx: EvalContext, *values: Any, field: Any = None) -> Any:
    return _extreme("min", min, values, field)


@_fn("max(a, b, ..., field=None)", "the largest value (or of one list; of each item's `field` when given), "
     "ignoring empty ones", ("max([1, 5, 2])", "5"), ("max(bookings_of(client), field='starts_at')",
                                                      "2026-03-05T15:00:00+03:00"))
def _f_max(ctx: EvalContext, *values: Any, field: Any = None) -> Any:
    return _extreme("max", max, values, field)


@_fn("int(x)", "a whole number from a number or text (truncated); empty if x is empty", ("int('42')", "42"))
def _f_int(ctx: EvalContext, x: Any) -> int | None:
    if x is None:
        return None
    try:
        if isinstance(x, str):
            text = x.strip()
            value = int(text) if re.fullmatch(r"[+-]?\d{1,101}", text) else int(float(text))
        else:
            value = int(_number(x, "int"))
    except (ValueError, OverflowError):
        raise EvalError(f"int(): not a number: {_short(x)}") from None
    return _check_size(value)


@_fn("float(x)", "a number from a number or text; empty if x is empty", ("float('2.5')", "2.5"))
def _f_float(ctx: EvalContext, x: Any) -> float | None:
    if x is None:
        return None
    try:
        return float(x.strip() if isinstance(x, str) else _number(x, "float"))
    except ValueError:
        raise EvalError(f"float(): not a number: {_short(x)}") from None


@_fn("str(x)", "x as text, formatted as in templates; '' if empty", ("str(client.visits)", "'4'"))
def _f_str(ctx: EvalContext, x: Any) -> str:
    return _check_size(_format(x, ctx))


@_fn("bool(x)", "false for empty, 0, '' and empty lists; true otherwise", ("bool(client.tags)", "true"))
def _f_bool(ctx: EvalContext, x: Any) -> bool:
    return bool(x)


@_fn("get(record, 'field', default=None)", "the field, or default when it is missing or empty",
     ("get(client, 'email', 'no email')", "'no email'"))
def _f_get(ctx: EvalContext, record: Any, name: Any, default: Any = None) -> Any:
    if record is None:
        return default
    if isinstance(record, Mapping):
        value = record.get(name) if isinstance(name, (str, int)) else None
    elif isinstance(record, (list, tuple)) and isinstance(name, int) and -len(record) <= name < len(record):
        value = record[name]
    elif isinstance(record, (list, tuple)):
        value = None
    else:
        raise EvalError(f"get() expects a record, got {_describe(record)}")
    return default if value is None else value


@_fn("has(record, 'field')", "the record has the field and it is not empty", ("has(client, 'email')", "false"))
def _f_has(ctx: EvalContext, record: Any, name: Any) -> bool:
    if record is None:
        return False
    if not isinstance(record, Mapping):
        raise EvalError(f"has() expects a record, got {_describe(record)}")
    return isinstance(name, (str, int)) and record.get(name) is not None


@_fn("coalesce(a, b, ...)", "the first value that is not empty",
     ("coalesce(get(client, 'email'), client.phone)", "'8 916 123-45-67'"))
def _f_coalesce(ctx: EvalContext, *values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _day_edge(name: str, doc: str, example: tuple[str, str]) -> None:
    def impl(ctx: EvalContext, at: Any = None, branch: str | None = None) -> datetime:
        edge = getattr(ctx, name)
        if edge is None:
            raise EvalError(f"{name}() is not available: business hours are not configured")
        moment = _now_in_tz(ctx) if at is None else _in_tz(ctx, at, name)
        return edge(_plain(moment), branch)
    _fn(f"{name}(at=now, branch=None)", doc, example)(impl)


_day_edge("end_of_day", "when the branch closes: the working day `at` falls in, or the next one if it is "
          "closed then (business hours)", ("end_of_day()", "2026-03-02T21:00:00+03:00"))
_day_edge("start_of_day", "the branch's next opening at or after `at` (business hours)",
          ("start_of_day()", "2026-03-03T10:00:00+03:00"))

# ---- lookups: one person's records in the store --------------------------------------------------------------
def _lookups(ctx: EvalContext, fn: str) -> Lookups:
    if ctx.lookups is None:
        raise EvalError(f"{fn}() reads the store, and none is read here")
    return ctx.lookups


def _person(client: Any, fn: str) -> str | None:
    """A person's id from a client record (`client`) or an id written out (`'77'`, 77); None when empty."""
    value = client.get("id") if isinstance(client, Mapping) else client
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EvalError(f"{fn}() expects a client or a client id, got {_describe(client)}")
    return str(value)


def _read(ctx: EvalContext, fn: str, read: Callable[[int], list[Record]]) -> list[Record]:
    """One lookup, bounded: it may read one record past what is left, which proves the evaluation over budget."""
    rows = read(_rows_left(ctx.max_rows) + 1)
    _charge_rows(len(rows), ctx.max_rows, f"{fn}()")
    return rows


def _moment(ctx: EvalContext, x: Any, fn: str) -> datetime | None:
    return None if x is None else _in_tz(ctx, x, fn)


@_fn("client_by_phone(p)", "the stored client with this phone (any spelling phone() reads), or empty when nobody "
     "has it: found by the phone each system reported for the person, else by a stored client's `phone` field",
     ("client_by_phone('+7 916 123-45-67').name", "'Анна'"), ("client_by_phone('+79990000000')", "empty"))
def _f_client_by_phone(ctx: EvalContext, p: Any) -> Record | None:
    number = _f_phone(ctx, p)
    if number is None:
        return None
    _charge_rows(1, ctx.max_rows, "client_by_phone()")
    return _lookups(ctx, "client_by_phone").client_by_phone(number)


def _matches(value: Any, wanted: Any) -> bool:
    """Equality as an admin means it (`5` equals "5", True is no number), or one of a list of wanted values."""
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return any(_matches(value, w) for w in wanted)
    if value == wanted:
        return True
    if value is None or wanted is None or isinstance(value, bool) or isinstance(wanted, bool):
        return False
    return isinstance(value, (str, int)) and isinstance(wanted, (str, int)) and str(value) == str(wanted)


def _items(x: Any, fn: str) -> list[Any]:
    if x is None:
        return []
    if not isinstance(x, (list, tuple, set, frozenset)):
        raise EvalError(f"{fn}() expects a list, got {_describe(x)}")
    return list(x)


def _filtered(items: Any, equals: Mapping[str, Any], fn: str) -> list[Any]:
    found = _items(items, fn)
    if not equals:
        return found
    out = []
    for item in found:
        if not isinstance(item, Mapping):
            raise EvalError(f"{fn}() filters records by their fields; an item is {_describe(item)}")
        if all(_matches(item.get(name), wanted) for name, wanted in equals.items()):
            out.append(item)
    return out


_CLOSED_OUTCOMES = ("won", "lost")


def _open_deal(deal: Mapping[str, Any]) -> bool:
    # Every CRM connector says where a deal stands in the canonical `outcome` (and Bitrix24 in `closed` too): the
    # core knows no system's stage ids.
    return not (deal.get("closed") is True or deal.get("outcome") in _CLOSED_OUTCOMES)


@_fn("deals_of(client, pipeline=None, open=None)", "the client's deals, oldest first (by when they were made): of one "
     "pipeline (or a list of them), only open ones (open=true: outcome not won or lost, not closed) or only closed "
     "ones (open=false)",
     ("count(deals_of(client, open=true))", "1"), ("deals_of(client, pipeline='sales')[0].stage", "'new'"))
def _f_deals_of(ctx: EvalContext, client: Any, pipeline: Any = None, open: Any = None) -> list[Record]:
    person = _person(client, "deals_of")
    if person is None:
        return []
    if open is not None and not isinstance(open, bool):
        raise EvalError(f"deals_of(): open must be true or false, got {_describe(open)}")
    lookups = _lookups(ctx, "deals_of")
    deals = _read(ctx, "deals_of", lambda limit: lookups.records("deal", person, limit))
    return [d for d in deals if (pipeline is None or _matches(d.get("pipeline"), pipeline))
            and (open is None or _open_deal(d) is open)]


def _starts(ctx: EvalContext, booking: Mapping[str, Any]) -> datetime | None:
    try:
        return _moment(ctx, booking.get("starts_at"), "bookings_of")
    except EvalError:
        return None


@_fn("bookings_of(client, status=None, after=None, before=None)", "the client's bookings, earliest first (by when "
     "they start): of a status (or a list of them), starting after and/or before a moment",
     ("count(bookings_of(client, status='confirmed', after=now()))", "1"),
     ("bookings_of(client, before=now)", "[]"))
def _f_bookings_of(ctx: EvalContext, client: Any, status: Any = None, after: Any = None,
                   before: Any = None) -> list[Record]:
    person = _person(client, "bookings_of")
    if person is None:
        return []
    since, until = _moment(ctx, after, "bookings_of"), _moment(ctx, before, "bookings_of")
    lookups = _lookups(ctx, "bookings_of")
    bookings = _read(ctx, "bookings_of", lambda limit: lookups.records("booking", person, limit))
    out = []
    for booking in bookings:
        if status is not None and not _matches(booking.get("status"), status):
            continue
        if since is not None or until is not None:
            starts = _starts(ctx, booking)
            if starts is None or (since is not None and starts <= since) or (until is not None and starts >= until):
                continue
        out.append(booking)
    return out


# The widest offset from UTC a place keeps (UTC+14): a start written without one means local time to rules, but the
# store's index reads it as UTC, so the store is asked for this much more either way and each start is read here.
_ANY_OFFSET = timedelta(hours=14)


@_fn("bookings_at(start, end=None, status=None)", "every client's bookings that start at the moment `start` (a "
     "slot), or from `start` until before `end`, earliest first: of a status (or a list of them); found through an "
     "index on the start, never a scan", ("count(bookings_at(booking.starts_at, status='confirmed'))", "1"),
     ("bookings_at(now, now + duration('1d'))", "[]"))
def _f_bookings_at(ctx: EvalContext, start: Any, end: Any = None, status: Any = None) -> list[Record]:
    since = _moment(ctx, start, "bookings_at")
    if since is None:
        return []
    until = since + timedelta(seconds=1) if end is None else _in_tz(ctx, end, "bookings_at")
    if until <= since:
        raise EvalError("bookings_at(): end must come after start")
    lookups = _lookups(ctx, "bookings_at")
    found = _read(ctx, "bookings_at",
                  lambda limit: lookups.bookings_starting(since - _ANY_OFFSET, until + _ANY_OFFSET, limit))
    out = []
    for booking in found:
        if status is not None and not _matches(booking.get("status"), status):
            continue
        starts = _starts(ctx, booking)
        if starts is not None and since <= starts < until:
            out.append(booking)
    return out


@_fn("visits_of(client, since=None)", "the client's visits and purchases, oldest first, since a moment when given; "
     "each has at (a date-time), amount (exact money), branch, services, category, staff, kind (visit or purchase)",
     ("count(visits_of(client))", "2"), ("sum(visits_of(client, since=now - duration('30d')), 'amount')", "1500.00"))
def _f_visits_of(ctx: EvalContext, client: Any, since: Any = None) -> list[Record]:
    person = _person(client, "visits_of")
    if person is None:
        return []
    moment = _moment(ctx, since, "visits_of")
    lookups = _lookups(ctx, "visits_of")
    return _read(ctx, "visits_of", lambda limit: lookups.visits(person, moment, limit))


# ---- aggregates over lists ------------------------------------------------------------------------------------
def _values(items: Any, field: Any, fn: str) -> list[Any]:
    """The items, or each item's `field` (an item that is empty or has no such field gives an empty value)."""
    if field is None:
        return list(items)
    if not isinstance(field, str):
        raise EvalError(f"{fn}(): the field must be a name in quotes, such as 'amount'")
    out = []
    for item in items:
        if item is not None and not isinstance(item, Mapping):
            raise EvalError(f"{fn}(): '{field}' can be read only from records; an item is {_describe(item)}")
        out.append(None if item is None else item.get(field))
    return out


def _present(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def _numbers(values: list[Any], fn: str) -> list[int | float | Decimal]:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
            raise EvalError(f"{fn}() adds numbers; got {_describe(v)}")
    if any(isinstance(v, Decimal) for v in values):  # money stays exact: a float among it is refused, not rounded
        if any(isinstance(v, float) for v in values):
            raise EvalError(f"{fn}() cannot mix money (exact) with a fractional number")
    return values


@_fn("where(items, field=value, ...)", "the items whose named fields equal the values (a list: any of them)",
     ("where(bookings_of(client), status='confirmed')[0].id", "'501'"),
     ("len(where(deals_of(client), stage=['won', 'lost']))", "1"))
def _f_where(ctx: EvalContext, items: Any, **equals: Any) -> list[Any]:
    return _filtered(items, equals, "where")


@_fn("count(items, field=value, ...)", "how many items (with the named fields equal to the values, when given); "
     "0 if empty", ("count(bookings_of(client), status='confirmed')", "1"), ("count([1, 2, 3])", "3"))
def _f_count(ctx: EvalContext, items: Any, **equals: Any) -> int:
    return len(_filtered(items, equals, "count"))


@_fn("sum(items, field=None)", "the total of numbers (or of each item's `field`), ignoring empty ones; money stays "
     "exact; 0 if none", ("sum(visits_of(client), 'amount')", "3700.00"), ("sum([1, 2.5])", "3.5"))
def _f_sum(ctx: EvalContext, items: Any, field: Any = None) -> int | float | Decimal:
    values = _numbers(_present(_values(_items(items, "sum"), field, "sum")), "sum")
    total: Any = 0
    for v in values:
        total += v
    return _check_size(total)


@_fn("avg(items, field=None)", "the average of numbers (or of each item's `field`), ignoring empty ones; money stays "
     "exact; empty if none", ("avg(visits_of(client), 'amount')", "1850.00"), ("avg([1, 2])", "1.5"))
def _f_avg(ctx: EvalContext, items: Any, field: Any = None) -> int | float | Decimal | None:
    values = _numbers(_present(_values(_items(items, "avg"), field, "avg")), "avg")
    if not values:
        return None
    if any(isinstance(v, Decimal) for v in values):
        total = sum((Decimal(v) for v in values), Decimal(0))
        return (total / len(values)).quantize(Decimal("0.01"))
    return sum(values) / len(values)


@_fn("any(items, field=value, ...)", "some item is not empty, false, 0 or '' (or, with fields, some item has them "
     "equal to the values); false if empty",
     ("any(bookings_of(client, after=now()), status=['confirmed', 'waiting'])", "true"))
def _f_any(ctx: EvalContext, items: Any, **equals: Any) -> bool:
    found = _filtered(items, equals, "any")
    return bool(found) if equals else any(bool(v) for v in found)


@_fn("all(items, field=value, ...)", "every item is not empty, false, 0 or '' (or, with fields, every item has them "
     "equal to the values); true if empty", ("all(visits_of(client), branch='center')", "true"))
def _f_all(ctx: EvalContext, items: Any, **equals: Any) -> bool:
    found = _items(items, "all")
    if equals:
        return len(_filtered(found, equals, "all")) == len(found)
    return all(bool(v) for v in found)


FUNCTIONS: Mapping[str, str] = MappingProxyType(dict(sorted(_DOCS.items())))
REFERENCE: Mapping[str, FunctionDoc] = MappingProxyType(dict(sorted(_REFERENCE.items())))
_SIGNATURES = {name: inspect.signature(impl) for name, impl in _LIBRARY.items()}
