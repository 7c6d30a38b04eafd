"""The operators an expression may use, each bounded (no 10**10**10, no 'a' * 10**9) and explained on misuse."""
from __future__ import annotations

import ast
import math
from collections.abc import Callable
from decimal import Decimal, DecimalException
from datetime import date, datetime, timedelta
from typing import Any

from automator.clock import Duration
from automator.expr.describe import _short
from automator.expr.errors import EvalError
from automator.expr.limits import MAX_LEN, _too_long


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


def _money(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Arithmetic that keeps money exact: a Decimal (an amount: `client.total_spent`) with a float takes the
    float as the decimal number it is written as (`client.total_spent * 0.05` is exact, never a float), and what
    the decimal module refuses is a ValueError the evaluator reports, not a crash."""
    def exact(a: Any, b: Any) -> Any:
        if a.__class__ is Decimal or b.__class__ is Decimal:
            a, b = _decimal(a), _decimal(b)
            try:
                return fn(a, b)
            except ZeroDivisionError:
                raise
            except DecimalException as exc:
                raise ValueError(type(exc).__name__) from None
        return fn(a, b)
    return exact


def _decimal(value: Any) -> Any:
    # repr() is the shortest text that reads back as the same float: 0.05, not 0.05000000000000000277.
    return Decimal(repr(value)) if value.__class__ is float and math.isfinite(value) else value


_BINOPS: dict[type, tuple[Callable[[Any, Any], Any], str]] = {
    ast.Add: (_money(_add), "+"), ast.Sub: (_money(lambda a, b: a - b), "-"), ast.Mult: (_money(_mul), "*"),
    ast.Div: (_money(lambda a, b: a / b), "/"), ast.FloorDiv: (_money(lambda a, b: a // b), "//"),
    ast.Mod: (_money(_mod), "%"),
    ast.Pow: (_money(_pow), "**"), ast.LShift: (_lshift, "<<"), ast.RShift: (lambda a, b: a >> b, ">>"),
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


def _type_hint(a: Any, b: Any) -> str:
    if any(isinstance(x, (date, datetime)) for x in (a, b)) and any(isinstance(x, str) for x in (a, b)):
        return "; convert the text with datetime(...) or date(...)"
    if any(isinstance(x, str) for x in (a, b)) and any(isinstance(x, (int, float, Decimal)) for x in (a, b)):
        return "; convert with int(...), float(...) or str(...)"
    if any(isinstance(x, (Duration, timedelta)) for x in (a, b)) and any(isinstance(x, (int, float)) for x in (a, b)):
        return "; days_since() and the like give numbers: compare them with a number, or use days(...) of the duration"
    return ""
