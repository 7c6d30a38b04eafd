"""Abonements on the ledger (pure): N visits of some services, used by the visits that match, lapsing on a day that
a freeze moves.

An abonement is the account `abonement:<number>` of its client: its `issue` row is a lot of visits (no
`expires_at`: the day it lapses is kept here, because a freeze moves it), each visit it pays for a `use` row (-1),
`freeze` and `unfreeze` rows (amount 0) say when it was frozen, and when it lapses an `expire` row per lot writes off
the visits left. The issue row describes the abonement whole (type, services, categories, last day, freeze limits),
so nothing here reads loyalty.yaml after the issue.

Days are local days of the project's timezone. A freeze runs from the day it is asked through `until` (both
frozen); lifted early (`unfreeze`), the day it is lifted is a day of use again. The abonement's last day is the
issue's last day plus every day frozen (a running freeze counts all the days asked; lifting it gives back the rest).
No visit uses an abonement on a frozen day, after it lapses, or before it was issued.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from automator.clock import localize
from automator.loyalty.decision import TIMER_KIND
from automator.loyalty.instrument_types import (ABONEMENT, AbonementType, InstrumentError, lapse_moment, local_day,
                                                normal_title)
from automator.loyalty.ledger import Entry, account, account_kind, balance, ordered
from automator.model import EntityRef, Event, Timer, Visit

EXPIRE = "abonement_expire"  # the payload's `what` of the timer at the moment an abonement lapses
NOTICE = "abonement_notice"  # … and of the one `notice` before it
# Why `abonement.ending` was emitted.
LAST_VISIT, USED_UP, EXPIRING = "last_visit", "used_up", "expiring"
NOTICE_HOUR = 12  # local: the hour the "lapsing soon" notice comes


@dataclass(frozen=True, slots=True)
class Freeze:
    """One freeze of an abonement, as its rows leave it."""

    row: str  # the `freeze` row
    first: date  # the first frozen day
    until: date  # the last frozen day asked
    lifted: date | None = None  # the day an `unfreeze` made a day of use again

    @property
    def end(self) -> date:
        """The first day that is not frozen."""
        return self.lifted if self.lifted is not None else self.until + timedelta(days=1)

    @property
    def days(self) -> int:
        """Days frozen (those asked, or those until it was lifted): the abonement's life is longer by them."""
        return max(0, (self.end - self.first).days)

    def covers(self, day: date) -> bool:
        """Whether `day` is a frozen day."""
        return self.first <= day < self.end


@dataclass(frozen=True, slots=True)
class Abonement:
    """One abonement as a client's rows leave it."""

    number: str
    client: str
    issued: Entry
    left: int  # visits left
    freezes: tuple[Freeze, ...]
    reached: frozenset[int]  # the visits-left figures a `use` has left it at (each notice of them comes once)

    @property
    def account(self) -> str:
        """Its account."""
        return account(ABONEMENT, self.number)

    @property
    def type(self) -> str:
        """Its type's name."""
        return str(self.issued.detail.get("type", ""))

    @property
    def title(self) -> str:
        """Its type's title."""
        return str(self.issued.detail.get("title") or self.type)

    @property
    def last_day(self) -> date | None:
        """The last day it may be used: the issue's last day plus the days frozen; None when it never lapses."""
        first = self.issued.detail.get("expires")
        if not first:
            return None
        return date.fromisoformat(str(first)) + timedelta(days=sum(f.days for f in self.freezes))

    def lapses_at(self, tz: ZoneInfo) -> datetime | None:
        """The moment it lapses: the local midnight that ends its last day."""
        return lapse_moment(self.last_day, tz)

    def freeze_on(self, day: date) -> Freeze | None:
        """The freeze covering `day`, if any."""
        return next((f for f in self.freezes if f.covers(day)), None)

    def usable(self, at: datetime, tz: ZoneInfo) -> bool:
        """Whether a visit at `at` may use it: visits left, issued by then, not lapsed, not frozen that day."""
        lapses = self.lapses_at(tz)
        return (self.left > 0 and self.issued.at <= at and (lapses is None or at < lapses)
                and self.freeze_on(local_day(at, tz)) is None)

    def describe(self, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
        """What an operator reads of it at `now` (`automator loyalty show`): visits left, the last day with the days
        frozen added, whether it has lapsed, and the freeze running today."""
        lapses = self.lapses_at(tz)
        frozen = self.freeze_on(local_day(now, tz))
        return {"number": self.number, "type": self.type, "title": self.title,
                "visits": int(self.issued.detail.get("visits") or self.issued.amount), "left": self.left,
                "services": list(self.issued.detail.get("services") or []),
                "categories": list(self.issued.detail.get("categories") or []),
                "last_day": self.last_day.isoformat() if self.last_day else None,
                "expires_at": lapses.astimezone(tz).isoformat() if lapses else None,
                "expired": lapses is not None and now >= lapses,
                "frozen_until": (frozen.end - timedelta(days=1)).isoformat() if frozen else None,
                "days_frozen": sum(f.days for f in self.freezes)}

    def covers(self, service: str, category: str | None) -> bool:
        """Whether it pays for a service of this title, or of this category."""
        services = {normal_title(s) for s in self.issued.detail.get("services") or ()}
        categories = {normal_title(c) for c in self.issued.detail.get("categories") or ()}
        return bool(service and normal_title(service) in services) or \
            bool(category and normal_title(category) in categories)


def account_of(number: str) -> str:
    """The account an abonement's rows are in."""
    return account(ABONEMENT, number)


def issue_row(atype: AbonementType, *, client: str, number: str, visits: int, services: Sequence[str],
              categories: Sequence[str], last: date | None, at: datetime, row_id: str, event: str = "",
              rule: str = "") -> Entry:
    """The `issue` row of a new abonement: a lot of `visits`, with all that its uses and freezes will read."""
    if visits <= 0:
        raise InstrumentError(f"abonement {number}: the number of visits must be above zero")
    if not services and not categories:
        raise InstrumentError(f"abonement {number}: name the services (or categories) it pays for")
    freeze = {"max_days": atype.freeze.max_days, "times": atype.freeze.times} if atype.freeze else None
    return Entry(id=row_id, client=client, account=account_of(number), kind="issue", amount=visits, at=at,
                 reason=f"Абонемент «{atype.title}»: визитов {visits}", event=event, rule=rule,
                 detail={"type": atype.name, "title": atype.title, "number": number, "visits": visits,
                         "services": list(services), "categories": list(categories),
                         "expires": last.isoformat() if last else None, "freeze": freeze, "synced": atype.synced})


def fold(rows: Iterable[Entry], number: str) -> Abonement | None:
    """Abonement `number` as a client's rows leave it; None when they hold no issue of it."""
    name = account_of(number)
    mine = ordered(e for e in rows if e.account == name)
    issued = next((e for e in mine if e.kind == "issue"), None)
    if issued is None:
        return None
    freezes: dict[str, Freeze] = {}
    reached: set[int] = set()
    running = 0
    for entry in mine:
        running += entry.amount
        if entry.kind == "use":
            reached.add(running)
        elif entry.kind == "freeze":
            freezes[entry.id] = Freeze(entry.id, date.fromisoformat(str(entry.detail["from"])),
                                       date.fromisoformat(str(entry.detail["until"])))
        elif entry.kind == "unfreeze" and str(entry.detail.get("freeze")) in freezes:
            lifted = freezes[str(entry.detail["freeze"])]
            freezes[lifted.row] = Freeze(lifted.row, lifted.first, lifted.until,
                                         date.fromisoformat(str(entry.detail["on"])))
    left = balance(mine, name).total
    return Abonement(number, issued.client, issued, left, tuple(freezes.values()), frozenset(reached))


def all_of(rows: Sequence[Entry]) -> list[Abonement]:
    """Every abonement among a client's rows, in the order they were issued."""
    numbers = [e.account.split(":", 1)[1] for e in ordered(rows)
               if e.kind == "issue" and account_kind(e.account) == ABONEMENT]
    return [found for number in numbers if (found := fold(rows, number)) is not None]


def use_rows(rows: Sequence[Entry], visit: Visit, *, event: str, tz: ZoneInfo) -> list[tuple[Entry, Abonement]]:
    """The `use` rows a visit makes, each with the abonement as it was before: each service of the visit uses one
    visit of an abonement paying for it (its title, else the visit's category), the one lapsing first first (one
    that never lapses last); a service an abonement already used in this visit covers is not charged again."""
    usable = sorted((a for a in all_of(rows) if a.usable(visit.at, tz)),
                    key=lambda a: (a.last_day is None, a.last_day or date.max, a.issued.at, a.number))
    used: list[tuple[Entry, Abonement]] = []
    for service in visit.services or ("",):
        if any(ab.covers(service, visit.category) for _, ab in used):
            continue
        found = next((a for a in usable if a.covers(service, visit.category)
                      and all(a.number != b.number for _, b in used)), None)
        if found is None:
            continue
        used.append((Entry(id=f"{event}/{found.number}/use", client=found.client, account=found.account,
                           kind="use", amount=-1, at=visit.at, reason=f"Визит по абонементу «{found.title}»",
                           event=event, visit=visit.id, detail={"service": service or visit.category or ""}), found))
    return used


def ending_reason(before: Abonement) -> str | None:
    """What one more use of `before` tells the client, once each: its last visit is left, or it is used up."""
    after = before.left - 1
    if after == 1 and 1 not in before.reached:
        return LAST_VISIT
    if after == 0 and 0 not in before.reached:
        return USED_UP
    return None


def ending_event(cause: Event, ab: Abonement, reason: str, left: int, now: datetime, tz: ZoneInfo) -> Event:
    """`abonement.ending` about `ab` for its client: rules message them (one visit left, used up, lapsing soon)."""
    lapses = ab.lapses_at(tz)
    return Event(id=f"{cause.id}>abonement.ending/{ab.number}", type="abonement.ending", at=now,
                 entity=EntityRef("client", ab.client), source="engine", depth=cause.depth + 1, caused_by=cause.id,
                 data={"number": ab.number, "abonement_type": ab.type, "title": ab.title, "visits_left": left,
                       "last_day": ab.last_day.isoformat() if ab.last_day else None,
                       "expires_at": lapses.isoformat() if lapses else None, "reason": reason})


def freeze_row(ab: Abonement, until: date, *, at: datetime, tz: ZoneInfo, row_id: str, event: str = "",
               rule: str = "") -> Entry:
    """The `freeze` row freezing `ab` from today through `until`, within its type's limits; an InstrumentError
    saying why not (lapsed, used up, frozen already, no freezing, too many days or times)."""
    today = local_day(at, tz)
    _check_open(ab, at, tz, "frozen")
    current = ab.freeze_on(today)
    if current is not None:
        raise InstrumentError(f"abonement {ab.number} is frozen already, through {current.until.isoformat()}")
    limits = ab.issued.detail.get("freeze")
    if not limits:
        raise InstrumentError(f"abonement {ab.number} ({ab.title}) cannot be frozen: its type has no `freeze:`")
    if until < today:
        raise InstrumentError(f"abonement {ab.number}: until {until.isoformat()} is before today "
                              f"({today.isoformat()})")
    days = (until - today).days + 1
    times, max_days = int(limits["times"]), int(limits["max_days"])
    if len(ab.freezes) >= times:
        raise InstrumentError(f"abonement {ab.number} was frozen {len(ab.freezes)} time(s): its type allows {times}")
    frozen = sum(f.days for f in ab.freezes)
    if frozen + days > max_days:
        raise InstrumentError(f"abonement {ab.number}: {days} day(s) asked, {max_days - frozen} of {max_days} "
                              f"left to freeze")
    return Entry(id=row_id, client=ab.client, account=ab.account, kind="freeze", amount=0, at=at,
                 reason=f"Заморозка по {until.isoformat()}", event=event, rule=rule,
                 detail={"from": today.isoformat(), "until": until.isoformat(), "days": days})


def unfreeze_row(ab: Abonement, *, at: datetime, tz: ZoneInfo, row_id: str, event: str = "",
                 rule: str = "") -> Entry:
    """The `unfreeze` row lifting the freeze that covers today (today is a day of use again: the days not frozen
    are given back to the abonement's life); an InstrumentError when it is not frozen."""
    today = local_day(at, tz)
    current = ab.freeze_on(today)
    if current is None:
        raise InstrumentError(f"abonement {ab.number} is not frozen today ({today.isoformat()})")
    return Entry(id=row_id, client=ab.client, account=ab.account, kind="unfreeze", amount=0, at=at,
                 reason="Разморозка", event=event, rule=rule,
                 detail={"freeze": current.row, "on": today.isoformat(), "days": (today - current.first).days})


def _check_open(ab: Abonement, at: datetime, tz: ZoneInfo, what: str) -> None:
    lapses = ab.lapses_at(tz)
    if lapses is not None and at >= lapses:
        raise InstrumentError(f"abonement {ab.number} lapsed at {lapses.isoformat()}: it cannot be {what}")
    if ab.left <= 0:
        raise InstrumentError(f"abonement {ab.number} is used up: it cannot be {what}")


def expiry_rows(rows: Sequence[Entry], ab: Abonement, at: datetime, tz: ZoneInfo, *, event: str) -> list[Entry]:
    """The `expire` rows writing off the visits left of `ab` once it has lapsed by `at`, one per lot, at the
    moment it lapsed (id `expire/<lot>`: written twice, kept once); none before."""
    lapses = ab.lapses_at(tz)
    if lapses is None or at < lapses:
        return []
    return [Entry(id=f"expire/{lot.entry}", client=ab.client, account=ab.account, kind="expire", amount=-lot.left,
                  at=max(lapses, lot.at), reason="Абонемент истёк: неиспользованные визиты списаны", event=event,
                  detail={"lot": lot.entry})
            for lot in balance(rows, ab.account).lots if lot.left > 0]


def refund_rows(rows: Sequence[Entry], visit: str, *, at: datetime, tz: ZoneInfo, event: str) -> list[Entry]:
    """What a (whole) refund of a visit gives back to the abonements it used: a `reverse` row (+1) per use not
    reversed yet; to an abonement that has lapsed meanwhile the visit is given back and written off at once."""
    done = {e.id for e in rows}
    out: list[Entry] = []
    for use in rows:
        if use.visit != visit or use.kind != "use" or f"reverse/{use.id}" in done:
            continue
        back = Entry(id=f"reverse/{use.id}", client=use.client, account=use.account, kind="reverse", amount=1,
                     at=at, reason="Визит возвращён на абонемент: визит отменён с возвратом", event=event,
                     visit=visit, detail={"of": use.id})
        out.append(back)
        ab = fold([*rows, back], use.account.split(":", 1)[1])
        lapses = ab.lapses_at(tz) if ab is not None else None
        if lapses is not None and at >= lapses:
            out.append(Entry(id=f"expire/{back.id}", client=use.client, account=use.account, kind="expire",
                             amount=-1, at=at, reason="Абонемент истёк: возвращённый визит списан", event=event,
                             detail={"lot": back.id}))
    return out


def timer_ids(ab: Abonement) -> list[str]:
    """The ids of the expiry and notice timers for `ab`'s present last day (to cancel when a freeze moves it)."""
    day = ab.last_day
    return [] if day is None else [f"loyalty/{ab.client}/{ab.account}/{what}/{day.isoformat()}"
                                   for what in (EXPIRE, NOTICE)]


def notice_moment(lapses: datetime, notice: timedelta, tz: ZoneInfo) -> datetime:
    """When the client is told an abonement lapsing at `lapses` is ending: at noon (local) of the day `notice`
    before the day it lapses, so that a message a rule sends on it comes in the day, not at midnight."""
    day = local_day(lapses - notice, tz)
    return localize(datetime.combine(day, time(NOTICE_HOUR)), tz)


def timers(ab: Abonement, *, now: datetime, notice: timedelta, tz: ZoneInfo) -> list[Timer]:
    """The timers `ab` needs: at the moment it lapses (its visits left are written off), and `notice` before it
    (`abonement.ending` with reason `expiring`, see `notice_moment`) unless that moment has passed."""
    lapses = ab.lapses_at(tz)
    if lapses is None or ab.last_day is None:
        return []
    payload: dict[str, Any] = {"account": ab.account, "number": ab.number, "last_day": ab.last_day.isoformat()}
    expire_id, notice_id = timer_ids(ab)
    found = [Timer(id=expire_id, due_at=lapses, kind=TIMER_KIND, rule_id="", key=f"client:{ab.client}",
                   payload={"what": EXPIRE, **payload})]
    told = notice_moment(lapses, notice, tz)
    if told > now:
        found.append(Timer(id=notice_id, due_at=told, kind=TIMER_KIND, rule_id="",
                           key=f"client:{ab.client}", payload={"what": NOTICE, **payload}))
    return found
