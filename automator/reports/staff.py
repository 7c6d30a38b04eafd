"""The staff report: per employee (or per branch) in a period, bookings, visits, no-shows, revenue, average check,
reviews and NPS. A review that names no employee goes to the one of the client's latest visit before it.
"""
from __future__ import annotations

from datetime import datetime
from collections.abc import Mapping
from typing import Any

from automator.channels import ChannelMap
from automator.reports.figures import money, per, percent
from automator.reports.model import Chart, Column, Report, Table
from automator.reports.period import Period
from automator.reports.snapshot import Snapshot, literal, visit_text, within

BY = ("staff", "branch")


def read(snapshot: Snapshot, period: Period) -> None:
    """Load the period's bookings (by start), visits and reviews, and the visits before each review's client's
    review (for reviews that name no employee)."""
    lo, hi = period.start_at, period.end_at
    lo_text, hi_text = visit_text(lo), visit_text(hi)
    days = period.days
    snapshot.read("st_bookings", "bookings", {"staff": "text", "branch": "text", "status": "text"},
                  within("starts_at", lo, hi, days))
    snapshot.read("st_reviews", "reviews", {"id": "text", "client": "text", "at as reviewed_at": "int",
                                            "score": "int", "staff": "text", "branch": "text"},
                  within("at", lo, hi, days))
    visit = {"client": "text", "at as visit_at": "moment", "coalesce(amount, 0) as amount": "int", "staff": "text",
             "branch": "text"}
    snapshot.read("st_visits", "visits", visit, within("at", visit_text(lo), visit_text(hi), days))
    # The visits before the period of the clients whose review names no employee or branch (through the index on
    # client and time).
    snapshot.read("st_visits_before", "visits", visit,
                  f"at < {literal(visit_text(lo))} and client in (select client from reviews where "
                  f"{within('at', lo, hi, days)} and (staff is null or branch is null))")
    snapshot.run("insert into st_visits select * from st_visits_before")


def report(snapshot: Snapshot, period: Period, options: Mapping[str, Any], channels: ChannelMap,
           now: datetime) -> Report:
    """The staff report; options: `by` (staff | branch)."""
    by = options.get("by") or "staff"
    read(snapshot, period)
    lo, hi = period.start_at, period.end_at
    rows = snapshot.rows(f"""
        with reviews as (
            select r.id, r.score, coalesce(r.{by}, v.{by}) as who
            from st_reviews r asof left join
                 (select * from st_visits where {by} is not null) v
                 on v.client = r.client and v.visit_at <= r.reviewed_at),
        b as (select {by} as who, count(*) as bookings, count(*) filter (where status = 'no_show') as no_shows
              from st_bookings group by 1),
        v as (select {by} as who, count(*) as visits, count(*) filter (where amount > 0) as paid,
                     sum(amount)::bigint as revenue
              from st_visits where visit_at >= {lo} and visit_at < {hi} group by 1),
        r as (select who, count(*) as reviews, count(*) filter (where score >= 9) as promoters,
                     count(*) filter (where score <= 6) as detractors
              from reviews group by 1),
        k as (select who from b union select who from v union select who from r)
        select k.who, coalesce(b.bookings, 0) as bookings, coalesce(b.no_shows, 0) as no_shows,
               coalesce(v.visits, 0) as visits, coalesce(v.paid, 0) as paid, coalesce(v.revenue, 0) as revenue,
               coalesce(r.reviews, 0) as reviews, coalesce(r.promoters, 0) as promoters,
               coalesce(r.detractors, 0) as detractors
        from k left join b on b.who is not distinct from k.who left join v on v.who is not distinct from k.who
        left join r on r.who is not distinct from k.who
        order by revenue desc, visits desc, k.who nulls last""")
    total = {key: sum(r[key] for r in rows) for key in ("bookings", "no_shows", "visits", "paid", "revenue",
                                                         "reviews", "promoters", "detractors")}
    table = Table("staff", "Сотрудники" if by == "staff" else "Филиалы", (
        Column("who", "Сотрудник" if by == "staff" else "Филиал", "text",
               "сотрудник визита или записи" if by == "staff" else "филиал"),
        Column("bookings", "Записи", "int", "записи с началом в периоде (любого статуса)"),
        Column("no_shows", "Неявки", "int", "из них со статусом no_show"),
        Column("no_show_share", "Неявки, %", "percent", "неявки / записи × 100"),
        Column("visits", "Визиты", "int", "визиты и покупки периода"),
        Column("revenue", "Выручка", "money", "сумма визитов"),
        Column("check", "Средний чек", "money", "выручка / визиты с суммой больше нуля"),
        Column("reviews", "Отзывы", "int", "оценки периода; без сотрудника — сотрудник последнего визита клиента "
                                           "до отзыва"),
        Column("nps", "NPS", "percent", "доля оценок 9–10 минус доля оценок 0–6, в процентах")),
        tuple({"who": r["who"] or "не указан", **_figures(r)} for r in rows),
        {"who": "Итого", **_figures(total)})
    notes = () if rows else ("За период нет ни записей, ни визитов, ни отзывов.",)
    figures = _figures(total)
    headline = (("Визиты", total["visits"], "int"), ("Выручка", figures["revenue"], "money"),
                ("Средний чек", figures["check"], "money"), ("NPS", figures["nps"], "percent"))
    charts = (Chart("revenue", "Выручка", "bars", "staff", "who", ("revenue",)),
              Chart("visits", "Визиты и неявки", "bars", "staff", "who", ("visits", "no_shows")))
    return Report("staff", "Сотрудники: загрузка и результат" if by == "staff" else "Филиалы: загрузка и результат",
                  period.start, period.end, now, (table,), charts, headline, {"by": by}, notes=notes)


def _figures(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"bookings": r["bookings"], "no_shows": r["no_shows"], "no_show_share": percent(r["no_shows"], r["bookings"]),
            "visits": r["visits"], "revenue": money(r["revenue"]), "check": per(r["revenue"], r["paid"]),
            "reviews": r["reviews"], "nps": percent(r["promoters"] - r["detractors"], r["reviews"])}
