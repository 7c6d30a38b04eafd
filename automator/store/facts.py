"""The reports' rows (migration m005: leads, stage_moves, client_channels, bookings, reviews) as one decision's
`Facts` make them, and their writing: each table's rows of a whole batch in one statement, merged with what is
stored in SQL (an upsert), so that deciding needs no read of these tables.

The merge rules (automator/facts.py says what an event's row means): a value the event does not give (NULL)
keeps the stored one; `created_at` and `qualified_at` only ever move earlier; `closed_at` stays while the outcome
stays and is cleared when the record is open again; the first touch is replaced only by an earlier one, the last
touch only by a later one naming another channel or campaign, either whatever is stored when a rule's set_source
forces it. A stage move is inserted once per (event, record). A person's first channel is the earliest lead,
deal or booking of theirs that has a channel (a record's own correction moves it too).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from automator.model import BookingRow, Facts, LeadRow, StageMove
from automator.store.base import FactRows

LEAD_COLUMNS = ("id", "kind", "source", "client", "pipeline", "stage", "outcome", "responsible", "created_at",
                "qualified_at", "closed_at", "amount", "currency", "first_channel", "first_campaign", "first_at",
                "last_channel", "last_campaign", "last_at", "raw_source", "utm_source", "utm_medium", "utm_campaign",
                "utm_content", "utm_term")
_FORCE_FIRST, _FORCE_LAST = len(LEAD_COLUMNS) + 1, len(LEAD_COLUMNS) + 2  # the parameters after the columns
_LATEST = ("client", "pipeline", "stage", "outcome", "responsible", "amount", "currency", "raw_source", "utm_source",
           "utm_medium", "utm_campaign", "utm_content", "utm_term")
_FIRST = (f"(excluded.first_at is not null and (?{_FORCE_FIRST} or leads.first_at is null "
          "or excluded.first_at < leads.first_at))")
_LAST = (f"(excluded.last_at is not null and (?{_FORCE_LAST} or leads.last_at is null "
         "or (excluded.last_at >= leads.last_at and (excluded.last_channel is not leads.last_channel "
         "or excluded.last_campaign is not leads.last_campaign))))")


def _earliest(column: str, table: str) -> str:
    return f"{column} = min(coalesce(excluded.{column}, {table}.{column}), coalesce({table}.{column}, excluded.{column}))"


UPSERT_LEAD = (
    f"insert into leads ({', '.join(LEAD_COLUMNS)}) values ({', '.join(f'?{i}' for i in range(1, len(LEAD_COLUMNS) + 1))}) "
    "on conflict(id) do update set kind = excluded.kind, source = coalesce(leads.source, excluded.source), "
    + ", ".join(f"{c} = coalesce(excluded.{c}, leads.{c})" for c in _LATEST) + ", "
    + _earliest("created_at", "leads") + ", " + _earliest("qualified_at", "leads") + ", "
    "closed_at = case when coalesce(excluded.outcome, leads.outcome) = 'open' then null "
    "when excluded.outcome is null or excluded.outcome is leads.outcome then coalesce(leads.closed_at, excluded.closed_at) "
    "else excluded.closed_at end, "
    + ", ".join(f"first_{c} = case when {_FIRST} then excluded.first_{c} else leads.first_{c} end"
                for c in ("channel", "campaign", "at")) + ", "
    + ", ".join(f"last_{c} = case when {_LAST} then excluded.last_{c} else leads.last_{c} end"
                for c in ("channel", "campaign", "at")))
MOVE_COLUMNS = ("record", "pipeline", "stage", "from_stage", '"at"', '"by"', "responsible", "event")
INSERT_MOVE = f"insert or ignore into stage_moves ({', '.join(MOVE_COLUMNS)}) values ({', '.join('?' * len(MOVE_COLUMNS))})"
# A lead has no stored entity to compare with: its move is kept when its stage differs from the stored one.
INSERT_LEAD_MOVE = (f"insert or ignore into stage_moves ({', '.join(MOVE_COLUMNS)}) "
                    "select ?1, ?2, ?3, (select stage from leads where id = ?1), ?4, ?5, ?6, ?7 "
                    "where (select stage from leads where id = ?1) is not ?3")
_FIRST_CHANNEL = ('on conflict(client) do update set channel = excluded.channel, campaign = excluded.campaign, '
                  '"at" = case when excluded.record = client_channels.record then min(excluded."at", '
                  'client_channels."at") else excluded."at" end, record = excluded.record '
                  'where excluded."at" < client_channels."at" or excluded.record = client_channels.record')
# The person's first channel from the lead or deal as stored after the upsert (its first touch, its creation).
RECORD_CHANNEL = ('insert into client_channels (client, channel, campaign, "at", record) '
                  "select client, first_channel, first_campaign, created_at, id from leads where id = ? "
                  "and client is not null and first_channel is not null " + _FIRST_CHANNEL)
BOOKING_CHANNEL = ('insert into client_channels (client, channel, campaign, "at", record) values (?, ?, ?, ?, ?) '
                   + _FIRST_CHANNEL)
SET_CLIENT_SOURCE = ('insert into client_channels (client, channel, campaign, "at", record) values (?, ?, ?, ?, \'\') '
                     "on conflict(client) do update set channel = excluded.channel, campaign = excluded.campaign")
BOOKING_COLUMNS = ("id", "source", "client", "staff", "branch", "status", "created_at", "starts_at", "amount",
                   "channel")
UPSERT_BOOKING = (
    f"insert into bookings ({', '.join(BOOKING_COLUMNS)}) values ({', '.join('?' * len(BOOKING_COLUMNS))}) "
    "on conflict(id) do update set source = excluded.source, "
    + ", ".join(f"{c} = coalesce(excluded.{c}, bookings.{c})"
                for c in ("client", "staff", "branch", "status", "starts_at", "amount", "channel")) + ", "
    + _earliest("created_at", "bookings"))
INSERT_REVIEW = ('insert or ignore into reviews (id, client, "at", score, staff, branch, booking) '
                 "values (?, ?, ?, ?, ?, ?, ?)")


def rows_of(facts: Facts) -> FactRows | None:
    """One decision's facts as the rows written (pure); None when there are none."""
    if not facts:
        return None
    rows = FactRows()
    for lead in facts.leads:
        if lead.kind == "lead":
            rows.leads.append(([_lead_move(m) for m in facts.moves if m.record == lead.id], lead_row(lead)))
        else:
            rows.deals.append(lead_row(lead))
    deals = {lead.id for lead in facts.leads if lead.kind != "lead"}
    rows.moves.extend(move_row(m) for m in facts.moves if m.record in deals)
    for booking in facts.bookings:
        rows.bookings.append(booking_row(booking))
        if booking.client is not None and booking.channel is not None:
            rows.booking_channels.append([booking.client, booking.channel, booking.campaign, booking.created_at,
                                          f"booking:{booking.id}"])
    rows.reviews.extend([r.id, r.client, r.at, r.score, r.staff, r.branch, r.booking] for r in facts.reviews)
    rows.client_sources.extend([s.client, s.channel, s.campaign, s.at] for s in facts.client_sources)
    return rows


def lead_row(lead: LeadRow) -> list[Any]:
    """A lead or deal as the upsert's parameters: LEAD_COLUMNS, then whether the first and last touch are forced."""
    first, last = lead.first, lead.last
    return [lead.id, lead.kind, lead.source, lead.client, lead.pipeline, lead.stage, lead.outcome, lead.responsible,
            lead.created_at, lead.qualified_at, lead.closed_at, lead.amount, lead.currency,
            first.channel if first else None, first.campaign if first else None, first.at if first else None,
            last.channel if last else None, last.campaign if last else None, last.at if last else None,
            lead.raw_source, *lead.utm, lead.force_first, lead.force_last]


def move_row(move: StageMove) -> list[Any]:
    """A stage move as INSERT_MOVE's parameters."""
    return [move.record, move.pipeline, move.stage, move.from_stage, move.at, move.by, move.responsible, move.event]


def _lead_move(move: StageMove) -> list[Any]:
    return [move.record, move.pipeline, move.stage, move.at, move.by, move.responsible, move.event]


def booking_row(booking: BookingRow) -> list[Any]:
    """A booking as UPSERT_BOOKING's parameters."""
    return [booking.id, booking.source, booking.client, booking.staff, booking.branch, booking.status,
            booking.created_at, booking.starts_at, booking.amount, booking.channel]


def write(conn: Any, many: Sequence[FactRows]) -> None:
    """Write a batch's facts, in the caller's transaction: each table's rows in one statement, but a lead's (rare:
    one per request) one after the other, its move compared with the stage its upsert before it left."""
    def each(sql: str, rows: list[list[Any]]) -> None:
        if rows:
            conn.executemany(sql, rows)

    deals = [row for rows in many for row in rows.deals]
    each(INSERT_MOVE, [row for rows in many for row in rows.moves])
    each(UPSERT_LEAD, deals)
    leads = [lead for rows in many for lead in rows.leads]
    for moves, lead in leads:
        each(INSERT_LEAD_MOVE, moves)
        conn.execute(UPSERT_LEAD, lead)
    each(RECORD_CHANNEL, [[row[0]] for row in deals] + [[lead[0]] for _, lead in leads])
    each(UPSERT_BOOKING, [row for rows in many for row in rows.bookings])
    each(BOOKING_CHANNEL, [row for rows in many for row in rows.booking_channels])
    each(INSERT_REVIEW, [row for rows in many for row in rows.reviews])
    each(SET_CLIENT_SOURCE, [row for rows in many for row in rows.client_sources])
