"""loyalty.yaml's programs as pure mechanics: what a paid visit, a refund or a timer earns, spends, expires or
changes in a client's ledger (tiers, points, cashback, discounts, every Nth visit, referral).

A client's program: the `loyalty:` of their segment in segments.yaml; else the program listing that segment under
its own `segments:`; else the program marked `default: true`; else none (their visits earn nothing).

On a paid visit, in this order, each seeing the rows before it: the joining discount (once per client and
program), the first-visit discount and the referral (on the client's first paid visit), points and cashback, the
every-Nth count, and the tier reviewed. Rows made for an event have ids `<event id>/<program>/<what>`: the same
event decided again makes the same rows, which the ledger keeps once.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from automator.loyalty import refunds, rewards, tiers
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome, Reading, Staged
from automator.loyalty.points import accruals
from automator.loyalty.terms import Program
from automator.model import Entity, Visit

if TYPE_CHECKING:
    from automator.segments import SegmentsConfig

SEGMENT_CHANGED = "segment.changed"


def program_of(config: LoyaltyConfig, segments: SegmentsConfig | None, client: Entity | None) -> Program | None:
    """The program a client is in (see the module's docstring)."""
    name = client.fields.get("segment") if client is not None else None
    segment = segments.get(str(name)) if segments is not None and name else None
    if segment is not None and segment.loyalty:
        found: Program | None = config.program(segment.loyalty)
        return found
    listing = next((p for p in config.programs.values() if name and name in p.segments), None)
    return listing or next((p for p in config.programs.values() if p.default), None)


def on_event(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """What the programs make of one event: a paid visit's rewards and tier, a refund's reversals, a client's
    joining discount when their segment brings them into a program."""
    event, client = happening.event, happening.client
    if event.entity is None or event.entity.kind != "client":
        return Outcome()
    if event.type == refunds.REFUNDED:  # the rows say what the visit earned, whatever program the client is in now
        return refunds.refunded(reading, event, event.entity.id, event.at or happening.now)
    if client is None:
        return Outcome()
    if event.type == SEGMENT_CHANGED:
        # The move names the program it brings the client into: the client's fields may not show the move yet.
        named = config.program(str(event.data.get("loyalty") or "")) if event.data.get("loyalty") else None
        joining = named if isinstance(named, Program) else program_of(config, happening.segments, client)
        return rewards.joined(joining, reading.ledger_of(client.ref.id), client.ref.id, event, happening.now,
                              happening.tz) if joining is not None else Outcome()
    program = program_of(config, happening.segments, client)
    if program is None or not happening.visits:
        return Outcome()
    return visited(program, reading, happening, client, happening.visits)


def visited(program: Program, reading: Reading, happening: Happening, client: Entity,
            visits: Sequence[Visit]) -> Outcome:
    """What `program` makes of a client's new visits (one, from a webhook; the simulation replays them one by
    one through here too)."""
    staged = Staged(reading)
    person, event, tz = client.ref.id, happening.event, happening.tz
    total = Outcome()

    def add(found: Outcome) -> None:
        nonlocal total
        staged.keep(found.entries)
        total = total + found

    new = sorted(visits, key=lambda v: (v.at, v.id))
    if any(v.amount > 0 for v in new):
        add(rewards.joined(program, staged.ledger_of(person), person, event, new[0].at, tz))
    paid_before = _paid_before(reading, person)
    for number, visit in enumerate(new):
        base = f"{event.id}/{program.name}" + (f"/{number + 1}" if number else "")
        if visit.amount > 0 and not paid_before:
            paid_before = True
            add(Outcome(entries=tuple(rewards.first_visit(program, visit, event, base))))
            add(rewards.referral(program, staged, client, visit, event, tz))
        add(Outcome(entries=tuple(accruals(program, visit, event, base, tz))))
        add(rewards.every_nth(program, staged.ledger_of(person), visit, event, base))
    if program.tiers is not None:
        add(tiers.review(program, staged, new, person, new[-1].at, event, tz))
    return total


# A client's first visits are read first: one of them paid (the common case) settles it without the rest.
FIRST_VISITS = 8


def _paid_before(reading: Reading, client: str) -> bool:
    """Whether the client's stored history has a paid visit (the new ones are not stored yet)."""
    first = reading.visits_of(client, limit=FIRST_VISITS)
    if any(v.amount > 0 for v in first) or len(first) < FIRST_VISITS:
        return any(v.amount > 0 for v in first)
    return any(v.amount > 0 for v in reading.visits_of(client))


def on_timer(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """What the programs make of one of their timers firing: a tier reviewed when the window drops visits
    (other loyalty timers, expiry and notices, are not the programs')."""
    event = happening.event
    payload = event.data.get("payload") or {}
    if payload.get("what") != tiers.REVIEW or event.entity is None:
        return Outcome()
    program = config.program(str(payload.get("program") or ""))
    if not isinstance(program, Program):
        return Outcome()
    return tiers.review(program, reading, (), event.entity.id, happening.now, event, happening.tz)
