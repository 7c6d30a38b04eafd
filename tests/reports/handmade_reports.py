"""Four realistic reports built by hand (channels, funnel, retention, staff), as automator.reports computes them,
for the HTML page's tests and docs/screenshots.py: every figure here is worked out in the comments, so a test can
look for it on the page as the owner reads it."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

from automator.reports.model import Chart, Column, Report, Table

START, END = date(2026, 11, 1), date(2026, 11, 30)
GENERATED = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)


def channels(name: str = "Сайт") -> Report:
    """Channels by first touch: `name` is the first channel's title (a test passes markup to see it escaped)."""
    columns = (
        Column("channel", "Канал"),
        Column("leads", "Лиды", "int", "лиды и сделки, созданные за период, по первому касанию"),
        Column("qualified", "Квалифицированы", "int", "дошли до этапа с qualified: true или дальше"),
        Column("won", "Выиграны", "int", "сделки, закрытые успешно"),
        Column("revenue", "Выручка", "money", "суммы выигранных сделок"),
        Column("spend", "Расходы", "money", "расходы на рекламу за период (automator spend import)"),
        Column("cpl", "Цена лида", "money", "расходы / лиды"),
        Column("cac", "CAC", "money", "расходы / новые платящие клиенты"),
        Column("romi", "ROMI", "percent", "(выручка − расходы) / расходы"),
        Column("conversion", "Конверсия", "percent", "выиграны / лиды"),
    )
    rows = (
        # 250 000 − 50 000 = 200 000 → 400 % ROMI; 50 000 / 40 = 1 250; 50 000 / 10 = 5 000; 10 / 40 = 25 %
        {"channel": name, "leads": 40, "qualified": 25, "won": 10, "revenue": D("250000.00"),
         "spend": D("50000.00"), "cpl": D("1250.00"), "cac": D("5000.00"), "romi": D("400.0"),
         "conversion": D("25.0")},
        # (36 000 − 45 000) / 45 000 = −20 %: the channel loses money
        {"channel": "ВКонтакте", "leads": 30, "qualified": 12, "won": 3, "revenue": D("36000.00"),
         "spend": D("45000.00"), "cpl": D("1500.00"), "cac": D("15000.00"), "romi": D("-20.0"),
         "conversion": D("10.0")},
        # no spend imported: cost per lead, CAC and ROMI cannot be computed
        {"channel": "Яндекс Карты", "leads": 12, "qualified": 9, "won": 6, "revenue": D("84500.50"),
         "spend": None, "cpl": None, "cac": None, "romi": None, "conversion": D("50.0")},
    )
    # 95 000 / 82 = 1 158,536… → 1 158,54; (370 500,50 − 95 000) / 95 000 = 290,0005… → 290,0; 19 / 82 → 23,2
    total = {"leads": 82, "qualified": 46, "won": 19, "revenue": D("370500.50"), "spend": D("95000.00"),
             "cpl": D("1158.54"), "cac": D("5000.00"), "romi": D("290.0"), "conversion": D("23.2")}
    return Report(
        name="channels", title="Каналы: откуда приходят клиенты", period_from=START, period_to=END,
        generated_at=GENERATED, tables=(Table("channels", "По каналам", columns, rows, total),),
        charts=(Chart("romi", "ROMI по каналам", "bars", "channels", "channel", ("romi",)),
                Chart("leads_spend", "Лиды и расходы по каналам", "bars", "channels", "channel", ("leads", "spend"))),
        headline=(("Лиды", 82, "int"), ("Выиграно сделок", 19, "int"), ("Выручка", D("370500.50"), "money"),
                  ("Расходы на рекламу", D("95000.00"), "money"), ("ROMI", D("290.0"), "percent"),
                  ("Цена лида", D("1158.54"), "money")),
        options={"by": "channel", "touch": "first"},
        notes=("Расходы по каналу «Яндекс Карты» не загружены: его цена лида, CAC и ROMI не показаны.",),
    )


def funnel() -> Report:
    """The sales pipeline: 120 entered, 24 paid."""
    stages = (
        Column("stage", "Этап"),
        Column("entries", "Вошли", "int", "лиды, вошедшие в этап за период"),
        Column("conv_next", "В следующий", "percent", "вошли в следующий этап / вошли в этот"),
        Column("conv_first", "От первого", "percent", "вошли в этап / вошли в первый"),
        Column("dropped", "Отвалились", "int", "вошли в этап, но не дошли до следующего"),
        Column("median", "Медиана в этапе", "days", "время до следующего перехода, медиана"),
        Column("p90", "90-й перцентиль", "days", "время до следующего перехода, 90-й перцентиль"),
    )
    # 80/120 = 66,7 %; 50/80 = 62,5 %; 30/50 = 60 %; 24/30 = 80 %; from the first: 66,7 41,7 25,0 20,0
    rows = (
        {"stage": "Новый", "entries": 120, "conv_next": D("66.7"), "conv_first": D("100.0"), "dropped": 40,
         "median": D("1.5"), "p90": D("4.0")},
        {"stage": "Квалифицирован", "entries": 80, "conv_next": D("62.5"), "conv_first": D("66.7"), "dropped": 30,
         "median": D("3.0"), "p90": D("9.5")},
        {"stage": "Встреча", "entries": 50, "conv_next": D("60.0"), "conv_first": D("41.7"), "dropped": 20,
         "median": D("4.5"), "p90": D("12.0")},
        {"stage": "Договор", "entries": 30, "conv_next": D("80.0"), "conv_first": D("25.0"), "dropped": 6,
         "median": D("2.0"), "p90": D("6.5")},
        {"stage": "Оплачено", "entries": 24, "conv_next": None, "conv_first": D("20.0"), "dropped": None,
         "median": None, "p90": None},
    )
    managers = (
        Column("manager", "Менеджер"), Column("leads", "Лиды", "int"), Column("won", "Выиграны", "int"),
        Column("conversion", "Конверсия", "percent", "выиграны / лиды"),
        Column("cycle_median", "Цикл, медиана", "days", "от создания лида до выигрыша"),
        Column("cycle_p90", "Цикл, 90-й перцентиль", "days", "от создания лида до выигрыша"),
    )
    # 15/70 = 21,4 %; 9/50 = 18 %; 24/120 = 20 %
    by_manager = (
        {"manager": "Анна Смирнова", "leads": 70, "won": 15, "conversion": D("21.4"), "cycle_median": D("12.5"),
         "cycle_p90": D("30.0")},
        {"manager": "Олег Петров", "leads": 50, "won": 9, "conversion": D("18.0"), "cycle_median": D("15.0"),
         "cycle_p90": D("41.5")},
    )
    return Report(
        name="funnel", title="Воронка продаж", period_from=START, period_to=END, generated_at=GENERATED,
        tables=(Table("stages", "Этапы воронки «Продажи»", stages, rows),
                Table("managers", "По менеджерам", managers, by_manager,
                      {"leads": 120, "won": 24, "conversion": D("20.0"), "cycle_median": D("13.5"),
                       "cycle_p90": D("38.0")})),
        charts=(Chart("funnel", "Воронка «Продажи»", "funnel", "stages", "stage", ("entries", "conv_first")),),
        headline=(("Вошли в воронку", 120, "int"), ("Оплачено", 24, "int"), ("Конверсия", D("20.0"), "percent"),
                  ("Цикл сделки, медиана", D("13.5"), "days")),
        options={"pipeline": "Продажи"},
    )


def retention() -> Report:
    """Who comes back: returns by first channel (an aggregator apart), revenue per day, the cohort table."""
    returns = (
        Column("channel", "Первый канал"), Column("kind", "Тип"),
        Column("new_clients", "Новые клиенты", "int", "первый визит в периоде"),
        Column("r30", "Вернулись за 30 дней", "percent", "доля новых клиентов со вторым визитом в 30 дней"),
        Column("r60", "За 60 дней", "percent", "то же за 60 дней"),
        Column("r90", "За 90 дней", "percent", "то же за 90 дней"),
    )
    # Сайт: 12/40 18/40 22/40; ВКонтакте 4/20 7/20 8/20; YCLIENTS 3/25 5/25 6/25; in all 19/85 30/85 36/85
    rows = (
        {"channel": "Сайт", "kind": "свой", "new_clients": 40, "r30": D("30.0"), "r60": D("45.0"), "r90": D("55.0")},
        {"channel": "ВКонтакте", "kind": "свой", "new_clients": 20, "r30": D("20.0"), "r60": D("35.0"),
         "r90": D("40.0")},
        {"channel": "YCLIENTS", "kind": "агрегатор", "new_clients": 25, "r30": D("12.0"), "r60": D("20.0"),
         "r90": D("24.0")},
    )
    curve_columns = (Column("channel", "Канал"), Column("days", "Дней после первого визита", "int"),
                     Column("share", "Вернулись", "percent"))
    # the curve starts at 0 % on the day of the first visit
    curve = tuple({"channel": r["channel"], "days": days, "share": r[key] if key else D("0.0")}
                  for r in rows for days, key in ((0, ""), (30, "r30"), (60, "r60"), (90, "r90")))
    day_columns = (Column("day", "День", "date"), Column("visits", "Визиты", "int"),
                   Column("revenue", "Выручка", "money", "сумма визитов и покупок за день"))
    revenue = (D("41200.00"), D("38950.50"), D("52300.00"), D("47000.00"), D("61250.00"), D("73400.00"),
               D("29800.00"), D("44100.00"), D("39990.00"), D("50500.00"), D("48700.00"), D("66000.00"),
               D("70150.00"), D("31000.00"))
    days = tuple({"day": START + timedelta(days=n), "visits": int(amount // 2450), "revenue": amount}
                 for n, amount in enumerate(revenue))
    cohort_columns = (Column("cohort", "Когорта", "month"), Column("clients", "Клиенты", "int"),
                      Column("m0", "0", "percent"), Column("m1", "1", "percent"), Column("m2", "2", "percent"),
                      Column("m3", "3", "percent", "доля клиентов когорты с визитом в этом месяце после первого"))
    cohorts = (
        {"cohort": "2026-08", "clients": 64, "m0": D("100.0"), "m1": D("37.5"), "m2": D("28.1"), "m3": D("21.9")},
        {"cohort": "2026-09", "clients": 71, "m0": D("100.0"), "m1": D("33.8"), "m2": D("25.4"), "m3": None},
        {"cohort": "2026-10", "clients": 58, "m0": D("100.0"), "m1": D("41.4"), "m2": None, "m3": None},
        {"cohort": "2026-11", "clients": 85, "m0": D("100.0"), "m1": None, "m2": None, "m3": None},
    )
    ltv_columns = (Column("channel", "Первый канал"), Column("clients", "Клиенты", "int"),
                   Column("ltv", "LTV", "money", "выручка на клиента за всю историю"),
                   Column("cac", "CAC", "money", "как в отчёте по каналам"),
                   Column("ltv_cac", "LTV/CAC", "ratio", "LTV / CAC"))
    ltv = ({"channel": "Сайт", "clients": 310, "ltv": D("18650.00"), "cac": D("5000.00"), "ltv_cac": D("3.7")},
           {"channel": "ВКонтакте", "clients": 120, "ltv": D("9900.00"), "cac": D("15000.00"), "ltv_cac": D("0.7")},
           {"channel": "YCLIENTS", "clients": 205, "ltv": D("7340.25"), "cac": None, "ltv_cac": None})
    return Report(
        name="retention", title="Возвраты клиентов", period_from=START, period_to=END, generated_at=GENERATED,
        tables=(Table("returns", "Возвраты новых клиентов по первому каналу", returns, rows,
                      {"new_clients": 85, "r30": D("22.4"), "r60": D("35.3"), "r90": D("42.4")}),
                Table("curve", "Кривая возвратов", curve_columns, curve),
                Table("days", "Выручка по дням", day_columns, days),
                Table("cohorts", "Когорты: доля клиентов с визитом по месяцам", cohort_columns, cohorts),
                Table("ltv", "LTV и LTV/CAC по каналам", ltv_columns, ltv)),
        charts=(Chart("curve", "Доля вернувшихся клиентов", "line", "curve", "days", ("share",), "channel"),
                Chart("cohorts", "Когорты по месяцу первого визита", "cohort", "cohorts", "cohort",
                      ("m0", "m1", "m2", "m3")),
                Chart("revenue_day", "Выручка по дням", "line", "days", "day", ("revenue",))),
        # 36 / 85 = 42,35… → 42,4 %
        headline=(("Новые клиенты", 85, "int"), ("Вернулись за 90 дней", D("42.4"), "percent"),
                  ("Средний чек", D("2450.00"), "money"), ("Дней между визитами, медиана", D("34.5"), "days"),
                  ("Повторные клиенты", 112, "int"), ("Потерянные клиенты", 37, "int")),
        notes=("YCLIENTS — агрегатор: его клиенты показаны отдельно от своих каналов.",
               "Потерянные — без визита 90 дней и больше."),
    )


def staff(name: str = "Анна Иванова") -> Report:
    """Staff by employee: one with a negative NPS."""
    columns = (
        Column("staff", "Сотрудник"), Column("branch", "Филиал"), Column("bookings", "Записи", "int"),
        Column("visits", "Визиты", "int"), Column("no_shows", "Неявки", "int", "записи со статусом no_show"),
        Column("revenue", "Выручка", "money"), Column("avg_check", "Средний чек", "money", "выручка / визиты"),
        Column("reviews", "Отзывы", "int"),
        Column("nps", "NPS", "percent", "доля промоутеров (9–10) минус доля критиков (0–6)"),
    )
    # 145 000 / 58 = 2 500; 98 700 / 47 = 2 100; 62 370 / 33 = 1 890; in all 306 070 / 138 = 2 217,898… → 2 217,90
    # NPS: 14 promoters 1 detractor of 20 → 65,0; 6 and 1 of 12 → 41,7; 2 and 3 of 9 → −11,1; 22 − 5 of 41 → 41,5
    rows = (
        {"staff": name, "branch": "Центр", "bookings": 64, "visits": 58, "no_shows": 3, "revenue": D("145000.00"),
         "avg_check": D("2500.00"), "reviews": 20, "nps": D("65.0")},
        {"staff": "Мария Кузнецова", "branch": "Центр", "bookings": 51, "visits": 47, "no_shows": 2,
         "revenue": D("98700.00"), "avg_check": D("2100.00"), "reviews": 12, "nps": D("41.7")},
        {"staff": "Ольга Соколова", "branch": "Север", "bookings": 40, "visits": 33, "no_shows": 5,
         "revenue": D("62370.00"), "avg_check": D("1890.00"), "reviews": 9, "nps": D("-11.1")},
    )
    total = {"bookings": 155, "visits": 138, "no_shows": 10, "revenue": D("306070.00"), "avg_check": D("2217.90"),
             "reviews": 41, "nps": D("41.5")}
    return Report(
        name="staff", title="Сотрудники", period_from=START, period_to=END, generated_at=GENERATED,
        tables=(Table("staff", "По сотрудникам", columns, rows, total),),
        charts=(Chart("revenue", "Выручка по сотрудникам", "bars", "staff", "staff", ("revenue", "visits")),
                Chart("nps", "NPS по сотрудникам", "bars", "staff", "staff", ("nps",))),
        headline=(("Визиты", 138, "int"), ("Выручка", D("306070.00"), "money"),
                  ("Средний чек", D("2217.90"), "money"), ("NPS", D("41.5"), "percent")),
        options={"by": "staff"},
    )


REPORTS = {"channels": channels, "funnel": funnel, "retention": retention, "staff": staff}
