"""What the reports read, from one event (pure): the lead or deal it reports with where it came from and how it
stands, the stage it entered and who moved it, the booking, the review (`automator.model.Facts`).

`facts_of` is called by decide() for every event, with the entity before and after it, so the daemon, `automator
test` and dry-run keep the same rows. A row says only what the event says: what it leaves out (None) is kept as
stored, and the store merges (automator/store/facts.py): a first touch and `created_at` never move later, a last
touch moves only to another channel or campaign, `qualified_at` is the first time the record qualified.

- Deals: `deal.created/updated/deleted` (entity `deal`): pipeline and stage by their names in pipelines/*.yaml,
  won or lost from the stage's `outcome` or the deal's `outcome` field, qualified from the stage marked
  `qualified: true` on (`Pipeline.qualifies`). A deleted deal that was open is lost.
- Leads: `lead.created/updated` (no entity; `lead:<connector>:<data.lead_id>`), their stage the system's status
  (`stage`, else Bitrix24's `status_id`), CONVERTED won and JUNK lost unless the data says `outcome`.
- A touch is an event whose source fields (`channels.SOURCE_FIELDS`) name a channel: a deal's when they differ
  from what the deal had. A rule's set_source (`source_touch` in the data) corrects the first, last or both.
- Bookings: `booking.created/updated/deleted`; reviews: `review.received` and `nps.received` (score 0–10).
  Neither comes from a rule's `emit:` (news to other rules, not what happened).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from automator import history
from automator.channels import SOURCE_FIELDS, UTM_FIELDS, ChannelMap, campaign_of, carries_source
from automator.model import (ENGINE, BookingRow, ClientSource, Entity, Event, Facts, LeadRow, Pipeline, ReviewRow,
                             StageMove, Touch)

REVIEW_EVENTS = ("review.received", "nps.received")
OUTCOMES = ("open", "won", "lost")
TOUCHES = ("first", "last", "both")
# The data field a rule's set_source puts in the event it emits: which touch it corrects (see TOUCHES).
TOUCH_FIELD = "source_touch"
NO_FACTS = Facts()  # most events add nothing: one shared empty answer
# Bitrix24's lead statuses that end a lead (connector-contracts-2.md §2.6): converted to a deal, or junk.
LEAD_STATUS_OUTCOMES = {"converted": "won", "junk": "lost"}


def facts_of(event: Event, before: Entity | None, after: Entity | None, channels: ChannelMap,
             pipelines: Mapping[str, Pipeline], tz: tzinfo) -> Facts:
    """The rows `event` adds to the reports' tables, given the entity before and after it (decide()'s), the
    project's channels and pipelines, and its timezone (a moment written without an offset is in it)."""
    kind, verb = event.kind, event.verb
    if kind == "deal" and verb in ("created", "updated", "deleted") and after is not None \
            and after.ref.kind == "deal":
        return _deal(event, before, after, channels, pipelines, tz)
    if kind == "lead" and verb in ("created", "updated"):
        return _lead(event, channels, tz)
    if event.source == ENGINE and event.type == "client.updated" and event.entity is not None:
        return _client_source(event, channels)
    if event.source == ENGINE:
        return NO_FACTS
    if kind == "booking" and verb in ("created", "updated", "deleted") and after is not None \
            and after.ref.kind == "booking":
        return Facts(bookings=(_booking(event, after, channels, tz),))
    if event.type in REVIEW_EVENTS:
        review = _review(event, tz)
        return Facts(reviews=(review,)) if review is not None else NO_FACTS
    return NO_FACTS


# ---- deals and leads ----------------------------------------------------------------------------------------

def _deal(event: Event, before: Entity | None, after: Entity, channels: ChannelMap,
          pipelines: Mapping[str, Pipeline], tz: tzinfo) -> Facts:
    fields = after.fields
    old = before.fields if before is not None else {}
    record = f"deal:{after.ref.id}"
    at = seconds(event.at)
    pipeline_name, stage = _text(fields.get("pipeline")), _text(fields.get("stage"))
    pipeline = pipelines.get(pipeline_name) if pipeline_name else None
    outcome = _outcome(pipeline, stage, fields.get("outcome"))
    if before is None and (event.verb == "deleted" or _corrects(event)):
        return NO_FACTS  # nothing is known of a deal first seen deleted, or corrected by a rule before it is seen
    if event.verb == "deleted":
        outcome = "lost" if outcome == "open" else outcome
    qualified = outcome == "won" or (pipeline is not None and pipeline.qualifies(stage))
    # A touch is news of where the deal came from: a system that sends the whole deal on every change sends
    # the same source again and again, and that is no new touch. A rule's set_source always is one.
    touched = carries_source(event.data) and (before is None or _corrects(event) or any(
        _text(event.data.get(name)) != _text(old.get(name)) for name in SOURCE_FIELDS if name in event.data))
    first, last, force_first, force_last = _touches(event, event.data if touched else {}, channels, at)
    row = LeadRow(
        id=record, kind="deal", source=None if event.source == ENGINE else event.source,
        client=_text(fields.get("client")),
        pipeline=pipeline_name, stage=stage, outcome=outcome, responsible=_text(fields.get("responsible")),
        created_at=min(at, moment(fields.get("created_at"), tz) or at), qualified_at=at if qualified else None,
        closed_at=at if outcome in ("won", "lost") else None, amount=_amount(fields.get("amount")),
        currency=_text(fields.get("currency")) or ("RUB" if fields.get("amount") not in (None, "") else None),
        first=first, last=last, raw_source=_text(fields.get("lead_source")),
        utm=_utm(fields), force_first=force_first, force_last=force_last)
    moves: tuple[StageMove, ...] = ()
    old_stage, old_pipeline = _text(old.get("stage")), _text(old.get("pipeline"))
    if stage is not None and event.verb != "deleted" and (stage != old_stage or pipeline_name != old_pipeline):
        moves = (StageMove(record=record, pipeline=pipeline_name, stage=stage, from_stage=old_stage, at=at,
                           by=moved_by(event), responsible=row.responsible, event=event.id),)
    return Facts(leads=(row,), moves=moves)


def _lead(event: Event, channels: ChannelMap, tz: tzinfo) -> Facts:
    data = event.data
    ident = _text(data.get("lead_id"))
    if ident is None:
        return NO_FACTS
    connector = _text(data.get("connector")) if event.source == ENGINE else event.source
    record = f"lead:{connector}:{ident}"
    at = seconds(event.at)
    stage = _text(data.get("stage")) or _text(data.get("status_id"))
    outcome = _text(data.get("outcome"))
    if outcome not in OUTCOMES:
        outcome = LEAD_STATUS_OUTCOMES.get((stage or "").lower(), "open") if stage is not None else None
    first, last, force_first, force_last = _touches(event, data, channels, at)
    client = event.entity.id if event.entity is not None and event.entity.kind == "client" else \
        _text(data.get("client"))
    created = moment(data.get("created_at"), tz) if event.verb == "created" else None
    row = LeadRow(
        id=record, kind="lead", source=None if event.source == ENGINE else connector, client=client, pipeline=_text(data.get("pipeline")),
        stage=stage, outcome=outcome, responsible=_text(data.get("responsible")),
        created_at=min(at, created or at), qualified_at=at if outcome == "won" else None,
        closed_at=at if outcome in ("won", "lost") else None, amount=_amount(data.get("amount")),
        currency=_text(data.get("currency")) or ("RUB" if data.get("amount") not in (None, "") else None),
        first=first, last=last, raw_source=_text(data.get("lead_source")), utm=_utm(data),
        force_first=force_first, force_last=force_last)
    # The stage a lead had is the stored one (a lead has no entity): the store keeps this move only if it differs.
    moves = (StageMove(record=record, pipeline=row.pipeline, stage=stage, from_stage=None, at=at,
                       by=moved_by(event), responsible=row.responsible, event=event.id),) if stage else ()
    return Facts(leads=(row,), moves=moves)


def _touches(event: Event, fields: Mapping[str, Any], channels: ChannelMap, at: int
             ) -> tuple[Touch | None, Touch | None, bool, bool]:
    """The first- and last-touch candidates the fields give, and whether a set_source forces each."""
    channel = channels.classify(fields) if fields else None
    if channel is None:
        return None, None, False, False
    touch = Touch(channel, campaign_of(fields), at)
    if not _corrects(event):
        return touch, touch, False, False
    which = event.data[TOUCH_FIELD]
    return (touch if which != "last" else None, touch if which != "first" else None,
            which in ("first", "both"), which in ("last", "both"))


def _outcome(pipeline: Pipeline | None, stage: str | None, stated: Any) -> str:
    """Won or lost by the stage's `outcome:`, else by the deal's own `outcome` field; open otherwise."""
    found = pipeline.stages.get(stage) if pipeline is not None and stage is not None else None
    if found is not None and found.outcome in OUTCOMES:
        return found.outcome
    return str(stated) if stated in OUTCOMES else "open"


def moved_by(event: Event) -> str | None:
    """Who made the change an event reports: `rule:<id>` when it is our own effect's (the journal's echo and
    own-effect recognition mark it), else the system's user when the payload names one (`modified_by`)."""
    if event.echo_of:
        return f"rule:{event.echo_of}"
    return _text(event.data.get("modified_by"))


def _corrects(event: Event) -> bool:
    """True for the event a rule's set_source emits (it names the touch it corrects)."""
    return event.source == ENGINE and event.data.get(TOUCH_FIELD) in TOUCHES


def _client_source(event: Event, channels: ChannelMap) -> Facts:
    """A rule's set_source on a client (`client.updated` with `channel`): their first channel from now on."""
    assert event.entity is not None
    channel = channels.classify(event.data) if _corrects(event) else None
    if channel is None or event.entity.kind != "client":
        return NO_FACTS
    return Facts(client_sources=(ClientSource(event.entity.id, channel, campaign_of(event.data),
                                              seconds(event.at)),))


# ---- bookings and reviews -----------------------------------------------------------------------------------

def _booking(event: Event, after: Entity, channels: ChannelMap, tz: tzinfo) -> BookingRow:
    fields = after.fields
    at = seconds(event.at)
    status = "cancelled" if event.verb == "deleted" else _text(fields.get("status"))
    return BookingRow(id=after.ref.id, source=event.source, client=_text(fields.get("client")),
                      staff=_text(fields.get("staff")), branch=_text(fields.get("branch")), status=status,
                      created_at=min(at, moment(fields.get("created_at"), tz) or at),
                      starts_at=moment(fields.get("starts_at"), tz), amount=_amount(fields.get("amount")),
                      channel=channels.classify(fields), campaign=campaign_of(fields))


def _review(event: Event, tz: tzinfo) -> ReviewRow | None:
    data = event.data
    score = _score(data.get("score"))
    if score is None:
        return None  # not a score from 0 to 10: nothing a report could average
    client = event.entity.id if event.entity is not None and event.entity.kind == "client" else \
        _text(data.get("client"))
    return ReviewRow(id=event.id, client=client, at=moment(data.get("at"), tz) or seconds(event.at), score=score,
                     staff=_text(data.get("staff")), branch=_text(data.get("branch")),
                     booking=_text(data.get("booking")))


def _score(value: Any) -> int | None:
    """A whole score from 0 to 10 (`9`, `"9"`, `9.0`); None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value() or not 0 <= number <= 10:
        return None
    return int(number)


# ---- values -------------------------------------------------------------------------------------------------

def seconds(at: datetime) -> int:
    """A moment as whole seconds since the epoch (UTC), as the reports' tables keep it."""
    return int(at.timestamp())


def moment(value: Any, tz: tzinfo) -> int | None:
    """A moment a field holds (a datetime or ISO 8601 text; without an offset, in the project's timezone) as
    seconds since the epoch; None when it holds none."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=tz)
    if not history.YEARS[0] <= at.year <= history.YEARS[1]:
        return None
    return seconds(at)


def _amount(value: Any) -> int | None:
    """An amount as integer minor units (exactly: `"1500.50"` → 150050); None when there is none or it is not one."""
    if value is None or value == "":
        return None
    if type(value) is str:  # noqa: E721  (the usual case, read at once)
        try:
            return history.minor_units(value)
        except history.HistoryError:
            return None
    text = history.money_of(value)  # a whole number, a Decimal, the float a JSON number became
    return history.minor_units(text) if text is not None else None


def _utm(fields: Mapping[str, Any]) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    source, medium, campaign, content, term = (_text(fields.get(name)) for name in UTM_FIELDS)
    return source, medium, campaign, content, term


def _text(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int or kind is float:
        return str(value)
    if value is None or isinstance(value, (Mapping, list, tuple, bool)):
        return None
    return str(value)
