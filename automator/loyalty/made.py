"""What a program makes, stamped alike (pure): its ledger rows (`rule: program:<name>`, the causing event) and the
events it emits for rules (an engine event caused by the one being decided)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from automator.loyalty.ledger import Entry
from automator.model import ENGINE, EntityRef, Event


def row(program: str, cause: Event, ident: str, client: str, account: str, kind: str, amount: int, at: datetime,
        reason: str, *, expires_at: datetime | None = None, visit: str = "",
        detail: Mapping[str, Any] | None = None) -> Entry:
    """A ledger row a program makes because of `cause` (an event, or its own timer's firing)."""
    return Entry(id=ident, client=client, account=account, kind=kind, amount=amount, at=at, expires_at=expires_at,
                 reason=reason, event=cause.id, rule=f"program:{program}", visit=visit, detail=dict(detail or {}))


def event(cause: Event, kind: str, client: str, at: datetime, data: Mapping[str, Any], *, suffix: str = "") -> Event:
    """An event for rules about `client`, caused by `cause` (its id made from the cause's, so deciding the cause
    again emits the same one; `suffix` tells two of one type apart)."""
    return Event(id=f"{cause.id}>{kind}{suffix}", type=kind, at=at, entity=EntityRef("client", client),
                 source=ENGINE, depth=cause.depth + 1, caused_by=cause.id, data=dict(data))
