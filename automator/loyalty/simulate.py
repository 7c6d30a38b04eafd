"""`automator loyalty simulate` (pure): each program run over the same visit history, as if every client were in
it, through the very mechanics the engine runs (`programs.visited`, `programs.on_timer`, `refunds`), on a history
in memory; then its figures side by side.

The figures, per program (money in roubles with kopecks, exact):
- clients: clients with a visit replayed; revenue: what they paid;
- clients per tier at the end (the tier each holds then);
- points accrued (points and cashback), referral payouts (points for both clients), reversed (refunds), expired
  (lots lapsed by the end with something left), outstanding (what is spendable at the end: the liability);
- discount given: for each visit, the best discount the client had then (the tier held when they came, a joining
  discount still running, the first-visit one) times what they paid: discounts do not add up;
- free visits earned (every Nth);
- cost: discount given + points accrued + referral payouts − reversed − expired, as a share of revenue. No points
  are spent in a replay (spending is the booking system's), so what is outstanding at the end is owed.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from automator.loyalty import programs, refunds, tiers
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import TIMER_KIND, Happening
from automator.loyalty.ledger import Entry, account_kind, balance
from automator.loyalty.replay import History
from automator.loyalty.terms import Program, share
from automator.model import Entity, EntityRef, Event, Timer, Visit
from automator.reports.figures import money, percent
from automator.reports.model import Column, Report, Table

SOURCE = "simulate"


@dataclass
class Figures:
    """One program's figures over the history (minor units; counts)."""

    program: str
    title: str
    clients: int = 0
    revenue: int = 0
    tiers: dict[str, int] = field(default_factory=dict)  # tier -> clients holding it at the end, the program's order
    accrued: int = 0
    referral: int = 0
    reversed: int = 0
    expired: int = 0
    outstanding: int = 0
    discounts: int = 0
    free_visits: int = 0

    @property
    def cost(self) -> int:
        """What the program gives away: discounts, and points that were not reversed or left to lapse."""
        return self.discounts + self.accrued + self.referral - self.reversed - self.expired


def simulate(config: LoyaltyConfig, names: Sequence[str], visits: Iterable[Visit], clients: Mapping[str, Entity],
             phones: Mapping[str, str], end: datetime, tz: ZoneInfo, refunded: Iterable[Event] = ()) -> list[Figures]:
    """Each program of `names` over `visits` (and refund events, `visit.refunded`), up to `end`."""
    timeline: list[Visit | Event] = [*visits, *refunded]
    # A refund after the visit it undoes when both come at one moment; then by id, whatever order they came in.
    timeline.sort(key=lambda item: (item.at, isinstance(item, Event), item.id))
    return [_replay(config.programs[name], timeline, clients, phones, end, tz) for name in names]


def _replay(program: Program, timeline: Sequence[Visit | Event], clients: Mapping[str, Entity],
            phones: Mapping[str, str], end: datetime, tz: ZoneInfo) -> Figures:
    history = History(clients, phones)
    figures = Figures(program.name, program.title or program.name)
    pending: dict[str, Timer] = {}
    due: list[tuple[datetime, str]] = []

    def fire_until(moment: datetime) -> None:
        while due and due[0][0] <= moment:
            at, ident = heapq.heappop(due)
            timer = pending.get(ident)
            if timer is None or timer.due_at != at:
                continue  # moved or cancelled since
            del pending[ident]
            event = Event(id=f"{ident}@{at.isoformat()}", type="timer.fired", at=at,
                          entity=EntityRef.parse(timer.key), source="timer",
                          data={"kind": TIMER_KIND, "payload": dict(timer.payload)})
            found = programs.on_timer(_config(program), history, Happening(event, None, (), at, tz))
            settle(found.entries, found.timers, found.cancel_timers)

    def settle(entries: Iterable[Entry], timers: Iterable[Timer], cancel: Iterable[str]) -> None:
        history.keep(entries)
        for ident in cancel:
            pending.pop(ident, None)
        for timer in timers:
            pending[timer.id] = timer
            heapq.heappush(due, (timer.due_at, timer.id))

    for item in timeline:
        if item.at > end:
            break
        fire_until(item.at)
        if isinstance(item, Event):
            assert item.entity is not None
            found = refunds.refunded(history, item, item.entity.id, item.at)
            settle(found.entries, (), ())
            continue
        client = clients.get(item.client) or Entity(EntityRef("client", item.client), {}, item.at)
        before = history.ledger_of(item.client)
        event = Event(id=f"{SOURCE}:{item.id}", type="visit.completed", at=item.at, entity=client.ref,
                      source=SOURCE, data={"visit": item.id})
        found = programs.visited(program, history, Happening(event, client, (item,), item.at, tz), client, (item,))
        settle(found.entries, found.timers, found.cancel_timers)
        history.add_visit(item)
        figures.revenue += item.amount
        figures.discounts += share(item.amount, _best_discount(program, before, found.entries, item))
    fire_until(end)
    _count(figures, program, history, end)
    return figures


def _config(program: Program) -> LoyaltyConfig:
    return LoyaltyConfig(programs={program.name: program})


def _best_discount(program: Program, before: Sequence[Entry], made: Iterable[Entry], visit: Visit) -> Decimal:
    """The best discount a visit had: the tier held when the client came, or a discount granted running then."""
    best = Decimal(0)
    held = program.tiers.get(tiers.held(before, program.name)) if program.tiers is not None else None
    if held is not None:
        best = held.discount
    for entry in [*before, *made]:
        if entry.client == visit.client and account_kind(entry.account) == "discount" and entry.at <= visit.at:
            until = entry.detail.get("until")
            if until and datetime.fromisoformat(str(until)) >= visit.at:
                best = max(best, Decimal(str(entry.detail.get("percent", 0))))
    return best


def _count(figures: Figures, program: Program, history: History, end: datetime) -> None:
    """The ledger's figures at `end`: what was accrued, reversed, lapsed and is left, the tiers held."""
    figures.clients = sum(1 for visits in history.visits.values() if visits)
    held: dict[str, int] = {t.name: 0 for t in program.tiers.levels} if program.tiers is not None else {}
    for client, rows in history.ledger.items():
        tier = tiers.held(rows, program.name)
        if tier is not None and tier in held:
            held[tier] += 1
        for entry in rows:
            kind = account_kind(entry.account)
            if kind == "points" and entry.kind == "accrue":
                if entry.detail.get("mechanic") == "referral":
                    figures.referral += entry.amount
                else:
                    figures.accrued += entry.amount
            elif kind == "points" and entry.kind == "reverse":
                figures.reversed -= entry.amount
            elif kind == "free" and entry.kind == "grant":
                figures.free_visits += entry.amount
        for name in {e.account for e in rows if account_kind(e.account) == "points"}:
            points = balance(rows, name)
            figures.expired += sum(lot.left for lot in points.lapsed(end))
            figures.outstanding += points.available(end)
    figures.tiers = held


COLUMNS = (Column("program", "Программа"), Column("clients", "Клиенты", "int"), Column("revenue", "Выручка", "money"),
           Column("accrued", "Начислено баллов", "money"), Column("referral", "Реферальные", "money"),
           Column("reversed", "Отменено", "money"), Column("expired", "Сгорело", "money"),
           Column("outstanding", "Остаток (обязательства)", "money"), Column("discounts", "Скидки", "money"),
           Column("free_visits", "Бесплатные визиты", "int"), Column("cost", "Стоимость", "money"),
           Column("cost_share", "Доля выручки, %", "percent"))
TIER_COLUMNS = (Column("program", "Программа"), Column("tier", "Уровень"), Column("clients", "Клиенты", "int"))


def report(figures: Sequence[Figures], start: datetime, end: datetime, generated_at: datetime) -> Report:
    """The figures as a report (`reports.text.render` shows it as a table, CSV or JSON)."""
    rows = tuple({"program": f.program, "clients": f.clients, "revenue": money(f.revenue),
                  "accrued": money(f.accrued), "referral": money(f.referral), "reversed": money(f.reversed),
                  "expired": money(f.expired), "outstanding": money(f.outstanding), "discounts": money(f.discounts),
                  "free_visits": f.free_visits, "cost": money(f.cost), "cost_share": percent(f.cost, f.revenue)}
                 for f in figures)
    tier_rows = tuple({"program": f.program, "tier": tier, "clients": count}
                      for f in figures for tier, count in f.tiers.items())
    return Report(name="loyalty-simulate", title="Программы лояльности на одной истории визитов",
                  period_from=start.date(), period_to=end.date(), generated_at=generated_at,
                  tables=(Table("programs", "Программы", COLUMNS, rows), Table("tiers", "Клиенты по уровням",
                                                                               TIER_COLUMNS, tier_rows)),
                  notes=("Баллы в симуляции не тратятся: остаток — обязательства программы на конец периода.",
                         "Скидки не суммируются: к визиту применяется лучшая (уровень, скидка при вступлении, "
                         "первый визит)."))
