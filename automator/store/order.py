"""The order records are listed in: a person's (`Snapshot.related`) bookings by when they start, deals and tasks by
when they were made, and bookings by the moment they start (`Snapshot.bookings_starting`); each as SQL for a
store's query and as a Python key for what is laid over it (`Staged`), which must agree so that a read cut at a
limit keeps the same records whichever way it is taken."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from automator.model import Entity

# The field that places each kind of record in time; any other kind is placed by `created_at`. Bitrix24 deals and
# YCLIENTS records carry `created_at`; amoCRM leads and tasks do not, and their ids then decide: every CRM numbers
# its records in the order they are made, so ids are compared as numbers (shorter first, then as text).
_PLACED_BY = {"booking": "starts_at"}


def placed_by(kind: str) -> str:
    """The field whose value orders a person's records of this kind (compared as the text the system wrote)."""
    return _PLACED_BY.get(kind, "created_at")


def order_sql(kind: str) -> str:
    """An SQL `order by` list over the `entities` table's `id` and `fields` columns, in the order of `sort_key`."""
    return f"coalesce(cast(json_extract(fields, '$.{placed_by(kind)}') as text), ''), length(id), id"


def sort_key(entity: Entity) -> tuple[str, int, str]:
    """The key `order_sql` sorts by, for one entity (a missing field sorts first)."""
    value = entity.fields.get(placed_by(entity.ref.kind))
    ident = entity.ref.id
    return ("" if value is None else str(value), len(ident), ident)


# A booking's start as a moment, in SQLite's words: `datetime()` reads ISO 8601 text with its offset (or `Z`) as
# UTC text 'YYYY-MM-DD HH:MM:SS'; text without an offset is taken as UTC already. Migration m004 indexes it.
START_SQL = "datetime(json_extract(fields, '$.starts_at'))"


def start_utc(value: Any) -> str | None:
    """What START_SQL gives for a `starts_at` value: UTC text to the second, None when it is no ISO moment."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def start_key(entity: Entity) -> tuple[str, int, str]:
    """The key `bookings_starting` lists bookings by: their start as UTC text, then the id as a number."""
    ident = entity.ref.id
    return (start_utc(entity.fields.get("starts_at")) or "", len(ident), ident)


def starting_within(after: datetime, before: datetime) -> Callable[[Entity], bool]:
    """Whether a booking starts in [after, before) as START_SQL reads its start (for what is laid over a read)."""
    low, high = start_utc(after) or "", start_utc(before) or ""

    def within(entity: Entity) -> bool:
        start = start_utc(entity.fields.get("starts_at"))
        return start is not None and low <= start < high
    return within
