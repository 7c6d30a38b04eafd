"""Bitrix24 changes as journal events: outgoing-webhook bodies verified and read, catch-up pages of crm.deal.list.

Delivery ids are what a webhook and a poll reporting the same change share: `deal:<ID>@<DATE_CREATE>` for
`deal.created` (for a fresh deal DATE_CREATE == DATE_MODIFY) and `deal:<ID>@<DATE_MODIFY>` for `deal.updated`.
The creation keeps its own instant so that a poll that finds a deal created and since changed reports the creation
once, under the same id the ONCRMDEALADD webhook carried, whatever the deal looked like when it was fetched.
Contacts follow the same scheme (`contact:<ID>@<DATE_CREATE|DATE_MODIFY>`), so a contact read along with its deal
and the contact's own webhook report one change once. A task's completion is `task:<ID>@<closedDate>`: every
later update of a completed task reads the same closedDate, so the journal drops it as a repeat (see
task_completed for what lies beyond the journal's memory).
Bitrix datetimes have 1-second resolution: two changes within one second share an id and the second is dropped
(the reference accepts this; the event carries the state as re-read, which includes both).
"""
from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from automator.errors import InboundRejected
from automator.model import EntityRef, Event
from .mapping import TASK_COMPLETED, canonical_contact, canonical_deal, canonical_lead, task_bindings

DEAL_EVENTS = frozenset({"ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALMOVETOCATEGORY"})
CONTACT_EVENTS = frozenset({"ONCRMCONTACTADD", "ONCRMCONTACTUPDATE"})
HANDLED = DEAL_EVENTS | CONTACT_EVENTS | {"ONCRMDEALDELETE", "ONCRMLEADADD", "ONTASKUPDATE"}
# A completed task read more than this after it was closed is an edit of a task completed long ago (webhooks come
# within minutes), not its completion: the journal, which drops the repeat by delivery id, forgets after
# `keep_history` (30 days by default), so the age bounds a second report where the journal no longer can.
COMPLETION_WINDOW = timedelta(days=1)
MAX_FIELDS = 200  # form pairs in one outgoing-webhook body; the real one has about ten


class Notice:
    """One verified outgoing-webhook request: the event name, the item id and the other `data[FIELDS]`."""

    def __init__(self, event: str, item_id: str, fields: Mapping[str, str], ts: str | None) -> None:
        self.event, self.item_id, self.fields, self.ts = event, item_id, dict(fields), ts


def read_notice(body: bytes, token: str, *, domain: str | None = None, member_id: str | None = None) -> Notice:
    """Verify `auth[application_token]` (constant time) and read the form body; 401 on a wrong token, 400 on a
    body that is not an outgoing-webhook event."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        # Not the parser's words: they quote the body, and a field it cannot split may be the token itself.
        raise InboundRejected(400, f"not a form-encoded body of at most {MAX_FIELDS} fields", "malformed") from None
    form = dict(pairs)
    given = form.get("auth[application_token]", "")
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise InboundRejected(401, "missing or wrong auth[application_token]", "auth")
    for name, expected in (("auth[domain]", domain), ("auth[member_id]", member_id)):
        if expected and not hmac.compare_digest(form.get(name, "").encode(), expected.encode()):
            raise InboundRejected(401, f"{name} is not this portal's", "auth")
    event = form.get("event", "").strip().upper()
    if not re.fullmatch(r"ON[A-Z]+", event):
        raise InboundRejected(400, "no `event` in the body", "malformed")
    # CRM events name the item in data[FIELDS][ID], task events in data[FIELDS_AFTER][ID] (contract part 2 §2.9).
    where = "data[FIELDS_AFTER][ID]" if event.startswith("ONTASK") else "data[FIELDS][ID]"
    item_id = form.get(where, "")
    if not item_id.isdigit():
        raise InboundRejected(400, f"{where} must be a number, got {item_id[:40]!r}", "malformed")
    fields = {m.group(1): v for k, v in form.items() if (m := re.fullmatch(r"data\[FIELDS\]\[([A-Z_0-9]+)\]", k))}
    return Notice(event, item_id, fields, form.get("ts"))


def _moment(text: Any, fallback: datetime | None) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        if fallback is not None:
            return fallback
        from datetime import timezone

        return datetime.now(timezone.utc)
    return moment


def deal_delivery(raw: Mapping[str, Any], verb: str = "updated") -> str:
    """The delivery id of a report of a fetched deal (its webhook's and a poll's): the deal and the moment of the
    change, so an action's answer that gives it too is known as the same report."""
    stamp = raw.get("DATE_CREATE") if verb == "created" else raw.get("DATE_MODIFY")
    return f"deal:{raw.get('ID')}@{stamp}"


def deal_event(source: str, verb: str, raw: Mapping[str, Any], custom: Mapping[str, str],
               stage_named: Callable[[str, str | None], tuple[str, str] | None],
               received: datetime | None = None) -> Event:
    """`deal.created` or `deal.updated` of a fetched deal, with the delivery id a poll would give it too."""
    stamp = raw.get("DATE_CREATE") if verb == "created" else raw.get("DATE_MODIFY")
    delivery = deal_delivery(raw, verb)
    # A deal we created carries our effect key: its ONCRMDEALADD is our own echo, even when it outruns our
    # own record of the create (the portal may call back before our call has returned).
    ours = raw.get("ORIGIN_ID") if verb == "created" and raw.get("ORIGINATOR_ID") == "automator" else None
    return Event(id=f"{source}:{delivery}:{verb}", type=f"deal.{verb}", at=_moment(stamp, received),
                 entity=EntityRef("deal", str(raw.get("ID"))), data=canonical_deal(raw, custom, stage_named),
                 source=source, delivery_id=delivery, caused_by=str(ours) if ours else None)


def deal_deleted(source: str, deal_id: str, received: datetime | None) -> Event:
    """`deal.deleted`: the deal cannot be fetched any more, only its id is known."""
    delivery = f"deal:{deal_id}@deleted"
    return Event(id=f"{source}:{delivery}", type="deal.deleted", at=_moment(None, received),
                 entity=EntityRef("deal", deal_id), data={"id": deal_id}, source=source, delivery_id=delivery)


def contact_event(source: str, verb: str, raw: Mapping[str, Any], custom: Mapping[str, str],
                  received: datetime | None = None) -> Event:
    """`client.created` or `client.updated` of a fetched contact: the entity is the contact (`client:<ID>`; the
    journal finds the person), with the delivery id its own webhook and its deal's both give it. A contact a
    deal.create made carries `<effect key>:contact` as ORIGIN_ID: its creation is that effect's echo."""
    stamp = raw.get("DATE_CREATE") if verb == "created" else raw.get("DATE_MODIFY")
    delivery = f"contact:{raw.get('ID')}@{stamp}"
    origin = str(raw.get("ORIGIN_ID") or "")
    ours = origin.removesuffix(":contact") if verb == "created" and raw.get("ORIGINATOR_ID") == "automator" \
        and origin else None
    return Event(id=f"{source}:{delivery}:{verb}", type=f"client.{verb}", at=_moment(stamp, received),
                 entity=EntityRef("client", str(raw.get("ID"))), data=canonical_contact(raw, custom), source=source,
                 delivery_id=delivery, caused_by=ours)


def contact_of_deal(source: str, raw: Mapping[str, Any], custom: Mapping[str, str],
                    received: datetime | None = None) -> Event:
    """The deal's contact as read along with the deal: reported as its own webhook would report it (created while
    it was never changed since, else updated), so whichever comes first is the report and the other a repeat."""
    fresh = raw.get("DATE_CREATE") is not None and raw.get("DATE_CREATE") == raw.get("DATE_MODIFY")
    return contact_event(source, "created" if fresh else "updated", raw, custom, received)


def task_completed(source: str, task: Mapping[str, Any], received: datetime) -> Event | None:
    """`task.completed` of a task read back after ONTASKUPDATE (tasks.task.get, camelCase keys), or None when it is
    not a completion: not completed (status 5), or closed more than COMPLETION_WINDOW before it was read."""
    closed = task.get("closedDate")
    if str(task.get("status")) != TASK_COMPLETED or not closed:
        return None
    moment = _moment(closed, None)
    if received - moment > COMPLETION_WINDOW:
        return None
    data: dict[str, Any] = {"title": task.get("title"), "responsible": task.get("responsibleId"),
                            "completed_at": str(closed), **task_bindings(task.get("ufCrmTask"))}
    if task.get("closedBy") not in (None, "", "0"):
        data["completed_by"] = str(task["closedBy"])
    delivery = f"task:{task.get('id')}@{closed}"
    return Event(id=f"{source}:{delivery}:completed", type="task.completed", at=moment,
                 entity=EntityRef("task", str(task.get("id"))),
                 data={k: str(v) for k, v in data.items() if v not in (None, "")}, source=source,
                 delivery_id=delivery)


def lead_created(source: str, raw: Mapping[str, Any], received: datetime | None) -> Event:
    """`lead.created` of a fetched lead (leads are not one of the engine's entity kinds: no entity ref)."""
    delivery = f"lead:{raw.get('ID')}@{raw.get('DATE_CREATE')}"
    return Event(id=f"{source}:{delivery}", type="lead.created", at=_moment(raw.get("DATE_CREATE"), received),
                 data=canonical_lead(raw), source=source, delivery_id=delivery)


def later(a: str | None, b: str) -> str:
    """The later of two Bitrix datetimes (compared as instants, kept as written)."""
    if a is None:
        return b
    try:
        return b if datetime.fromisoformat(b) > datetime.fromisoformat(a) else a
    except ValueError:
        return max(a, b)


def not_before(moment: str, cursor: str) -> bool:
    """True when a Bitrix datetime is at or after the cursor."""
    try:
        return datetime.fromisoformat(moment) >= datetime.fromisoformat(cursor)
    except ValueError:
        return moment >= cursor


def split_cursor(cursor: str) -> tuple[str, frozenset[str]]:
    """A poll cursor `<DATE_MODIFY>|<id>,<id>`: the last instant seen and the deals already reported at it."""
    stamp, _, ids = cursor.partition("|")
    return stamp, frozenset(i for i in ids.split(",") if i)


def poll_events(source: str, rows: list[Mapping[str, Any]], cursor: str, custom: Mapping[str, str],
                stage_named: Callable[[str, str | None], tuple[str, str] | None]) -> tuple[list[Event], str]:
    """The events of deals changed at or after the cursor, in order, and the new cursor.

    The filter is `>=` the cursor's instant (1-second resolution: a change later in that same second must not be
    skipped); the deals already reported at that instant are named in the cursor, so each change comes back once.
    """
    since, seen = split_cursor(cursor)
    events: list[Event] = []
    latest, at_latest = since, set(seen)
    for raw in rows:
        created, modified = raw.get("DATE_CREATE"), raw.get("DATE_MODIFY")
        if not modified:
            continue
        deal_id = str(raw.get("ID"))
        if str(modified) == since and deal_id in seen:
            continue
        if created and not_before(str(created), since) and not (str(created) == since and deal_id in seen):
            events.append(deal_event(source, "created", raw, custom, stage_named))
        if modified != created:
            events.append(deal_event(source, "updated", raw, custom, stage_named))
        newest = later(latest, str(modified))
        if newest != latest:
            latest, at_latest = newest, set()
        if str(modified) == latest:
            at_latest.add(deal_id)
    return events, f"{latest}|{','.join(sorted(at_latest, key=int))}" if at_latest else latest
