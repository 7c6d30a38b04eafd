"""The order a person's records are listed in (`Snapshot.related`): bookings by when they start, deals and tasks by
when they were made; as SQL for a store's query and as a sort key for what is laid over it (`Staged`), which
must agree so that a read cut at a limit keeps the same records whichever way it is taken."""
from __future__ import annotations

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
