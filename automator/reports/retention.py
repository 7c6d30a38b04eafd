"""The retention report: who comes back. Of the clients whose first visit was in the period, the share who came
again within 30, 60 and 90 days, by their first channel (own channels and aggregators apart); days between visits;
how far ahead clients book; visits, revenue and average check per month and per day; LTV and LTV/CAC by channel;
repeat and lost clients; and a cohort table (clients by the month of their first visit × months since).

A visit is a row of the client history (a visit or a purchase). Returns are counted with every visit the store has,
but only for clients whose window has passed by now (a client who first came 10 days ago cannot yet have "returned
within 30 days" or not). Everything else is counted up to the end of the period.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from collections.abc import Mapping
from typing import Any

from automator.channels import ChannelMap
import automator.reports.channels as acquisition
from automator.reports.figures import DAY, days, money, per, percent, rounded
from automator.reports.model import Chart, Column, Report, Table
from automator.reports.period import Period
from automator.reports.snapshot import Snapshot, literal, local_day, within

WINDOWS = (30, 60, 90)
LOST_DAYS = 90
COHORT_MONTHS = 12


def read(snapshot: Snapshot, period: Period) -> None:
    """Load every visit (client, moment, amount), each client's first channel and the period's bookings."""
    snapshot.read("rt_visits", "visits", {"client": "text", "at as visit_at": "moment",
                                          "coalesce(amount, 0) as amount": "int"}, "client is not null")
    snapshot.read("rt_channels", "client_channels", {"client": "text", "channel": "text"})
    snapshot.read("rt_bookings", "bookings", {"created_at": "int", "starts_at": "int"},
                  within("created_at", period.start_at, period.end_at, period.days))


def report(snapshot: Snapshot, period: Period, options: Mapping[str, Any], channels: ChannelMap,
           now: datetime) -> Report:
    """The retention report; options: `lost_days` (a client with no visit for this many days is lost; 90)."""
    lost_days = int(options.get("lost_days") or LOST_DAYS)
    read(snapshot, period)
    lo, hi, at_now = period.start_at, period.end_at, int(now.timestamp())
    # One pass over every visit makes each client's row; the channel joins the 1 row a client, not each visit.
    snapshot.run(f"""create or replace table rt_clients as
        select v.*, {_day(period, "v.first_at")} as first_day, c.channel
        from (select client, min(visit_at) as first_at,
                     max(visit_at) filter (where visit_at < {lo}) as before_lo,
                     max(visit_at) filter (where visit_at < {hi}) as last_at,
                     count(*) filter (where visit_at < {hi}) as visits,
                     coalesce(sum(amount) filter (where visit_at < {hi}), 0)::bigint as revenue
              from rt_visits group by client) v
        left join rt_channels c using (client)""")
    returns = ", ".join(
        f"""bool_or(v.visit_at > n.first_at and v.visit_at <= n.first_at + {w * DAY}) as r{w},
            n.first_at + {w * DAY} <= {at_now} as due{w}""" for w in WINDOWS)
    snapshot.run(f"""create or replace table rt_new as
        select n.client, n.channel, {returns}
        from rt_clients n join rt_visits v using (client)
        where n.first_at >= {lo} and n.first_at < {hi} and v.visit_at >= {lo} group by all""")
    by_channel = snapshot.rows(f"""
        with new as (select channel, count(*) as new,
                            {", ".join(f"count(*) filter (where due{w}) as due{w}, "
                                       f"count(*) filter (where due{w} and r{w}) as back{w}" for w in WINDOWS)}
                     from rt_new group by channel),
             all_clients as (select channel, count(*) as clients, sum(revenue)::bigint as revenue
                             from rt_clients where first_at < {hi} group by channel)
        select coalesce(a.channel, n.channel) as channel, coalesce(n.new, 0) as new,
               {", ".join(f"coalesce(n.due{w}, 0) as due{w}, coalesce(n.back{w}, 0) as back{w}" for w in WINDOWS)},
               coalesce(a.clients, 0) as clients, coalesce(a.revenue, 0) as revenue
        from all_clients a full join new n on a.channel is not distinct from n.channel
        order by new desc, clients desc, channel nulls last""")
    acquisition.read(snapshot, period, "first", prefix="rt_ch_", visits="rt_visits", lean=True,
                     seen_before=f"select client from rt_clients where first_at < {lo}")
    cac = {g.channel: (g.spend, g.payers) for g in acquisition.groups(snapshot, "channel", prefix="rt_ch_")}
    channel_rows = []
    for r in sorted(by_channel, key=lambda r: channels.is_aggregator(r["channel"])):
        spend, payers = cac.get(r["channel"], (None, 0))
        ltv = per(r["revenue"], r["clients"])
        cost = per(spend, payers)
        channel_rows.append({
            "channel": r["channel"], "title": channels.title(r["channel"]),
            "group": "агрегатор" if channels.is_aggregator(r["channel"]) else "свой",
            "new": r["new"], **{f"r{w}": percent(r[f"back{w}"], r[f"due{w}"]) for w in WINDOWS},
            "clients": r["clients"], "ltv": ltv, "cac": cost,
            "ltv_cac": rounded(int(ltv * 100), int(cost * 100), 1) if ltv is not None and cost else None})
    group_rows, curve_rows = _groups(by_channel, channels)
    gaps = snapshot.rows(f"""
        select quantile_disc(gap, 0.5) as median, quantile_disc(gap, 0.9) as p90 from (
            select v.visit_at - coalesce(lag(v.visit_at) over (partition by v.client order by v.visit_at),
                                         c.before_lo) as gap
            from rt_visits v join rt_clients c using (client) where v.visit_at >= {lo} and v.visit_at < {hi})
        where gap > 0""")[0]  # the period's visits, the first of each after the client's last before the period
    lead = snapshot.rows("""select quantile_disc(starts_at - created_at, 0.5) as median,
                                   quantile_disc(starts_at - created_at, 0.9) as p90, count(*) as bookings
                            from rt_bookings where starts_at >= created_at""")[0]
    totals = snapshot.rows(f"""
        select count(*) as visits, count(*) filter (where amount > 0) as paid,
               coalesce(sum(amount), 0)::bigint as revenue, count(distinct client) as clients
        from rt_visits where visit_at >= {lo} and visit_at < {hi}""")[0]
    kept = snapshot.rows(f"""
        select count(*) filter (where first_at < {hi}) as clients,
               count(*) filter (where visits >= 2 and last_at >= {lo}) as repeat,
               count(*) filter (where last_at >= {lo}) as active,
               count(*) filter (where last_at < {hi} - {lost_days * DAY}) as lost
        from rt_clients""")[0]
    summary = {"new": sum(r["new"] for r in by_channel), "clients": totals["clients"], "visits": totals["visits"],
               "revenue": money(totals["revenue"]), "check": per(totals["revenue"], totals["paid"]),
               "repeat": kept["repeat"], "repeat_share": percent(kept["repeat"], kept["active"]),
               "lost": kept["lost"], "gap_median": days(gaps["median"]), "gap_p90": days(gaps["p90"]),
               "lead_median": days(lead["median"]), "lead_p90": days(lead["p90"])}
    months = _months(snapshot, period)
    daily = _days(snapshot, period)
    cohorts = _cohorts(snapshot, period, now)
    tables = (
        Table("channels", "Возвращаемость по первому каналу", (
            Column("channel", "Код", "text", "первый канал клиента (client_channels)"),
            Column("title", "Канал", "text", "название канала"),
            Column("group", "Тип", "text", "свой канал или агрегатор (aggregator: true в channels:)"),
            Column("new", "Новые клиенты", "int", "клиенты, чей первый визит был в периоде"),
            *(Column(f"r{w}", f"Вернулись за {w} дн., %", "percent",
                     f"из новых клиентов, у которых прошло {w} дней с первого визита, доля пришедших снова в эти "
                     f"{w} дней") for w in WINDOWS),
            Column("clients", "Клиенты всего", "int", "клиенты с первым визитом до конца периода"),
            Column("ltv", "LTV", "money", "выручка клиентов канала за всю историю до конца периода / клиенты"),
            Column("cac", "CAC", "money", "как в отчёте channels: расход периода / новые платящие клиенты"),
            Column("ltv_cac", "LTV/CAC", "ratio", "LTV / CAC")), tuple(channel_rows)),
        Table("groups", "Свои каналы и агрегаторы", (
            Column("group", "Группа", "text", "свои каналы, агрегаторы, канал не указан"),
            Column("new", "Новые клиенты", "int", "клиенты, чей первый визит был в периоде"),
            *(Column(f"r{w}", f"Вернулись за {w} дн., %", "percent", f"как в таблице каналов, за {w} дней")
              for w in WINDOWS)), group_rows),
        Table("summary", "Клиенты за период", (
            Column("new", "Новые", "int", "первый визит в периоде"),
            Column("clients", "Приходили", "int", "клиенты с визитом в периоде"),
            Column("visits", "Визиты", "int", "визиты и покупки в периоде"),
            Column("revenue", "Выручка", "money", "сумма визитов и покупок периода"),
            Column("check", "Средний чек", "money", "выручка / визиты с суммой больше нуля"),
            Column("repeat", "Повторные", "int", "клиенты с визитом в периоде и 2+ визитами к его концу"),
            Column("repeat_share", "Повторные, %", "percent", "повторные / приходившие × 100"),
            Column("lost", f"Потерянные (нет {lost_days}+ дн.)", "int",
                   f"клиенты, чей последний визит был больше {lost_days} дней до конца периода"),
            Column("gap_median", "Между визитами, медиана, дн.", "days",
                   "дни от предыдущего визита клиента до визита в периоде, медиана"),
            Column("gap_p90", "Между визитами, p90, дн.", "days", "то же, 90-й перцентиль"),
            Column("lead_median", "Запись заранее, медиана, дн.", "days",
                   "записи, созданные в периоде: от создания до начала, медиана"),
            Column("lead_p90", "Запись заранее, p90, дн.", "days", "то же, 90-й перцентиль")), (summary,)),
        Table("months", "По месяцам", (
            Column("month", "Месяц", "month", "месяц периода"),
            Column("clients", "Клиенты", "int", "клиенты с визитом в месяце"),
            Column("visits", "Визиты", "int", "визиты и покупки"),
            Column("revenue", "Выручка", "money", "сумма визитов"),
            Column("visits_per_client", "Визитов на клиента", "ratio", "визиты / клиенты, два знака"),
            Column("revenue_per_client", "Выручка на клиента", "money", "выручка / клиенты"),
            Column("check", "Средний чек", "money", "выручка / визиты с суммой")), months),
        Table("days", "Выручка по дням", (
            Column("day", "День", "date", "день периода"),
            Column("visits", "Визиты", "int", "визиты и покупки дня"),
            Column("revenue", "Выручка", "money", "сумма визитов дня")), daily),
        Table("cohorts", "Когорты: доля вернувшихся по месяцам", (
            Column("cohort", "Месяц первого визита", "month", "месяц первого визита клиента"),
            Column("clients", "Клиенты", "int", "клиенты когорты"),
            *(Column(f"m{k}", f"+{k} мес., %", "percent",
                     "доля клиентов когорты с визитом в этом месяце после первого" if k else
                     "месяц первого визита: 100 %") for k in range(COHORT_MONTHS))), cohorts),
        Table("curve", "Кривая возвращаемости", (
            Column("group", "Группа", "text", "все, свои каналы, агрегаторы"),
            Column("days", "Дней", "int", "окно после первого визита"),
            Column("share", "Вернулись, %", "percent", "доля новых клиентов, вернувшихся за это окно")), curve_rows),
    )
    notes = []
    if any(r[f"new"] and not r[f"due{WINDOWS[-1]}"] for r in by_channel):
        notes.append("У части новых клиентов ещё не прошло 30/60/90 дней: они не входят в долю вернувшихся за "
                     "это окно (где не прошло ни у кого — «—»).")
    if not totals["visits"]:
        notes.append("За период нет визитов.")
    headline = (("Новые клиенты", summary["new"], "int"),
                ("Вернулись за 30 дн., %", next((r["r30"] for r in group_rows if r["group"] == "Все"), None),
                 "percent"),
                ("Выручка", summary["revenue"], "money"), ("Средний чек", summary["check"], "money"),
                ("Повторные", summary["repeat"], "int"), ("Потерянные", summary["lost"], "int"))
    charts = (Chart("curve", "Возвращаемость новых клиентов", "line", "curve", "days", ("share",), "group"),
              Chart("cohorts", "Когорты", "cohort", "cohorts", "cohort",
                    tuple(f"m{k}" for k in range(COHORT_MONTHS))),
              Chart("revenue", "Выручка по дням", "line", "days", "day", ("revenue",)))
    return Report("retention", "Возвращаемость: кто приходит снова", period.start, period.end, now, tables, charts,
                  headline, {"lost_days": lost_days}, notes=tuple(notes))


def _groups(by_channel: list[dict[str, Any]], channels: ChannelMap) -> tuple[tuple[dict[str, Any], ...],
                                                                               tuple[dict[str, Any], ...]]:
    def kind(channel: str | None) -> str:
        return "Агрегаторы" if channels.is_aggregator(channel) else "Свои каналы" if channel else "Канал не указан"

    names = ("Все", "Свои каналы", "Агрегаторы", "Канал не указан")
    sums = {name: {k: 0 for k in ("new", *(f"due{w}" for w in WINDOWS), *(f"back{w}" for w in WINDOWS))}
            for name in names}
    for r in by_channel:
        for name in ("Все", kind(r["channel"])):
            for key in sums[name]:
                sums[name][key] += r[key]
    rows = tuple({"group": name, "new": s["new"], **{f"r{w}": percent(s[f"back{w}"], s[f"due{w}"]) for w in WINDOWS}}
                 for name, s in sums.items() if name == "Все" or s["new"])
    curve = tuple({"group": r["group"], "days": w, "share": r[f"r{w}"]} for r in rows for w in WINDOWS)
    return rows, curve


def _months(snapshot: Snapshot, period: Period) -> tuple[dict[str, Any], ...]:
    found = {r["month"]: r for r in snapshot.rows(f"""
        select strftime({_day(period, "visit_at")}, '%Y-%m') as month, count(distinct client) as clients, count(*) as visits,
               count(*) filter (where amount > 0) as paid, coalesce(sum(amount), 0)::bigint as revenue
        from rt_visits where visit_at >= {period.start_at} and visit_at < {period.end_at} group by 1""")}
    rows = []
    for month in _month_names(period.start, period.end):
        r = found.get(month, {"clients": 0, "visits": 0, "paid": 0, "revenue": 0})
        rows.append({"month": month, "clients": r["clients"], "visits": r["visits"], "revenue": money(r["revenue"]),
                     "visits_per_client": rounded(r["visits"], r["clients"], 2),
                     "revenue_per_client": per(r["revenue"], r["clients"]), "check": per(r["revenue"], r["paid"])})
    return tuple(rows)


def _days(snapshot: Snapshot, period: Period) -> tuple[dict[str, Any], ...]:
    found = {r["day"]: r for r in snapshot.rows(f"""
        select {_day(period, "visit_at")} as day, count(*) as visits, coalesce(sum(amount), 0)::bigint as revenue
        from rt_visits where visit_at >= {period.start_at} and visit_at < {period.end_at} group by 1""")}
    return tuple({"day": d, "visits": found.get(d, {}).get("visits", 0),
                  "revenue": money(found.get(d, {}).get("revenue", 0))}
                 for d in (period.start + timedelta(days=n) for n in range(period.days)))


def _cohorts(snapshot: Snapshot, period: Period, now: datetime) -> tuple[dict[str, Any], ...]:
    """The cohorts of the COHORT_MONTHS months up to the period's last; a month after the period (or after now)
    has no figure yet."""
    end = period.end.replace(day=1)
    first = _add_months(end, -(COHORT_MONTHS - 1))
    last_seen = min(end, now.astimezone(period.tz).date().replace(day=1))
    found = snapshot.rows(f"""
        with c as (select client, date_trunc('month', first_day)::date as cohort from rt_clients
                   where first_day >= {literal(first.isoformat())}::date and first_day <= {literal(period.end.isoformat())}::date)
        select c.cohort, datediff('month', c.cohort, date_trunc('month', {_day(period, "v.visit_at")})) as k,
               count(distinct v.client) as n
        from c join rt_visits v using (client)
        where v.visit_at < {period.end_at} group by all""")
    counts: dict[tuple[date, int], int] = {(r["cohort"], r["k"]): r["n"] for r in found}
    rows = []
    cohort = first
    while cohort <= end:
        size = counts.get((cohort, 0), 0)
        if size:
            row: dict[str, Any] = {"cohort": cohort.strftime("%Y-%m"), "clients": size}
            for k in range(COHORT_MONTHS):
                row[f"m{k}"] = percent(counts.get((cohort, k), 0), size) if _add_months(cohort, k) <= last_seen \
                    else None
            rows.append(row)
        cohort = _add_months(cohort, 1)
    return tuple(rows)


def _day(period: Period, column: str) -> str:
    """The local date of `column` over the period and the cohort months before it."""
    return local_day(column, period.tz, min(period.start_at, period.end_at - (COHORT_MONTHS + 1) * 31 * DAY),
                     period.end_at)


def _month_names(start: date, end: date) -> list[str]:
    names, month = [], start.replace(day=1)
    while month <= end:
        names.append(month.strftime("%Y-%m"))
        month = _add_months(month, 1)
    return names


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
