"""What a webhook carried, made storable: the values JSON and SQLite cannot hold are replaced at the door.

A sender's JSON may encode half of a UTF-16 pair (`"\\ud800"`, an emoji cut in two) and Python's `json` reads it
as a lone surrogate, which no UTF-8 text can hold: storing it fails. It is read as U+FFFD (what a browser does
with one), and a number JSON has no word for (NaN, ±Infinity, which `json` accepts) as null, as the store writes
it anyway. This is the fallback of a request whose events could not be stored: the common case pays nothing.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from automator.model import EntityRef, Event

# What storing raises for a value it cannot hold (a lone surrogate; an integer past SQLite's 64 bits), as opposed
# to the store itself failing: the request's fault, answered 4xx, never its neighbours'.
UNSTORABLE: tuple[type[Exception], ...] = (UnicodeEncodeError, OverflowError)


def storable_event(event: Event) -> Event:
    """The event with every lone surrogate in its text replaced by U+FFFD and NaN or ±Infinity by None."""
    entity = event.entity
    return replace(event, id=_text(event.id), type=_text(event.type), source=_text(event.source),
                   entity=EntityRef(_text(entity.kind), _text(entity.id)) if entity is not None else None,
                   data=storable(event.data), delivery_id=_text(event.delivery_id),
                   caused_by=_text(event.caused_by), echo_of=_text(event.echo_of),
                   repeats=_text(event.repeats))


def storable(value: Any) -> Any:
    """`value` (JSON-like data, nested) with lone surrogates replaced by U+FFFD and NaN/±Infinity by None."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def _text(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a pair held as two code points becomes its one character, a lone half becomes U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


