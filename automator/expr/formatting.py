"""A value as template text: what `{{ }}`, `str()` and the function reference print."""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from automator.clock import Duration, format_duration
from automator.expr.context import EvalContext


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
    if isinstance(value, Decimal):  # money: plain decimal text, "1500.00" (never 1.5E+3)
        return format(value, "f") if value.is_finite() and -30 < value.adjusted() < 100 else str(value)
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
