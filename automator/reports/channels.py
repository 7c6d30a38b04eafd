"""The channels report ("сквозная аналитика"): for the leads of a period, by the channel (or campaign, or the
system's own source) of their first or last touch: leads, qualified leads, deals won, revenue, ad spend, cost per
lead, CAC, ROMI and conversion.

The leads are the period's: created in it. What became of them (qualified, won, paid) is counted up to the end
of the period. A client is attributed to the group of their first lead in the period, so no revenue is counted
twice; a lead with no client stands for a client of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from collections.abc import Mapping
from typing import Any

from automator.channels import ChannelMap
from automator.reports.figures import money, per, percent
from automator.reports.model import Chart, Column, Report, Table
from automator.reports.period import Period
from automator.reports.snapshot import Snapshot, literal, visit_text, within

BY = ("channel", "campaign", "source")
TOUCHES = ("first", "last")


@dataclass(frozen=True, slots=True)
class Group:
    """One group's figures, in integer minor units; `spend` None when no spend was imported for it."""

    channel: str | None
    campaign: str | None
    leads: int = 0
    qualified: int = 0
    won: int = 0
    deal_revenue: int = 0
    visit_revenue: int = 0
    revenue: int = 0
    payers: int = 0
    spend: int | None = None


def read(snapshot: Snapshot, period: Period, touch: str = "first", prefix: str = "ch_",
         visits: str | None = None, *, seen_before: str | None = None, lean: bool = False) -> None:
    """Load what the report reads: the period's leads, the spend of its days, the period's visits and who had
    visited before it. A caller that has loaded the visits passes their DuckDB table `visits` (client, visit_at,
    amount) and may pass `seen_before`, a DuckDB query of the clients seen before the period cheaper than a scan.
    `lean`: only what spend, payers and revenue by channel need (qualified, campaign and source left empty), as
    retention's CAC does."""
    lo, hi = period.start_at, period.end_at

    def unless_lean(column: str, name: str) -> str:
        return f"null as {name}" if lean else f"{column} as {name}"

    snapshot.read(f"{prefix}leads", "leads", {
        "id": "text", "client": "text", "created_at": "int", unless_lean("qualified_at", "qualified_at"): "int",
        "closed_at": "int", "outcome": "text", "amount": "int", f"{touch}_channel as channel": "text",
        unless_lean(f"{touch}_campaign", "campaign"): "text", unless_lean("raw_source", "raw_source"): "text"},
        within("created_at", lo, hi, period.days))
    snapshot.read(f"{prefix}spend", "spend", {"channel": "text", "campaign": "text", "amount": "int"},
                  f"day >= {literal(period.start.isoformat())} and day <= {literal(period.end.isoformat())}")
    # The period's visits, and who had visited before it: whether a lead's client is new needs the whole history,
    # but only one row per client, which SQLite reads off its index on client and time (a covering index scan).
    if visits is None:
        snapshot.read(f"{prefix}visits", "visits", {"client": "text", "at": "moment",
                                                    "coalesce(amount, 0) as amount": "int"},
                      within("at", visit_text(lo), visit_text(hi), period.days))
        snapshot.read(f"{prefix}seen_before", "visits", {"client": "text"},
                      f"at < {literal(visit_text(lo))} group by client")
    else:
        snapshot.run(f'create or replace view {prefix}visits as select client, visit_at as "at", amount '
                     f"from {visits} where visit_at >= {lo} and visit_at < {hi}")
        before = seen_before or f"select distinct client from {visits} where visit_at < {lo}"
        snapshot.run(f"create or replace view {prefix}seen_before as {before}")
    snapshot.run(f"create or replace table {prefix}bounds as select {lo}::bigint as lo, {hi}::bigint as hi")


def groups(snapshot: Snapshot, by: str = "channel", prefix: str = "ch_") -> list[Group]:
    """Each group's figures from what `read()` loaded; a group with spend and no leads is there too."""
    k1, k2 = {"channel": ("channel", "''"), "campaign": ("channel", "coalesce(campaign, '')"),
              "source": ("raw_source", "''")}[by]
    p = prefix
    # What became of a lead is counted up to the end of the period (`hi`): a past period's report stays as it was.
    hi = snapshot.value(f"select max(hi) from {p}bounds")
    snapshot.run(f"""create or replace table {p}l as
        select *, coalesce(client, id) as who, {k1} as k1, {k2} as k2,
               coalesce(outcome = 'won' and coalesce(closed_at, created_at) < {hi}, false) as won_by_end,
               coalesce(qualified_at < {hi}, false)
                 or coalesce(outcome = 'won' and coalesce(closed_at, created_at) < {hi}, false) as qualified
        from {p}leads""")
    snapshot.run(f"""create or replace table {p}att as
        select who, arg_min(k1, (created_at, id)) as k1, arg_min(k2, (created_at, id)) as k2,
               min(created_at) as since, bool_or(won_by_end) as won,
               bool_or(won_by_end and coalesce(amount, 0) > 0) as sold
        from {p}l group by who""")
    snapshot.run(f"""create or replace table {p}paid as
        select a.who, a.k1, a.k2, a.won, a.sold,
               coalesce(sum(v.amount) filter (where v.at >= a.since), 0) as visits_after,
               coalesce(bool_or(v.at < a.since), false) or b.client is not null as seen_before
        from {p}att a left join {p}visits v on v.client = a.who left join {p}seen_before b on b.client = a.who
        group by a.who, a.k1, a.k2, a.won, a.sold, b.client""")
    rows = snapshot.rows(f"""
        with leads as (
            select k1, k2, count(*) as leads, count(*) filter (where qualified) as qualified,
                   count(*) filter (where won_by_end) as won,
                   coalesce(sum(amount) filter (where won_by_end), 0)::bigint as deal_revenue
            from {p}l group by k1, k2),
        clients as (
            select k1, k2, sum(visits_after)::bigint as visit_revenue,
                   sum(visits_after) filter (where not sold)::bigint as visits_of_dealless,
                   count(*) filter (where not seen_before and (won or visits_after > 0)) as payers
            from {p}paid group by k1, k2),
        spend as (
            select channel as k1, {"coalesce(campaign, '')" if by == "campaign" else "''"} as k2,
                   sum(amount)::bigint as spend
            from {p}spend where {"true" if by != "source" else "false"} group by 1, 2)
        select coalesce(l.k1, s.k1) as k1, coalesce(l.k2, s.k2) as k2, coalesce(l.leads, 0) as leads,
               coalesce(l.qualified, 0) as qualified, coalesce(l.won, 0) as won,
               coalesce(l.deal_revenue, 0) as deal_revenue, coalesce(c.visit_revenue, 0) as visit_revenue,
               coalesce(c.visits_of_dealless, 0) as visits_of_dealless, coalesce(c.payers, 0) as payers,
               s.spend
        from leads l
        left join clients c on c.k1 is not distinct from l.k1 and c.k2 is not distinct from l.k2
        full join spend s on s.k1 is not distinct from l.k1 and s.k2 is not distinct from l.k2
        order by leads desc, s.spend desc nulls last, k1 nulls last, k2""")
    return [Group(channel=r["k1"], campaign=r["k2"] or None, leads=r["leads"], qualified=r["qualified"],
                  won=r["won"], deal_revenue=r["deal_revenue"], visit_revenue=r["visit_revenue"],
                  revenue=r["deal_revenue"] + r["visits_of_dealless"], payers=r["payers"], spend=r["spend"])
            for r in rows]


def total_spend(snapshot: Snapshot, prefix: str = "ch_") -> int | None:
    """All spend of the period (None when none was imported)."""
    value = snapshot.value(f"select sum(amount)::bigint from {prefix}spend")
    return None if value is None else int(value)


COLUMNS = (
    Column("leads", "Лиды", "int", "лиды и сделки, созданные в периоде"),
    Column("qualified", "Квалифицированные", "int",
           "из них к концу периода дошли до этапа, отмеченного qualified: true (или дальше), или выиграны"),
    Column("won", "Сделки", "int", "из них выиграны к концу периода"),
    Column("deal_revenue", "Выручка сделок", "money", "сумма выигранных сделок"),
    Column("visit_revenue", "Выручка визитов", "money",
           "сумма визитов клиентов этих лидов от их первого лида в периоде до конца периода (клиент относится "
           "к группе своего первого лида в периоде)"),
    Column("revenue", "Выручка", "money",
           "выручка сделок плюс выручка визитов клиентов без выигранной сделки с суммой (продажа, закрытая "
           "сделкой, не считается дважды)"),
    Column("spend", "Расход", "money", "расходы на рекламу за дни периода (automator spend import / pull)"),
    Column("cpl", "Цена лида", "money", "расход / лиды"),
    Column("payers", "Новые платящие", "int",
           "клиенты этих лидов без визитов до лида, которые заплатили после него: выигранная сделка или "
           "визит с суммой"),
    Column("cac", "CAC", "money", "расход / новые платящие клиенты"),
    Column("romi", "ROMI, %", "percent", "(выручка − расход) / расход × 100"),
    Column("conversion", "Конверсия в сделку, %", "percent", "сделки / лиды × 100"),
)


def report(snapshot: Snapshot, period: Period, options: Mapping[str, Any], channels: ChannelMap,
           now: datetime) -> Report:
    """The channels report of `period`; options: `by` (channel | campaign | source), `touch` (first | last)."""
    by = options.get("by") or "channel"
    touch = options.get("touch") or "first"
    read(snapshot, period, touch)
    found = groups(snapshot, by)
    spent = total_spend(snapshot)
    head: tuple[Column, ...] = (Column("channel", "Код", "text", "канал (имя из channels: automator.yaml)"),
                                Column("title", "Канал", "text", "название канала"))
    if by == "campaign":
        head += (Column("campaign", "Кампания", "text", "utm_campaign / кампания касания"),)
    elif by == "source":
        head = (Column("title", "Источник", "text", "источник в самой системе (SOURCE_ID Битрикс24, source amoCRM, "
                                                       "YCLIENTS)"),)
    rows = tuple(_row(g, channels, by) for g in found)
    total = _figures(Group(None, None, leads=sum(g.leads for g in found), qualified=sum(g.qualified for g in found),
                           won=sum(g.won for g in found), deal_revenue=sum(g.deal_revenue for g in found),
                           visit_revenue=sum(g.visit_revenue for g in found), revenue=sum(g.revenue for g in found),
                           payers=sum(g.payers for g in found), spend=spent))
    total = {"channel": "", "title": "Итого", **total}
    notes = []
    unspent = [channels.title(g.channel) for g in found if g.leads and g.spend is None and g.channel]
    if by == "source":
        notes.append("Расходы ведутся по каналам, а не по источникам систем: по источникам цена лида, CAC и ROMI "
                     "не считаются (--by channel показывает их).")
    elif spent is None:
        notes.append("За период не загружено ни одного расхода: цена лида, CAC и ROMI не показаны "
                     "(automator spend import ФАЙЛ.csv).")
    elif unspent:
        notes.append(f"Нет расходов за период для: {', '.join(dict.fromkeys(unspent))} — их цена лида, CAC и ROMI "
                     "не показаны.")
    if any(g.channel is None for g in found if g.leads):
        notes.append("«не указан»: лиды, для которых ни система, ни правило (set_source) не назвали канал.")
    if not found:
        notes.append("За период нет ни лидов, ни расходов.")
    table = Table("channels", "Каналы" if by != "campaign" else "Кампании", head + COLUMNS, rows, total)
    headline = (("Лиды", total["leads"], "int"), ("Расход", total["spend"], "money"),
                ("Выручка", total["revenue"], "money"), ("CAC", total["cac"], "money"),
                ("ROMI, %", total["romi"], "percent"))
    charts = (Chart("romi", "ROMI по каналам, %", "bars", "channels", "title", ("romi",)),
              Chart("leads_spend", "Лиды и расход", "bars", "channels", "title", ("leads", "spend")))
    touch_word = "первому" if touch == "first" else "последнему"
    return Report("channels", f"Каналы: откуда приходят и окупаются клиенты (по {touch_word} касанию)",
                  period.start, period.end, now, (table,), charts, headline, {"by": by, "touch": touch},
                  notes=tuple(notes))


def _row(group: Group, channels: ChannelMap, by: str) -> dict[str, Any]:
    figures = _figures(group if by != "source" else replace(group, spend=None))
    if by == "source":
        return {"channel": group.channel, "title": group.channel or "не указан", **figures}
    row = {"channel": group.channel, "title": channels.title(group.channel), **figures}
    if by == "campaign":
        row["campaign"] = group.campaign
    return row


def _figures(g: Group) -> dict[str, Any]:
    spend = g.spend
    return {"leads": g.leads, "qualified": g.qualified, "won": g.won, "deal_revenue": money(g.deal_revenue),
            "visit_revenue": money(g.visit_revenue), "revenue": money(g.revenue), "spend": money(spend),
            "cpl": per(spend, g.leads), "payers": g.payers, "cac": per(spend, g.payers),
            "romi": percent(g.revenue - spend, spend) if spend else None,
            "conversion": percent(g.won, g.leads)}
