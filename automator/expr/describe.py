"""How messages name values and expressions for an admin: `an empty value`, `the text 'a'`, `a date-time`."""
from __future__ import annotations

import ast
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from automator.clock import Duration


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(value: Any) -> str:
    """An admin's name for a value: `an empty value`, `60`, `the text 'a'`, `a date-time`."""
    if value is None:
        return "an empty value"
    if isinstance(value, (bool, int, float)):
        return _short(value)
    if isinstance(value, Decimal):
        return f"the amount {format(value, 'f') if -30 < value.adjusted() < 100 else value}"
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
