"""Cumulative discount tiers (pure): the tier a client's visits or spend reach, a move up or down as a `tier` row
and one `loyalty.tier_changed` event, and the timer for the moment the window could drop them a tier.

When a tier is reviewed: on each paid visit (the visit counts at once), and, when the program counts over a
`window`, at the moment the oldest counted visits leave it far enough for the measure to fall below the tier held
(one timer per client and program, moved by every review). A visit counts while `window` after it has not passed:
a visit on 2 March with `window: 365d` counts until 2 March next year at the same time of day.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from automator.loyalty import made
from automator.loyalty.decision import TIMER_KIND, Outcome, Reading
from automator.loyalty.ledger import Entry, account, ordered
from automator.loyalty.terms import Program, Tier, Tiers
from automator.model import Event, Timer, Visit

TIER_CHANGED = "loyalty.tier_changed"
REVIEW = "tier_review"  # the `what` of the timer that reviews a tier when the window drops visits


def held(entries: Iterable[Entry], program: str) -> str | None:
    """The tier a client's ledger says they hold in `program` (its last `tier` row), None before any."""
    name = account("tier", program)
    rows = [e for e in ordered(entries) if e.account == name and e.kind == "tier"]
    return rows[-1].detail.get("tier") if rows else None


def counted(tiers: Tiers, visits: Iterable[Visit], at: datetime, tz: ZoneInfo) -> list[Visit]:
    """The visits that count at `at`: made by then, and within the window when there is one; oldest first."""
    made = sorted((v for v in visits if v.at <= at), key=lambda v: (v.at, v.id))
    window = tiers.window
    if window is None:
        return made
    # Newest first until one has left: every older one has left too (the end of a window only moves forward). A
    # visit well inside the window (its shortest length, less a day for a clock change) is not worked out exactly.
    surely = at - timedelta(days=28 * window.months + window.days - 1, seconds=window.seconds)
    first = len(made)
    while first > 0 and (made[first - 1].at > surely or window.add_to(made[first - 1].at, tz) > at):
        first -= 1
    return made[first:]


def looking_back(tiers: Tiers, at: datetime) -> datetime | None:
    """The earliest a visit counting at `at` can be (a month at its longest, a day for a clock change), for reading
    no more of a long history than the window; None without a window (all of it counts)."""
    window = tiers.window
    if window is None:
        return None
    return at - timedelta(days=31 * window.months + window.days + 1, seconds=window.seconds)


def measure(tiers: Tiers, visits: Iterable[Visit]) -> int:
    """Visits (purchases of goods are not visits) or spend in minor units, as the tiers count."""
    return sum(_weight(tiers, v) for v in visits)


def _weight(tiers: Tiers, visit: Visit) -> int:
    if tiers.by == "visits":
        return 1 if visit.kind == "visit" else 0
    return visit.amount


def falls_at(tiers: Tiers, visits: Sequence[Visit], tier: Tier | None, tz: ZoneInfo) -> datetime | None:
    """The moment the counted `visits` (oldest first), leaving the window one by one, take the measure below
    `tier`'s threshold; None when they never can (no window, no tier, or a tier from zero)."""
    if tiers.window is None or tier is None or tier.threshold <= 0:
        return None
    left = measure(tiers, visits)
    for visit in visits:
        left -= _weight(tiers, visit)
        if left < tier.threshold:
            return tiers.window.add_to(visit.at, tz)
    return None


def review_timer_id(client: str, program: str) -> str:
    """The one review timer of a client in a program (set again, it moves)."""
    return f"loyalty/{client}/{account('tier', program)}/{REVIEW}/next"


def review(program: Program, reading: Reading, new: Sequence[Visit], client: str, at: datetime, cause: Event,
           tz: ZoneInfo) -> Outcome:
    """A client's tier reviewed at `at` over their stored visits (as far back as the window reaches) and the `new`
    ones: a `tier` row and a `loyalty.tier_changed` event when the tier reached is not the one held, and the review
    timer moved."""
    tiers = program.tiers
    if tiers is None:
        return Outcome()
    stored = reading.visits_of(client, since=looking_back(tiers, at))
    known = {v.id for v in stored}
    visits = counted(tiers, [*stored, *(v for v in new if v.id not in known)], at, tz)
    entries = reading.ledger_of(client)
    reached = tiers.level(measure(tiers, visits))
    was = held(entries, program.name)
    timer_id = review_timer_id(client, program.name)
    due = falls_at(tiers, visits, reached, tz)
    timers = (Timer(id=timer_id, due_at=due, kind=TIMER_KIND, rule_id="", key=f"client:{client}",
                    payload={"what": REVIEW, "account": account("tier", program.name), "program": program.name}),
              ) if due is not None else ()
    cancel = () if due is not None else (timer_id,)
    now = reached.name if reached else None
    if now == was:
        return Outcome(timers=timers, cancel_timers=cancel)
    before = tiers.get(was)
    up = reached is not None and (before is None or reached.threshold > before.threshold)
    direction = "up" if up else "down"
    discount = str(reached.discount) if reached else "0"
    category = reached.category if reached else None
    detail = {"tier": now, "from": was, "direction": direction, "discount": discount, "category": category,
              "measure": measure(tiers, visits), "by": tiers.by}
    title = (reached.title or reached.name) if reached else "без уровня"
    entry = made.row(program.name, cause, f"{cause.id}/{program.name}/tier", client, account("tier", program.name),
                     "tier", 0, at, f"Уровень «{title}»: скидка {discount} %", detail=detail)
    moved = made.event(cause, TIER_CHANGED, client, at, {"program": program.name, "from": was, "to": now,
                                                          "direction": direction, "discount": discount,
                                                          "category": category})
    return Outcome(entries=(entry,), events=(moved,), timers=timers, cancel_timers=cancel)
