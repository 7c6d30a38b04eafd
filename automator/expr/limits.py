"""The sandbox's bounds: how large a number, a text, a collection and an expression may grow.

A result past a bound is an `EvalError` naming the bound, so an admin's rule fails loudly instead of eating
the daemon's memory or time.
"""
from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from automator.expr.errors import EvalError


MAX_INT = 10**100
MAX_LEN = 100_000  # characters of a string, items of a list, dict or set
MAX_LITERAL_ITEMS = 1000
MAX_SOURCE = 10_000
MAX_DEPTH = 60
MAX_NODES = 2000


def _too_long(what: str = "result") -> EvalError:
    return EvalError(f"{what} would be longer than {MAX_LEN:,} characters or items")


def _check_size(value: Any) -> Any:
    cls = value.__class__
    if cls is int or cls is Decimal:
        if value > MAX_INT or value < -MAX_INT:
            raise EvalError("number too large (more than 100 digits)")
    elif cls in (str, list, tuple, dict, set) and len(value) > MAX_LEN:
        raise _too_long()
    return value


class _Reads(threading.local):
    """Records the lookups of the evaluation under way on this thread have read (see `Expr.evaluate`)."""

    rows = 0


READS = _Reads()


def _rows_left(limit: int) -> int:
    """How many more records this evaluation may read (at least 0)."""
    return max(0, limit - READS.rows)


def _charge_rows(read: int, limit: int, what: str) -> None:
    """Count records a lookup read; past `limit` the evaluation fails, so no rule reads the store at large."""
    READS.rows += read
    if READS.rows > limit:
        raise EvalError(f"{what} read more than {limit:,} records in one expression: narrow it "
                        f"(a status, a pipeline, a since date)")
