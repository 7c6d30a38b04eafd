"""Values shown as an admin writes them in YAML: `{pipeline: regular_client, stage: new}`, never Python's repr.

One line, YAML's flow style: text is bare where YAML reads it back as the same text (Cyrillic as it is), quoted
where it would not be (`": "`, a leading `*`, `true`); moments are ISO 8601 in the project's time zone.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

# Words YAML 1.2 reads as something other than text (see automator.config.source).
_NOT_TEXT = frozenset({"", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE"})
_FIRST = frozenset(",[]{}#&*!|>'\"%@`")
_INSIDE = (": ", " #", ",", "[", "]", "{", "}", "\n", "\t", "\r")


def flow(value: Any, tz: tzinfo | None = None) -> str:
    """`value` as one line of YAML flow style (dates in `tz` when given)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{text(str(k))}: {flow(v, tz)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v, tz) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, datetime):
        return (value.astimezone(tz) if tz is not None and value.utcoffset() is not None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        from automator.clock import format_duration

        return format_duration(value)
    return text(str(value))


def text(value: str) -> str:
    """A text bare when YAML reads it back as this text, else in double quotes."""
    plain = (value not in _NOT_TEXT and value[0] not in _FIRST and value == value.strip()
             and not (value[0] in "-?:" and (len(value) == 1 or value[1] == " "))
             and not value.endswith(":") and not any(mark in value for mark in _INSIDE))
    if plain:
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped.replace(chr(13), chr(92) + "r")}"'
