"""The simpleeval sandbox: compile once, evaluate with limits, `{{ }}` templates, the function library.

Expressions are checked when the rules load (a whitelist of syntax, known names and library functions only,
no `_` attributes), so evaluation never meets anything but plain data. Evaluation bounds numbers (|n| <= 10**100),
strings and collections (100,000), and wall time (`EvalContext.deadline_s`); every runtime problem is an
`EvalError` with a message an admin can act on.

Empty values: the time and text helpers pass None through (`days_since(None)` is None), `len(None)` is 0,
`contains`/`startswith`/`has` on None are false, and comparing None with a number raises
"cannot compare an empty value with 60" rather than silently being false.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import json
import re
import threading
import warnings
from functools import partial
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
from time import perf_counter
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from simpleeval import SimpleEval

from automator import datefmt
from automator.clock import Duration, format_duration, parse_offset

MAX_INT = 10**100
MAX_LEN = 100_000  # characters of a string, items of a list, dict or set
MAX_LITERAL_ITEMS = 1000
MAX_SOURCE = 10_000
MAX_DEPTH = 60
_TICK_EVERY = 32  # nodes between two looks at the clock
_ALIASES = {"true": True, "false": False, "null": None}  # YAML spellings admins type out of habit


class ExprSyntaxError(Exception):
    """A problem found while compiling: bad syntax, an unknown name or function, a refused construct."""

    def __init__(self, message: str, offset: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.offset, self.hint = message, offset, hint


class EvalError(Exception):
    """A problem while evaluating: a missing field, a type mismatch, a limit exceeded, the deadline passed."""


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


# ---------------------------------------------------------------------------------------------- descriptions


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(value: Any) -> str:
    """An admin's name for a value: `an empty value`, `60`, `the text 'a'`, `a date-time`."""
    if value is None:
        return "an empty value"
    if isinstance(value, (bool, int, float)):
        return _short(value)
    if isinstance(value, str):
        return f"the text {_short(value)}"
    if isinstance(value, datetime):
        return "a date-time"
    kinds = ((date, "a date"), ((timedelta, Duration), "a duration"), (Mapping, "a record"),
             ((list, tuple, set), "a list"))
    return next((name for cls, name in kinds if isinstance(value, cls)), f"a {type(value).__name__}")


def _text(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name` (a case-insensitive match first, then difflib), or None."""
    pool = [c for c in candidates if c != name]
    folded = {c.lower(): c for c in pool}
    if name.lower() in folded:
        return folded[name.lower()]
    found = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------- durations
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


# ---------------------------------------------------------------------------------------------- operators


def _too_long(what: str = "result") -> EvalError:
    return EvalError(f"{what} would be longer than {MAX_LEN:,} characters or items")


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, (str, list, tuple)) and isinstance(b, (str, list, tuple)) and len(a) + len(b) > MAX_LEN:
        raise _too_long()
    return a + b


def _mul(a: Any, b: Any) -> Any:
    for seq, count in ((a, b), (b, a)):
        if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_LEN:
            raise _too_long()
    return a * b


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):
        raise EvalError("'%' formatting of text is not supported; use a {{ }} template or fmt_date()")
    return a % b


def _pow(a: Any, b: Any) -> Any:
    # Refuse before computing: the lower bound of |a**b| in bits is floor(log2|a|) * b.
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and (abs(a).bit_length() - 1) * b > 340:
        raise EvalError(f"number too large: {_short(a)} ** {_short(b)}")
    result = a**b
    if isinstance(result, complex):
        raise EvalError(f"{_short(a)} ** {_short(b)} has no real value")
    return result


def _lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a).bit_length() + b > 340:
        raise EvalError(f"number too large: {_short(a)} << {_short(b)}")
    return a << b


_BINOPS: dict[type, tuple[Callable[[Any, Any], Any], str]] = {
    ast.Add: (_add, "+"), ast.Sub: (lambda a, b: a - b, "-"), ast.Mult: (_mul, "*"),
    ast.Div: (lambda a, b: a / b, "/"), ast.FloorDiv: (lambda a, b: a // b, "//"), ast.Mod: (_mod, "%"),
    ast.Pow: (_pow, "**"), ast.LShift: (_lshift, "<<"), ast.RShift: (lambda a, b: a >> b, ">>"),
    ast.BitOr: (lambda a, b: a | b, "|"), ast.BitXor: (lambda a, b: a ^ b, "^"),
    ast.BitAnd: (lambda a, b: a & b, "&"),
}
_COMPARE: dict[type, tuple[Callable[[Any, Any], Any], str]] = {
    ast.Eq: (lambda a, b: a == b, "=="), ast.NotEq: (lambda a, b: a != b, "!="),
    ast.Lt: (lambda a, b: a < b, "<"), ast.LtE: (lambda a, b: a <= b, "<="),
    ast.Gt: (lambda a, b: a > b, ">"), ast.GtE: (lambda a, b: a >= b, ">="),
    ast.In: (lambda a, b: a in b, "in"), ast.NotIn: (lambda a, b: a not in b, "not in"),
    ast.Is: (lambda a, b: a is b, "is"), ast.IsNot: (lambda a, b: a is not b, "is not"),
}
_UNARY: dict[type, tuple[Callable[[Any], Any], str]] = {
    ast.Not: (lambda a: not a, "not"), ast.USub: (lambda a: -a, "-"),
    ast.UAdd: (lambda a: +a, "+"), ast.Invert: (lambda a: ~a, "~"),
}


def _check_size(value: Any) -> Any:
    cls = value.__class__
    if cls is int:
        if value > MAX_INT or value < -MAX_INT:
            raise EvalError("number too large (more than 100 digits)")
    elif cls in (str, list, tuple, dict, set) and len(value) > MAX_LEN:
        raise _too_long()
    return value


def _type_hint(a: Any, b: Any) -> str:
    if any(isinstance(x, (date, datetime)) for x in (a, b)) and any(isinstance(x, str) for x in (a, b)):
        return "; convert the text with datetime(...) or date(...)"
    if any(isinstance(x, str) for x in (a, b)) and any(isinstance(x, (int, float)) for x in (a, b)):
        return "; convert with int(...), float(...) or str(...)"
    if any(isinstance(x, (Duration, timedelta)) for x in (a, b)) and any(isinstance(x, (int, float)) for x in (a, b)):
        return "; days_since() and the like give numbers: compare them with a number, or use days(...) of the duration"
    return ""


# ---------------------------------------------------------------------------------------------- evaluator


class _Evaluator(SimpleEval):
    """simpleeval with every handler replaced: field reads only on data, bounded results, a wall-time deadline.

    One instance per thread is reused; `Expr.evaluate` swaps the scope and context in and out.
    """

    def __init__(self) -> None:
        super().__init__(operators={}, functions={}, names={})
        self.nodes = {
            ast.Constant: self._constant, ast.Name: self._name, ast.Attribute: self._attribute,
            ast.Subscript: self._subscript, ast.BoolOp: self._boolop, ast.BinOp: self._binop,
            ast.UnaryOp: self._unaryop, ast.Compare: self._compare, ast.IfExp: self._ifexp,
            ast.Call: self._call, ast.List: self._list, ast.Tuple: self._tuple, ast.Set: self._set,
            ast.Dict: self._dict,
        }
        self.scope: Mapping[str, Any] = {}
        self.ctx: EvalContext | None = None
        self.ticks = _TICK_EVERY
        self.deadline = 0.0
        self.busy = False

    def _eval(self, node: ast.AST) -> Any:
        self.ticks -= 1
        if self.ticks <= 0:
            self._look_at_clock()
        return self.nodes[node.__class__](node)

    def _look_at_clock(self) -> None:
        self.ticks = _TICK_EVERY
        if perf_counter() > self.deadline:
            budget = self.ctx.deadline_s * 1000  # type: ignore[union-attr]
            raise EvalError(f"expression took longer than {budget:g} ms")

    @staticmethod
    def _constant(node: ast.Constant) -> Any:
        return node.value

    def _name(self, node: ast.Name) -> Any:
        value = self.scope.get(node.id, _MISSING)
        if value is not _MISSING:
            return value
        if node.id == "now":
            return _now(self.ctx)  # type: ignore[arg-type]
        if node.id == "today":
            return _today_of(self.ctx)  # type: ignore[arg-type]
        raise EvalError(f"{node.id} is not available for this event")

    def _attribute(self, node: ast.Attribute) -> Any:
        base = self._eval(node.value)
        if base.__class__ is dict and node.attr in base:
            return base[node.attr]
        return _read(base, node.attr, node.value)

    def _subscript(self, node: ast.Subscript) -> Any:
        base = self._eval(node.value)
        part = node.slice
        if part.__class__ is ast.Slice:
            lower = None if part.lower is None else self._eval(part.lower)
            upper = None if part.upper is None else self._eval(part.upper)
            if not isinstance(base, (str, list, tuple)):
                raise EvalError(f"{_text(node.value)} is {_describe(base)}, it cannot be sliced")
            try:
                return base[lower:upper]
            except TypeError:
                raise EvalError("slice bounds must be whole numbers") from None
        return _read(base, self._eval(part), node.value)

    def _boolop(self, node: ast.BoolOp) -> Any:
        want = node.op.__class__ is ast.Or
        value: Any = None
        for item in node.values:
            value = self._eval(item)
            if bool(value) is want:
                break
        return value

    def _binop(self, node: ast.BinOp) -> Any:
        fn, symbol = _BINOPS[node.op.__class__]
        left, right = self._eval(node.left), self._eval(node.right)
        if left.__class__ is Duration or right.__class__ is Duration:
            fn = partial(_calendar_binop, fn, symbol, self.ctx)
        try:
            return _check_size(fn(left, right))
        except TypeError:
            pass
        except ZeroDivisionError:
            raise EvalError("division by zero") from None
        except OverflowError:
            raise EvalError(f"number too large: {_short(left)} {symbol} {_short(right)}") from None
        except ValueError as exc:
            raise EvalError(f"cannot compute {_short(left)} {symbol} {_short(right)}: {exc}") from None
        raise EvalError(f"cannot apply '{symbol}' to {_describe(left)} and {_describe(right)}{_type_hint(left, right)}")

    def _unaryop(self, node: ast.UnaryOp) -> Any:
        fn, symbol = _UNARY[node.op.__class__]
        value = self._eval(node.operand)
        try:
            return fn(value)
        except TypeError:
            raise EvalError(f"cannot apply '{symbol}' to {_describe(value)}") from None

    def _compare(self, node: ast.Compare) -> Any:
        left = self._eval(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self._eval(comparator)
            fn, symbol = _COMPARE[op.__class__]
            if (left.__class__ is Duration or right.__class__ is Duration) and _by_length(left, right, symbol):
                left, right = _exact(left), _exact(right)
            try:
                if not fn(left, right):
                    return False
            except TypeError:
                if symbol in ("in", "not in"):
                    raise EvalError(f"cannot look for {_describe(left)} in {_describe(right)}") from None
                raise EvalError(f"cannot compare {_describe(left)} with {_describe(right)}"
                                f"{_type_hint(left, right)}") from None
            left = right
        return True

    def _ifexp(self, node: ast.IfExp) -> Any:
        return self._eval(node.body) if self._eval(node.test) else self._eval(node.orelse)

    def _call(self, node: ast.Call) -> Any:
        name = node.func.id  # type: ignore[attr-defined]  # compile_expr admits only library names
        args = [self._eval(arg) for arg in node.args]
        try:
            if not node.keywords:
                return _LIBRARY[name](self.ctx, *args)
            return _LIBRARY[name](self.ctx, *args, **{kw.arg: self._eval(kw.value) for kw in node.keywords})
        except EvalError:
            raise
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise EvalError(f"{name}() failed: {exc}") from None

    def _list(self, node: ast.List) -> list[Any]:
        return [self._eval(item) for item in node.elts]

    def _tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple([self._eval(item) for item in node.elts])

    def _set(self, node: ast.Set) -> set[Any]:
        try:
            return {self._eval(item) for item in node.elts}
        except TypeError:
            raise EvalError("a set can hold only texts, numbers and dates") from None

    def _dict(self, node: ast.Dict) -> dict[Any, Any]:
        try:
            return {self._eval(k): self._eval(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        except TypeError:
            raise EvalError("record keys must be texts or numbers") from None


_MISSING = object()
_local = threading.local()


def _read(base: Any, key: Any, base_node: ast.AST) -> Any:
    """`base.key` or `base[key]` on data only: a mapping's key or a list's position, never a Python attribute."""
    if isinstance(base, Mapping):
        try:
            return base[key]
        except KeyError:
            pass
        except TypeError:
            raise EvalError(f"{_short(key)} cannot be a field name") from None
        what = f"field '{key}'" if isinstance(key, str) else f"key {_short(key)}"
        message = f"{_text(base_node)} has no {what}"
        keys = [k for k in base if isinstance(k, str)]
        guess = suggest(key, keys) if isinstance(key, str) else None
        if guess:
            message += f"; did you mean '{guess}'?"
        elif 0 < len(keys) <= 12:
            message += f" (it has: {', '.join(keys)})"
        raise EvalError(message)
    shown = f"'{key}'" if isinstance(key, str) else f"[{_short(key)}]"
    if base is None:
        raise EvalError(f"{_text(base_node)} is empty, cannot read {shown}")
    if isinstance(base, (list, tuple, str)) and not isinstance(key, bool) and isinstance(key, int):
        try:
            return base[key]
        except IndexError:
            raise EvalError(f"{_text(base_node)} has no item {key} (it has {len(base)})") from None
    raise EvalError(f"{_text(base_node)} is {_describe(base)}, not a record; cannot read {shown}")


# ---------------------------------------------------------------------------------------------- library

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


def _today_of(ctx: EvalContext) -> _Today:
    d = ctx.now.astimezone(ctx.tz)
    return _Today(d.year, d.month, d.day)


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
    if isinstance(x, bool) or not isinstance(x, (str, int)) or len(str(x)) > 40:
        raise EvalError(f"not a phone number: {_short(x)}")
    try:
        number = phonenumbers.parse(str(x), "RU")
    except phonenumbers.NumberParseException:
        raise EvalError(f"not a phone number: {_short(x)}") from None
    if not phonenumbers.is_valid_number(number):
        raise EvalError(f"not a phone number: {_short(x)}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


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


def _number(x: Any, fn: str) -> int | float:
    if isinstance(x, (int, float)):
        return x
    raise EvalError(f"{fn}() expects a number, got {_describe(x)}")


@_fn("round(x, digits=0)", "x rounded; empty if x is empty", ("round(days_until(booking.starts_at), 1)", "3.1"))
def _f_round(ctx: EvalContext, x: Any, digits: int | None = None) -> int | float | None:
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


def _extreme(name: str, pick: Callable[[list[Any]], Any], args: tuple[Any, ...]) -> Any:
    items = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple, set, frozenset)) else args
    values = [v for v in items if v is not None]
    if not values:
        return None
    if any(v.__class__ is Duration for v in values):
        values = [_exact(v) for v in values]
    try:
        return pick(values)
    except TypeError:
        raise EvalError(f"{name}() cannot compare {', '.join(sorted({_describe(v) for v in values}))}") from None


@_fn("min(a, b, ...)", "the smallest value (or of one list), ignoring empty ones", ("min(client.visits, 3)", "3"))
def _f_min(ctx: EvalContext, *values: Any) -> Any:
    return _extreme("min", min, values)


@_fn("max(a, b, ...)", "the largest value (or of one list), ignoring empty ones", ("max([1, 5, 2])", "5"))
def _f_max(ctx: EvalContext, *values: Any) -> Any:
    return _extreme("max", max, values)


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

FUNCTIONS: Mapping[str, str] = MappingProxyType(dict(sorted(_DOCS.items())))
REFERENCE: Mapping[str, FunctionDoc] = MappingProxyType(dict(sorted(_REFERENCE.items())))
_SIGNATURES = {name: inspect.signature(impl) for name, impl in _LIBRARY.items()}


def _format(value: Any, ctx: EvalContext) -> str:
    """A value as template text: '' for empty, ISO for dates (in the project's timezone), JSON for records."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, datetime):
        return (value.astimezone(ctx.tz) if value.utcoffset() is not None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (timedelta, Duration)):
        return format_duration(value)
    if isinstance(value, (Mapping, list, tuple)):
        def jsonable(v: Any) -> Any:
            if isinstance(v, Mapping):
                return dict(v)
            return list(v) if isinstance(v, (set, frozenset)) else _format(v, ctx)
        top = jsonable(value) if isinstance(value, Mapping) else value
        return json.dumps(top, ensure_ascii=False, default=jsonable)
    return str(value)


format_value = _format  # public: the reference shows example values as templates print them


# ---------------------------------------------------------------------------------------------- compiling

MAX_NODES = 2000
_REFUSED = {
    ast.Lambda: "defining functions (lambda) is not supported",
    ast.ListComp: "comprehensions are not supported", ast.SetComp: "comprehensions are not supported",
    ast.DictComp: "comprehensions are not supported", ast.GeneratorExp: "comprehensions are not supported",
    ast.NamedExpr: "assignment (:=) is not supported",
    ast.JoinedStr: "f-strings are not supported; use a {{ }} template",
    ast.Starred: "* unpacking is not supported",
    ast.Await: "'await' is not supported", ast.Yield: "'yield' is not supported",
    ast.YieldFrom: "'yield' is not supported",
}
# A field read on these can never reach data, only Python internals (`{}.get`, `''.join`).
_LITERAL_BASES = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.BinOp, ast.UnaryOp, ast.Compare)
_NOT_WORDS = re.compile(r"(?<![=!<>])!(?!=)")
_LONE_EQUALS = re.compile(r"(?<![=!<>])=(?!=)")  # `client.visits = 1`, meant as a comparison
_BARE_DURATION = re.compile(r"(?<![\w.'\"])(-?\d+(?:mo|w|d|h|m|s)(?:\d+(?:mo|w|d|h|m|s))*)(?![\w'\"])")


def chain_of(node: ast.AST) -> tuple[str, ...] | None:
    """`client.rfm['r']` -> ("client", "rfm", "r"); None for anything that is not a plain field read."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            parts.append(node.slice.value)
            node = node.value
        elif isinstance(node, ast.Name):
            return (node.id, *reversed(parts))
        else:
            return None


class _Compiler:
    """Parse one expression and check it against the whitelist, collecting the names and field chains it uses."""

    def __init__(self, source: str, names: Collection[str]) -> None:
        self.source = source
        self.allowed = frozenset(names)
        self.used: dict[str, None] = {}
        self.fields: dict[tuple[str, ...], None] = {}
        self.count = 0
        self.text, self.base, self.starts = "", 0, [0]

    def compile(self) -> Expr:
        tree = self._parse()
        self._check(tree.body, 0)
        body = _Aliases(self.allowed).visit(tree).body
        return Expr(self.source, frozenset(self.used), tuple(self.fields), body)

    def _parse(self) -> ast.Expression:
        if len(self.source) > MAX_SOURCE:
            raise ExprSyntaxError(
                f"expression is too long ({len(self.source):,} characters, at most {MAX_SOURCE:,})", 0)
        stripped = self.source.strip()
        if not stripped:
            raise ExprSyntaxError("empty expression", 0, "write an expression such as: client.visits > 2")
        lead = len(self.source) - len(self.source.lstrip())
        attempts = [(stripped, 0)]
        if "\n" in stripped or "\r" in stripped:  # a multi-line YAML block reads as one parenthesised expression
            attempts.append(("(" + stripped + "\n)", 1))
        first: tuple[SyntaxError, str, int] | None = None
        for text, shift in attempts:
            try:
                with warnings.catch_warnings():  # e.g. "invalid escape sequence" in an admin's string
                    warnings.simplefilter("ignore")
                    tree = ast.parse(text, mode="eval")
            except SyntaxError as exc:
                first = first or (exc, text, shift)
                continue
            except (RecursionError, MemoryError):
                raise ExprSyntaxError("expression is nested too deeply", 0) from None
            except ValueError as exc:
                raise ExprSyntaxError(f"invalid expression: {exc}", 0) from None
            self._use(text, lead - shift)
            return tree
        assert first is not None
        exc, text, shift = first
        self._use(text, lead - shift)
        offset = len(self.source.rstrip())
        if exc.lineno and exc.offset and exc.lineno <= len(self.starts):
            offset = self._at(exc.lineno, exc.offset - 1)
        hint = next((f"use '{good}' instead of '{bad}'" for bad, good in (("&&", "and"), ("||", "or"))
                     if bad in stripped), None)
        if hint is None and _NOT_WORDS.search(stripped):
            hint = "use 'not' instead of '!'"
        if hint is None and _LONE_EQUALS.search(re.sub(r"'[^']*'|\"[^\"]*\"", "", stripped)):
            hint = "compare with '==' (a single '=' is not a comparison)"
        bare = _BARE_DURATION.search(stripped) if "decimal literal" in exc.msg else None
        if hint is None and bare:
            hint = f"in an expression a duration is written duration('{bare.group(1)}')"
        message = "invalid syntax" if exc.msg == "invalid syntax" else f"invalid syntax: {exc.msg}"
        raise ExprSyntaxError(message, offset, hint) from None

    def _use(self, text: str, base: int) -> None:
        self.text, self.base = text, base
        self.starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

    def _at(self, lineno: int, col: int) -> int:
        return max(0, min(len(self.source), self.base + self.starts[lineno - 1] + col))

    def _error(self, node: ast.AST, message: str, hint: str | None = None, *,
               back: int | None = None) -> ExprSyntaxError:
        # AST columns count UTF-8 bytes; offsets count characters. `back` points into the node's end instead.
        lineno, col = (node.end_lineno, node.end_col_offset) if back is not None else (node.lineno, node.col_offset)
        line = self.text[self.starts[lineno - 1]:]  # type: ignore[index]
        chars = len(line.encode()[:col].decode(errors="ignore"))
        return ExprSyntaxError(message, self._at(lineno, chars - (back or 0)), hint)  # type: ignore[arg-type]

    def _check(self, node: ast.AST, depth: int, chained: bool = False) -> None:
        self.count += 1
        if depth > MAX_DEPTH:
            raise self._error(node, "expression is nested too deeply")
        if self.count > MAX_NODES:
            raise self._error(node, "expression is too long; split it into several conditions")
        if node.__class__ in _REFUSED:
            raise self._error(node, _REFUSED[node.__class__])
        method = getattr(self, "_check_" + node.__class__.__name__, None)
        if method is None:
            raise self._error(node, f"{node.__class__.__name__} is not supported in expressions")
        method(node, depth + 1, chained)

    def _check_Constant(self, node: ast.Constant, depth: int, chained: bool) -> None:
        value = node.value
        if value.__class__ is int and abs(value) > MAX_INT:
            raise self._error(node, "number too large (more than 100 digits)")
        if value is not None and value.__class__ not in (bool, int, float, str):
            raise self._error(node, f"{type(value).__name__} literals are not supported")

    def _check_Name(self, node: ast.Name, depth: int, chained: bool) -> None:
        name = node.id
        if name.startswith("_"):
            raise self._error(node, f"names starting with '_' are not allowed ('{name}')")
        if name in self.allowed or name in ("now", "today"):
            self.used[name] = None
        elif name in _ALIASES:
            return
        elif name in _LIBRARY:
            raise self._error(node, f"{name} is a function; call it as {name}(...)", FUNCTIONS[name])
        elif name.lower() in ("true", "false", "none", "null"):
            raise self._error(node, f"unknown name '{name}'", "write True, False or None (or true, false, null)")
        else:
            guess = suggest(name, sorted(self.allowed | {"now", "today"} | set(_LIBRARY)))
            raise self._error(node, f"unknown name '{name}'", f"did you mean '{guess}'?" if guess else None)

    def _record(self, node: ast.AST) -> None:
        chain = chain_of(node)
        if chain is not None:
            self.fields[chain] = None

    def _check_Attribute(self, node: ast.Attribute, depth: int, chained: bool) -> None:
        if node.attr.startswith("_"):
            raise self._error(node, f"fields starting with '_' cannot be read ('{node.attr}')", back=len(node.attr))
        if isinstance(node.value, _LITERAL_BASES):
            raise self._error(node, f"'.{node.attr}' can be read only from data such as client.name",
                              back=len(node.attr))
        if not chained:
            self._record(node)
        self._check(node.value, depth, chained=True)

    def _check_Subscript(self, node: ast.Subscript, depth: int, chained: bool) -> None:
        part = node.slice
        if isinstance(part, ast.Slice):
            if part.step is not None:
                raise self._error(part.step, "slices with a step are not supported")
            for bound in (part.lower, part.upper):
                if bound is not None:
                    self._check(bound, depth)
            self._check(node.value, depth)
            return
        is_key = isinstance(part, ast.Constant) and isinstance(part.value, str)
        if is_key and not chained:
            self._record(node)
        self._check(part, depth)
        self._check(node.value, depth, chained=is_key)

    def _check_BoolOp(self, node: ast.BoolOp, depth: int, chained: bool) -> None:
        for value in node.values:
            self._check(value, depth)

    def _check_BinOp(self, node: ast.BinOp, depth: int, chained: bool) -> None:
        if node.op.__class__ not in _BINOPS:
            raise self._error(node, "the '@' operator is not supported")
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            raise self._error(node, "'%' formatting of text is not supported", "use a {{ }} template or fmt_date()")
        self._check(node.left, depth)
        self._check(node.right, depth)

    def _check_UnaryOp(self, node: ast.UnaryOp, depth: int, chained: bool) -> None:
        self._check(node.operand, depth)

    def _check_Compare(self, node: ast.Compare, depth: int, chained: bool) -> None:
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            pair = operands[i:i + 2]
            counted = next((call for call in pair if _counting_call(call)), None)
            span = next((call for call in pair if _duration_call(call)), None)
            if counted is not None and span is not None:
                raise self._number_against_duration(node, counted, span)
            months = _months_literal(operands[i]) or _months_literal(operands[i + 1])
            if months and isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
                raise self._error(node, f"'{months}' cannot be compared as a length", _MONTHS_HINT)
        for i, op in enumerate(node.ops):
            if isinstance(op, (ast.Is, ast.IsNot)) and not any(map(_is_singleton, operands[i:i + 2])):
                raise self._error(node, "'is' compares only with None, True or False", "use == to compare values")
        for operand in operands:
            self._check(operand, depth)

    def _number_against_duration(self, node: ast.Compare, counted: ast.Call, span: ast.Call) -> ExprSyntaxError:
        """`days_since(x) > duration('60d')`: a number of days against a span, which never compare."""
        name = counted.func.id  # type: ignore[attr-defined]
        unit = _COUNTING[name]
        number = "N"
        literal = span.args[0] if span.args and isinstance(span.args[0], ast.Constant) else None
        if literal is not None and isinstance(literal.value, str):
            try:
                number = f"{parse_offset(literal.value).exact() / timedelta(**{unit: 1}):g}"
            except ValueError:
                pass
        return self._error(node, f"{name}() gives a number of {unit}, not a duration",
                           f"compare it with a number: {ast.unparse(node).replace(ast.unparse(span), number)}")

    def _check_IfExp(self, node: ast.IfExp, depth: int, chained: bool) -> None:
        for part in (node.test, node.body, node.orelse):
            self._check(part, depth)

    def _check_Call(self, node: ast.Call, depth: int, chained: bool) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            raise self._error(node, f"methods cannot be called (.{func.attr}())",
                              "use library functions such as get(), lower(), contains()")
        if not isinstance(func, ast.Name):
            raise self._error(node, "only library functions can be called")
        name = func.id
        if name.startswith("_"):
            raise self._error(node, f"names starting with '_' are not allowed ('{name}')")
        if name not in _LIBRARY:
            if name in self.allowed:
                raise self._error(node, f"{name} is data, not a function")
            guess = suggest(name, _LIBRARY)
            raise self._error(node, f"unknown function '{name}'", f"did you mean '{guess}'?" if guess else None)
        if len(node.args) + len(node.keywords) > MAX_LITERAL_ITEMS:
            raise self._error(node, f"too many arguments (at most {MAX_LITERAL_ITEMS})")
        for kw in node.keywords:
            if kw.arg is None:
                raise self._error(kw.value, "** unpacking is not supported")
        try:
            _SIGNATURES[name].bind(None, *node.args, **{kw.arg: None for kw in node.keywords})  # type: ignore[misc]
        except TypeError as exc:
            raise self._error(node, f"wrong arguments for {name}(): {exc}", FUNCTIONS[name]) from None
        self.used[name] = None
        self._check_literal_args(name, node)
        for arg in [*node.args, *(kw.value for kw in node.keywords)]:
            self._check(arg, depth)

    def _check_literal_args(self, name: str, node: ast.Call) -> None:
        """A duration or date format written as literal text is read now, so its mistake is a validate error."""
        if name in ("days", "hours") and node.args and _months_literal(node.args[0]):
            raise self._error(node, f"{name}() of '{_months_literal(node.args[0])}': months have no fixed length",
                              _MONTHS_HINT)
        if name not in _LITERAL_ARGS:
            return
        index, keyword = _LITERAL_ARGS[name]
        arg = node.args[index] if len(node.args) > index else next(
            (kw.value for kw in node.keywords if kw.arg == keyword), None)
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            return
        if name in ("fmt_date", "fmt_time"):
            try:
                datefmt.compile_format(arg.value)
            except datefmt.FormatError as exc:
                raise self._in_text(arg, exc.index, f"date format {arg.value!r}: {exc.message}", exc.hint) from None
            return
        try:
            parse_offset(arg.value)
        except ValueError as exc:
            raise self._error(arg, f"bad duration {arg.value!r}: {exc}",
                              "durations look like 30s, 5m, 2h, 14d, 2w or 2mo; '-1d' goes back a day") from None

    def _in_text(self, node: ast.Constant, index: int, message: str, hint: str) -> ExprSyntaxError:
        """An error at a character inside a literal text (at the literal when escapes make that uncertain)."""
        error = self._error(node, message, hint)
        raw = ast.get_source_segment(self.text, node) or ""
        if error.offset is not None and raw[1:-1] == node.value and raw[:1] in "'\"":
            error.offset += 1 + index
        return error

    def _check_items(self, node: ast.AST, items: list[ast.expr | None], depth: int, count: int) -> None:
        if count > MAX_LITERAL_ITEMS:
            raise self._error(node, f"too many items in a literal (at most {MAX_LITERAL_ITEMS})")
        for item in items:
            if item is None:
                raise self._error(node, "** unpacking is not supported")
            self._check(item, depth)

    def _check_List(self, node: ast.List, depth: int, chained: bool) -> None:
        self._check_items(node, node.elts, depth, len(node.elts))  # type: ignore[arg-type]

    _check_Tuple = _check_Set = _check_List  # type: ignore[assignment]

    def _check_Dict(self, node: ast.Dict, depth: int, chained: bool) -> None:
        self._check_items(node, [*node.keys, *node.values], depth, len(node.keys))


# Functions whose literal argument is read when the rules load: (position, keyword).
_LITERAL_ARGS = {"duration": (0, "x"), "add": (1, "d"), "fmt_date": (1, "fmt"), "fmt_time": (1, "fmt")}


# Functions that count time as a number, and the unit they count in.
_COUNTING = {"days_since": "days", "days_until": "days", "hours_since": "hours", "hours_until": "hours",
             "minutes_since": "minutes", "days": "days", "hours": "hours"}


def _counting_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _COUNTING


def _duration_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "duration"


def _months_literal(node: ast.expr) -> str | None:
    """The text of `duration('2mo')` written out, when it has months; else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "duration"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return None
    try:
        return node.args[0].value if parse_offset(node.args[0].value).months else None
    except ValueError:
        return None


def _is_singleton(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, bool))


class _Aliases(ast.NodeTransformer):
    """`true`, `false` and `null` become constants, unless the caller's scope defines those names."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _ALIASES and node.id not in self.allowed:
            return ast.copy_location(ast.Constant(_ALIASES[node.id]), node)
        return node


# ---------------------------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled expression: its source, the names and field chains it reads, and its checked syntax tree."""

    source: str
    names: frozenset[str]
    fields: tuple[tuple[str, ...], ...]
    _tree: ast.expr = field(repr=False, compare=False)

    @property
    def tree(self) -> ast.expr:
        """The checked syntax tree (for static checks such as automator/typecheck.py; never to be changed)."""
        return self._tree

    def evaluate(self, scope: Mapping[str, Any], ctx: EvalContext) -> Any:
        """Evaluate against plain data; every problem (missing field, type, limit, deadline) is an EvalError."""
        ev: _Evaluator | None = getattr(_local, "ev", None)
        if ev is None:
            ev = _local.ev = _Evaluator()
        elif ev.busy:  # a library callback evaluating another expression on this thread
            ev = _Evaluator()
        ev.busy, ev.scope, ev.ctx, ev.ticks = True, scope, ctx, _TICK_EVERY
        ev.deadline = perf_counter() + ctx.deadline_s
        try:
            return _plain(ev.eval(self.source, previously_parsed=self._tree))
        except EvalError:
            raise
        except RecursionError:
            raise EvalError("expression is nested too deeply") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise EvalError(f"cannot evaluate: {exc}") from None
        finally:
            ev.busy, ev.scope, ev.ctx = False, {}, None


@dataclass(frozen=True, slots=True)
class Template:
    """A text with `{{ expr }}` placeholders, compiled once."""

    source: str
    parts: tuple[str | Expr, ...]
    names: frozenset[str]
    fields: tuple[tuple[str, ...], ...]
    _single: Expr | None = field(default=None, repr=False, compare=False)

    @property
    def is_static(self) -> bool:
        """True when the text has no placeholders."""
        return not any(isinstance(part, Expr) for part in self.parts)

    def render(self, scope: Mapping[str, Any], ctx: EvalContext) -> Any:
        """The raw value for a lone `{{ expr }}`; otherwise the text with each value formatted (None as '')."""
        if self._single is not None:
            return self._single.evaluate(scope, ctx)
        if self.is_static:
            return self.source
        out, size = [], 0
        for part in self.parts:
            text = part if isinstance(part, str) else _format(part.evaluate(scope, ctx), ctx)
            size += len(text)
            if size > MAX_LEN:
                raise _too_long("the rendered text")
            out.append(text)
        return "".join(out)


def compile_expr(source: str, names: Collection[str]) -> Expr:
    """Parse and check an expression once; `names` are the data names it may read (functions always may)."""
    if not isinstance(source, str):
        raise ExprSyntaxError(f"expected an expression (text), got {_describe(source)}", 0)
    return _Compiler(source, names).compile()


def _placeholder_end(source: str, start: int) -> int:
    """Where the `}}` closing a placeholder begins, skipping quoted text and balanced braces; -1 if none."""
    depth, quote, k = 0, "", start
    while k < len(source):
        char = source[k]
        if quote:
            if char == "\\":
                k += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0 and source.startswith("}}", k):
                return k
            depth = max(depth - 1, 0)
        k += 1
    return -1


def compile_template(source: str, names: Collection[str]) -> Template:
    """Compile `{{ expr }}` placeholders in a text; errors carry offsets into the whole template."""
    parts: list[str | Expr] = []
    pos = 0
    while True:
        opening, closing = source.find("{{", pos), source.find("}}", pos)
        if closing != -1 and (opening == -1 or closing < opening):
            raise ExprSyntaxError("'}}' without a matching '{{'", closing, "remove it or open a placeholder with '{{'")
        if opening == -1:
            break
        end = _placeholder_end(source, opening + 2)
        if end < 0:
            raise ExprSyntaxError("'{{' is never closed", opening, "close the placeholder with '}}'")
        if opening > pos:
            parts.append(source[pos:opening])
        try:
            parts.append(compile_expr(source[opening + 2:end], names))
        except ExprSyntaxError as exc:
            raise ExprSyntaxError(exc.message, opening + 2 + (exc.offset or 0), exc.hint) from None
        pos = end + 2
    if pos < len(source):
        parts.append(source[pos:])
    exprs = [part for part in parts if isinstance(part, Expr)]
    lone = len(exprs) == 1 and all(isinstance(p, Expr) or not p.strip() for p in parts)
    fields = dict.fromkeys(chain for e in exprs for chain in e.fields)
    return Template(source, tuple(parts), frozenset().union(*(e.names for e in exprs)), tuple(fields),
                    exprs[0] if lone else None)
