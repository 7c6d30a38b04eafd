"""Each report's figures on the fixed data set (report_sample.py), checked against a hand computation written
out below. Moments are Moscow time; the period is March 2026; medians and p90 are nearest-rank (the ⌈n·p⌉-th
smallest value)."""
from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from automator.reports import ReportError, compute
from automator.reports.model import Report
from report_sample import NOW, PERIOD_FROM, PERIOD_TO, TZ, fill


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill(tmp_path_factory.mktemp("reports") / "automator.db")


def report(store: Path, name: str, **options: Any) -> Report:
    return compute(name, store, start=PERIOD_FROM, end=PERIOD_TO, tz=TZ, now=NOW, **options)


def rows(found: Report, table: str, key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: dict(row) for row in found.table(table).rows}


def test_channels_by_first_touch(store: Path) -> None:
    found = report(store, "channels")
    by = rows(found, "channels", "channel")
    assert list(by) == ["site", "vk", "aggregator"]
    # site: deal:1,2,3,9,12 created in March. Qualified by 31.03: 1 (03-03), 2 (03-04), 12 (03-29). Won by 31.03:
    # deal:1 only (deal:12 is won 02.04). Its clients c1 (first lead deal:1), c2, c3, c10; visits from the lead to
    # 31.03: c1 3000 + 2500, c2 1500 = 7000. Revenue: deals 5000 + visits of clients with no sold deal (c2) 1500.
    # Spend 10000 + 5000 (28.02 is outside). New payers: c2 (c1 visited on 10.02, before its lead) → 1.
    assert by["site"] == {
        "channel": "site", "title": "Сайт", "leads": 5, "qualified": 3, "won": 1, "deal_revenue": D("5000.00"),
        "visit_revenue": D("7000.00"), "revenue": D("6500.00"), "spend": D("15000.00"),
        "cpl": D("3000.00"),      # 15000 / 5
        "payers": 1, "cac": D("15000.00"),
        "romi": D("-56.7"),       # (6500 − 15000) / 15000 = −56.67 %
        "conversion": D("20.0")}  # 1 / 5
    # vk: deal:4, deal:5, lead:crm:6, deal:11 (no client). Won: 4 (3000), 11 (1000, closed 31.03 20:00 Moscow).
    # c4's visit of 16.03 (4000) is after its lead; the one of 20.04 is after the period. Spend 8000 + 2000.
    assert by["vk"] == {
        "channel": "vk", "title": "ВКонтакте", "leads": 4, "qualified": 2, "won": 2, "deal_revenue": D("4000.00"),
        "visit_revenue": D("4000.00"), "revenue": D("4000.00"), "spend": D("10000.00"), "cpl": D("2500.00"),
        "payers": 2, "cac": D("5000.00"), "romi": D("-60.0"), "conversion": D("50.0")}
    # aggregator: deal:7 (won, no amount: its client's visits count), deal:8. c7 2000 + 2000, c8 1500. No spend.
    assert by["aggregator"] == {
        "channel": "aggregator", "title": "Агрегаторы", "leads": 2, "qualified": 2, "won": 1,
        "deal_revenue": D("0.00"), "visit_revenue": D("5500.00"), "revenue": D("5500.00"), "spend": None,
        "cpl": None, "payers": 2, "cac": None, "romi": None, "conversion": D("50.0")}
    total = dict(found.table("channels").total or {})
    assert total["leads"] == 11 and total["spend"] == D("25000.00") and total["revenue"] == D("16000.00")
    assert total["cpl"] == D("2272.73")         # 25000 / 11 = 2272.727…
    assert total["cac"] == D("5000.00")         # 25000 / 5 payers
    assert total["romi"] == D("-36.0")          # (16000 − 25000) / 25000
    assert total["conversion"] == D("36.4")     # 4 / 11
    assert found.notes == ("Нет расходов за период для: Агрегаторы — их цена лида, CAC и ROMI не показаны.",)
    assert dict((t, v) for t, v, _ in found.headline)["ROMI, %"] == D("-36.0")


def test_channels_by_last_touch_and_by_campaign(store: Path) -> None:
    last = rows(report(store, "channels", touch="last"), "channels", "channel")
    # deal:9 (c1's second lead) came back through VK: 5 leads for vk, 4 for site; c1 stays with site (its first lead)
    assert (last["vk"]["leads"], last["vk"]["cpl"], last["vk"]["conversion"]) == (5, D("2000.00"), D("40.0"))
    assert (last["site"]["leads"], last["site"]["cpl"], last["site"]["revenue"]) == (4, D("3750.00"), D("6500.00"))
    campaigns = {(r["channel"], r["campaign"]): r for r in report(store, "channels", by="campaign")
                 .table("channels").rows}
    assert campaigns[("vk", "spring")]["leads"] == 3 and campaigns[("vk", "spring")]["cpl"] == D("2666.67")
    assert campaigns[("vk", None)]["leads"] == 1 and campaigns[("vk", None)]["spend"] == D("2000.00")
    sources = rows(report(store, "channels", by="source"), "channels", "title")
    assert sources["WEB"]["leads"] == 5 and sources["prodoctorov"]["spend"] is None


def test_funnel(store: Path) -> None:
    found = report(store, "funnel")
    stages = rows(found, "stages", "stage")
    assert list(stages) == ["new", "in_progress", "won", "lost"]
    # 10 records of March in first_sales (lead:crm:6 has no pipeline). Time in `new` until the next move: 1 d
    # (deal:1, 4, 5, 8, 12), 6 h (deal:2), 2 h (deal:7, 11); deal:3 and 9 are still there. Sorted, n = 8: the 4th
    # is the median (1 d), the 8th (⌈7.2⌉) the p90 (1 d).
    assert {k: stages["new"][k] for k in ("entries", "reached", "conversion_next", "conversion_first", "dropoff",
                                          "median_days", "p90_days")} == {
        "entries": 10, "reached": 10, "conversion_next": D("70.0"), "conversion_first": D("100.0"), "dropoff": 3,
        "median_days": D("1.0"), "p90_days": D("1.0")}
    # in_progress: deal:1 2 d, 2 2 d, 4 3 d, 7 1 d, 11 32 h (deal:8 and 12 are still in it by 31.03): sorted
    # 1, 1.33, 2, 2, 3 → median the 3rd (2 d), p90 the 5th (3 d). Reached won: 4 of 7 = 57.1 %.
    assert {k: stages["in_progress"][k] for k in ("entries", "reached", "conversion_next", "conversion_first",
                                                  "dropoff", "median_days", "p90_days")} == {
        "entries": 7, "reached": 7, "conversion_next": D("57.1"), "conversion_first": D("70.0"), "dropoff": 3,
        "median_days": D("2.0"), "p90_days": D("3.0")}
    assert (stages["won"]["reached"], stages["won"]["conversion_first"]) == (4, D("40.0"))
    assert (stages["lost"]["entries"], stages["lost"]["reached"]) == (2, None)
    # Won by 31.03: deal:1 3 d, 4 4 d, 7 26 h, 11 34 h → sorted 1.08, 1.42, 3, 4: median the 2nd, p90 the 4th.
    assert dict(found.table("cycle").rows[0]) == {
        "pipeline": "first_sales", "records": 10, "won": 4, "lost": 2, "open": 4, "conversion": D("40.0"),
        "cycle_median": D("1.4"), "cycle_p90": D("4.0")}


def test_funnel_by_manager(store: Path) -> None:
    found = report(store, "funnel", by="manager")
    m1 = {r["stage"]: r for r in found.table("stages").rows if r["manager"] == "m1"}
    # m1: deal:1, 3, 7, 8, 9, 12. in_progress: 1, 7, 8, 12; left it: deal:1 after 2 d, deal:7 after 1 d.
    assert (m1["new"]["entries"], m1["in_progress"]["entries"], m1["won"]["entries"]) == (6, 4, 2)
    assert (m1["in_progress"]["median_days"], m1["in_progress"]["p90_days"]) == (D("1.0"), D("2.0"))
    cycles = {r["manager"]: r for r in found.table("cycle").rows}
    assert (cycles["m2"]["records"], cycles["m2"]["won"], cycles["m2"]["lost"]) == (4, 2, 2)


def test_retention(store: Path) -> None:
    found = report(store, "retention")
    by = rows(found, "channels", "channel")
    # New in March: c2 (site), c4 (vk), c7, c8 (aggregator), c11 (walk-in). Came again: c4 35 days later (not
    # within 30), c7 after 22 days, c11 the next day; c2 and c8 never.
    assert {k: (by[k]["new"], by[k]["r30"], by[k]["r60"], by[k]["r90"]) for k in by} == {
        "site": (1, D("0.0"), D("0.0"), D("0.0")), "vk": (1, D("0.0"), D("100.0"), D("100.0")),
        "walk_in": (1, D("100.0"), D("100.0"), D("100.0")), "aggregator": (2, D("50.0"), D("50.0"), D("50.0"))}
    assert list(by)[-1] == "aggregator"  # aggregators apart, after the own channels
    # LTV: site c1 7500 + c2 1500 + c9 10000 over 3 clients; LTV/CAC 6333.33 / 15000 (CAC as in channels).
    assert (by["site"]["clients"], by["site"]["ltv"], by["site"]["cac"], by["site"]["ltv_cac"]) == (
        3, D("6333.33"), D("15000.00"), D("0.4"))
    assert (by["vk"]["ltv"], by["vk"]["ltv_cac"]) == (D("4000.00"), D("0.8"))  # c4's visit of 20.04 is later
    assert by["aggregator"]["ltv"] == D("4833.33")  # (4000 + 1500 + 9000) / 3
    groups = rows(found, "groups", "group")
    assert (groups["Все"]["r30"], groups["Все"]["r60"]) == (D("40.0"), D("60.0"))             # 2/5, 3/5
    assert (groups["Свои каналы"]["r30"], groups["Свои каналы"]["r60"]) == (D("33.3"), D("66.7"))  # 1/3, 2/3
    summary = dict(found.table("summary").rows[0])
    # 11 visits in March, 25500 in all, 10 of them paid → check 2550. Visited: 8 clients; 2+ visits: c1, c7, c9,
    # c11, c12. Gaps ending in March (days): 1, 14, 22, 24.04, 47.5, 69 → median the 3rd, p90 the 6th.
    # Bookings made in March, days ahead: 0.25, 2.04, 2.92, 4, 4, 5.04, 5.08, 22 → the 4th and the 8th.
    assert summary == {"new": 5, "clients": 8, "visits": 11, "revenue": D("25500.00"), "check": D("2550.00"),
                       "repeat": 5, "repeat_share": D("62.5"), "lost": 0, "gap_median": D("22.0"),
                       "gap_p90": D("69.0"), "lead_median": D("4.0"), "lead_p90": D("22.0")}
    month = dict(found.table("months").rows[0])
    assert month == {"month": "2026-03", "clients": 8, "visits": 11, "revenue": D("25500.00"),
                     "visits_per_client": D("1.38"), "revenue_per_client": D("3187.50"), "check": D("2550.00")}
    days = {r["day"].day: r for r in found.table("days").rows}
    assert len(days) == 31 and days[6]["revenue"] == D("5000.00") and days[31]["revenue"] == D("3000.00")
    assert days[3]["visits"] == 0  # every day of the period is there
    cohorts = rows(found, "cohorts", "cohort")
    # January: c9, c12; in February c12 came (1/2), in March both. February: c1, back in March. April is later.
    assert (cohorts["2026-01"]["clients"], cohorts["2026-01"]["m1"], cohorts["2026-01"]["m2"],
            cohorts["2026-01"]["m3"]) == (2, D("50.0"), D("100.0"), None)
    assert (cohorts["2026-02"]["m1"], cohorts["2026-03"]["clients"]) == (D("100.0"), 5)


def test_retention_lost_clients(store: Path) -> None:
    # No visit in the 28 days before 01.04 (since 04.03 00:00): c11, whose last visit was 02.03.
    assert report(store, "retention", lost_days=28).table("summary").rows[0]["lost"] == 1


def test_staff(store: Path) -> None:
    found = report(store, "staff")
    by = rows(found, "staff", "who")
    # Reviews: r1 → anna (c1's visit that morning), r2 → boris, r3 boris, r4 vera, r5 vera, r6 → vera (c12's
    # visit of 12.02: the one of 31.03 is after the review). NPS vera: (1 promoter − 1 detractor) / 3.
    assert by["anna"] == {"who": "anna", "bookings": 1, "no_shows": 0, "no_show_share": D("0.0"), "visits": 4,
                          "revenue": D("6500.00"), "check": D("2166.67"), "reviews": 1, "nps": D("100.0")}
    assert by["boris"] == {"who": "boris", "bookings": 3, "no_shows": 1, "no_show_share": D("33.3"), "visits": 3,
                           "revenue": D("10500.00"), "check": D("3500.00"), "reviews": 2, "nps": D("0.0")}
    assert (by["vera"]["visits"], by["vera"]["revenue"], by["vera"]["check"], by["vera"]["reviews"]) == (
        4, D("8500.00"), D("2125.00"), 3)
    total = dict(found.table("staff").total or {})
    assert (total["bookings"], total["no_show_share"], total["reviews"], total["nps"]) == (
        7, D("28.6"), 6, D("16.7"))  # 2/7; (3 promoters − 2 detractors) / 6
    branches = rows(report(store, "staff", by="branch"), "staff", "who")
    assert (branches["center"]["bookings"], branches["center"]["revenue"]) == (4, D("17000.00"))


def test_every_chart_draws_columns_its_table_has(store: Path) -> None:
    for name, by in (("channels", None), ("channels", "source"), ("channels", "campaign"), ("funnel", "manager"),
                     ("retention", None), ("staff", "branch")):
        found = report(store, name, by=by)
        for chart in found.charts:
            keys = {column.key for column in found.table(chart.table).columns}
            assert {chart.x, *chart.y, *([chart.series] if chart.series else [])} <= keys, (name, chart.key)


def test_an_empty_store_gives_zeros_and_a_note(tmp_path: Path) -> None:
    from automator.store.sqlite import SqliteStore

    SqliteStore(str(tmp_path / "empty.db")).close()
    for name in ("channels", "funnel", "retention", "staff"):
        found = report(tmp_path / "empty.db", name)
        assert found.notes, name
    assert report(tmp_path / "empty.db", "channels").table("channels").total["leads"] == 0  # type: ignore[index]


def test_bad_requests_are_refused(store: Path) -> None:
    with pytest.raises(ReportError, match="unknown report"):
        report(store, "sales")
    with pytest.raises(ReportError, match="cannot be grouped by 'branch'"):
        report(store, "channels", by="branch")


def test_funnel_stages_in_the_pipelines_order_with_their_titles(store: Path) -> None:
    from automator.model import Pipeline, Stage

    # `lost` listed before `in_progress`: the configured order holds, the stage of loss goes last, titles shown.
    stages = {"new": Stage("new", "NEW", "Новый лид"), "lost": Stage("lost", "LOSE", "Отказ", outcome="lost"),
              "in_progress": Stage("in_progress", "PREPARATION", "В работе"),
              "won": Stage("won", "WON", "Записан", outcome="won")}
    pipelines = {"first_sales": Pipeline("first_sales", "crm", "0", stages, "Первичные продажи")}
    found = report(store, "funnel", pipelines=pipelines)
    assert [(r["stage"], r["title"]) for r in found.table("stages").rows] == [
        ("new", "Новый лид"), ("in_progress", "В работе"), ("won", "Записан"), ("lost", "Отказ")]
    assert report(store, "funnel", pipeline="other").table("stages").rows == ()


def test_a_report_beside_a_running_daemon_computes_on_one_core(tmp_path: Path) -> None:
    from automator.daemon.instance import InstanceLock
    from automator.reports.snapshot import Limits

    db = fill(tmp_path / "automator.db")
    assert Limits.beside(db).threads is None  # no daemon: every core
    daemon = InstanceLock(db)
    daemon.acquire()  # as `automator run` holds it for its whole life
    try:
        assert Limits.beside(db).threads == 1
        # and the report is the same, only slower to make
        assert report(db, "staff").tables == compute("staff", db, start=PERIOD_FROM, end=PERIOD_TO, tz=TZ, now=NOW,
                                                     limits=Limits()).tables
    finally:
        daemon.release()
    assert Limits.beside(db).threads is None
