"""The reports' HTML page (automator.reports.html), its charts and its summary: the figures read as the owner reads
them, every value escaped, nothing loaded from anywhere; and in a real browser (headless Chromium with no
network) the page shows the figures, each chart's SVG has its marks, and a screenshot is not blank.

The reports here are built by hand (tests/reports/handmade_reports.py) with their arithmetic worked out there."""
from __future__ import annotations

import html
import re
import struct
import zlib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

import handmade_reports
import headless
from automator.reports.charts import ChartError, chart_spec, chart_svg
from automator.reports.display import figure_text, grouped, month_text, period_text
from automator.reports.html import render_html, render_summary
from automator.reports.model import Chart, Report

NBSP = "\u00a0"
# In each report's page: the figures the owner reads (tables, cards, totals), spaces as on the page.
FIGURES = {
    "channels": ["370 500,50 ₽", "95 000,00 ₽", "1 158,54 ₽", "290,0 %", "−20,0 %", "400,0 %", "84 500,50 ₽",
                 "23,2 %", "Итого", "Яндекс Карты", "Атрибуция: первое касание",
                 "Расходы по каналу «Яндекс Карты» не загружены"],
    "funnel": ["120", "66,7 %", "41,7 %", "12,0 дн.", "13,5 дн.", "Анна Смирнова", "38,0 дн.", "Воронка: Продажи"],
    "retention": ["42,4 %", "2 450,00 ₽", "34,5 дн.", "55,0 %", "агрегатор", "×3,7", "7 340,25 ₽", "август 2026",
                  "38 950,50 ₽", "02.11.2026", "Потерянные — без визита 90 дней и больше."],
    "staff": ["306 070,00 ₽", "2 217,90 ₽", "−11,1 %", "Ольга Соколова", "Север", "41,5 %"],
}
# Each chart's marks as Vega's SVG labels them (aria-roledescription), counted from the sample's rows: ROMI has
# 2 bars (Яндекс Карты has no spend, so no ROMI); leads and spend 3 + 2; the funnel 5 stages; revenue and visits
# 3 + 3; NPS 3; the retention curve 3 lines of 4 points; the cohort table 10 cells with a share (4+3+2+1);
# revenue per day 1 line of 14 points.
MARKS = {
    "channels": {"romi": {"bar": 2}, "leads_spend": {"bar": 5}},
    "funnel": {"funnel": {"bar": 5}},
    "retention": {"curve": {"line mark": 3, "point": 12}, "cohorts": {"rect mark": 10},
                  "revenue_day": {"line mark": 1, "point": 14}},
    "staff": {"revenue": {"bar": 6}, "nps": {"bar": 3}},
}


# ---- figures ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "kind", "text"), [
    (Decimal("1234567.891"), "money", "1 234 567,89 ₽"),
    (Decimal("1234567.895"), "money", "1 234 567,90 ₽"),  # half up, never to even
    (Decimal("-1200"), "money", "−1 200,00 ₽"),
    (Decimal("0.5"), "money", "0,50 ₽"),
    (Decimal("12.5"), "percent", "12,5 %"),
    (Decimal("100"), "percent", "100 %"),
    (Decimal("3.2"), "ratio", "×3,2"),
    (Decimal("1.5"), "days", "1,5 дн."),
    (1234, "int", "1 234"),
    (999, "int", "999"),
    (None, "money", "—"),
    (None, "text", "—"),
    ("2026-03", "month", "март 2026"),
    ("Сайт", "text", "Сайт"),
])
def test_a_figure_reads_as_the_owner_reads_it(value: object, kind: str, text: str) -> None:
    # numbers group their digits by a no-break space on the page; words keep their own spaces
    assert figure_text(value, kind) == (text.replace(" ", NBSP) if kind not in ("month", "text") else text)
    assert figure_text(value, kind, space=" ") == text


def test_dates_and_periods_read_in_russian() -> None:
    from datetime import date
    assert figure_text(date(2026, 11, 2), "date") == "02.11.2026"
    assert month_text(date(2026, 12, 31)) == "декабрь 2026"
    assert period_text(date(2026, 11, 1), date(2026, 11, 30)) == "01.11.2026 — 30.11.2026"
    assert period_text(date(2026, 11, 1), date(2026, 11, 1)) == "01.11.2026"
    assert grouped(Decimal("1000000"), space=" ") == "1 000 000"


# ---- the page ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    """Each sample report's page, and one whose channel and employee names are markup."""
    rendered = {name: render_html(make()) for name, make in handmade_reports.REPORTS.items()}
    rendered["hostile"] = render_html(handmade_reports.channels('<script>alert("x")</script><img src=x>'))
    return rendered


def _text(page: str) -> str:
    """A page's markup with entities resolved and no-break spaces as spaces: the text as read."""
    return html.unescape(page).replace(NBSP, " ")


@pytest.mark.parametrize("name", list(FIGURES))
def test_the_page_shows_the_figures_and_every_chart(pages: dict[str, str], name: str) -> None:
    page = pages[name]
    assert page.startswith("<!DOCTYPE html>") and '<html lang="ru">' in page
    report = handmade_reports.REPORTS[name]()
    text = _text(page)
    for figure in FIGURES[name] + [report.title, "Период: 01.11.2026 — 30.11.2026",
                                   "Сформирован: 01.12.2026 06:00 UTC"]:
        assert figure in text, figure
    for title, value, kind in report.headline:
        assert f'<div class="card-title">{html.escape(title)}</div>' in page
        assert figure_text(value, kind, space=" ") in text
    for chart in report.charts:
        assert f'id="chart-{chart.key}"' in page
    # how each column is computed, as numbered footnotes the headers point to
    assert 'href="#fn-1"' in page and 'id="fn-1"' in page


def test_a_table_s_totals_row_and_a_negative_figure(pages: dict[str, str]) -> None:
    page = pages["channels"]
    foot = page[page.index("<tfoot>"):page.index("</tfoot>")]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", _text(foot))
    assert cells == ["Итого", "82", "46", "19", "370 500,50 ₽", "95 000,00 ₽", "1 158,54 ₽", "5 000,00 ₽", "290,0 %",
                     "23,2 %"]
    assert '<td class="num neg">−20,0' in page


def test_the_page_is_self_contained(pages: dict[str, str]) -> None:
    for name, page in pages.items():
        assert "<script" not in page.lower(), name
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", page, re.I), name
        assert "@import" not in page and "url(http" not in page and "<link" not in page
        for link in re.findall(r"""(?:src|href)\s*=\s*"([^"]*)\"""", page):
            assert link.startswith("#"), (name, link)


def test_a_name_made_of_markup_shows_as_text(pages: dict[str, str]) -> None:
    page = pages["hostile"]
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x&gt;" in page
    assert '<script>alert("x")</script><img src=x>' in _text(page)


def test_several_charts_never_share_an_svg_id() -> None:
    page = render_html(handmade_reports.retention())
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_an_empty_table_says_so_instead_of_an_empty_chart() -> None:
    report = handmade_reports.channels()
    empty = replace(report, tables=(replace(report.tables[0], rows=(), total=None),), headline=())
    page = _text(render_html(empty))
    assert "<strong>ROMI по каналам</strong>: нет данных за период" in page and "Нет данных за период" in page
    assert "<svg" not in page


def test_a_chart_naming_what_its_table_lacks_is_an_error() -> None:
    report = handmade_reports.staff()
    with pytest.raises(ChartError, match="table 'staff' has no column 'romi'"):
        chart_spec(report, Chart("x", "X", "bars", "staff", "staff", ("romi",)))
    with pytest.raises(ChartError, match="unknown kind 'pie'"):
        chart_spec(report, Chart("x", "X", "pie", "staff", "staff", ("nps",)))
    with pytest.raises(ChartError, match="has no table 'nope'"):
        chart_spec(report, Chart("x", "X", "bars", "nope", "staff", ("nps",)))


def test_charts_speak_russian_and_show_money_in_roubles() -> None:
    svg = chart_svg(handmade_reports.channels(), handmade_reports.channels().charts[1])
    text = _text(svg)
    assert "Расходы, ₽" in text and "50 000,00 ₽" in text  # the label is the table's figure, in roubles
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", text)
    assert {"20 000", "40 000", "60 000"} <= set(texts)  # the axis ticks with the ru-RU grouping, not "60,000"
    assert not [t for t in texts if "000 000" in t]  # never kopecks: 50 000 ₽ is not drawn as 5 000 000
    romi = _text(chart_svg(handmade_reports.channels(), handmade_reports.channels().charts[0]))
    assert "−20,0 %" in romi and 'fill="#d62728"' in romi  # the losing channel's bar is red


def test_a_cohort_in_long_form_draws_the_same_cells() -> None:
    """A cohort chart may also name its cohort by `series` (one row per cohort and month since)."""
    report = handmade_reports.retention()
    wide = report.table("cohorts")
    long_rows = tuple({"cohort": row["cohort"], "since": position, "share": row[key]}
                      for row in wide.rows for position, key in enumerate(("m0", "m1", "m2", "m3")))
    from automator.reports.model import Column, Table
    table = Table("long", "Когорты", (Column("cohort", "Когорта", "month"), Column("since", "Месяцев", "int"),
                                      Column("share", "Доля", "percent")), long_rows)
    long_report = replace(report, tables=(*report.tables, table))
    svg = chart_svg(long_report, Chart("long", "Когорты", "cohort", "long", "since", ("share",), "cohort"))
    assert svg.count('aria-roledescription="rect mark"') == 10
    assert "37,5 %" in _text(svg) and "сентябрь 2026" in _text(svg)


# ---- the summary a message carries ------------------------------------------------------------------------------

def test_the_summary_is_the_headline_in_plain_text() -> None:
    assert render_summary(handmade_reports.channels()) == (
        "Каналы: откуда приходят клиенты, 01.11.2026 — 30.11.2026\n"
        "Лиды: 82\n"
        "Выиграно сделок: 19\n"
        "Выручка: 370 500,50 ₽\n"
        "Расходы на рекламу: 95 000,00 ₽\n"
        "ROMI: 290,0 %\n"
        "Цена лида: 1 158,54 ₽\n"
        "• Расходы по каналу «Яндекс Карты» не загружены: его цена лида, CAC и ROMI не показаны.")


def test_the_summary_keeps_within_its_limit_leaving_whole_lines_off() -> None:
    report = replace(handmade_reports.staff(), notes=tuple(f"Замечание номер {n}: " + "очень " * 20 for n in range(40)))
    text = render_summary(report)
    assert len(text) <= 1024 and text.endswith("\n…")
    assert "NPS: 41,5 %" in text and "Замечание номер 39" not in text
    assert all(line == "…" or line.startswith(("•", "Сотрудники", "Визиты", "Выручка", "Средний", "NPS"))
               for line in text.splitlines())
    short = render_summary(handmade_reports.staff(), limit=60)
    assert len(short) <= 60 and short.endswith("…")
    assert render_summary(replace(report, headline=(), notes=())).endswith("Нет показателей за период.")


# ---- in a real browser ------------------------------------------------------------------------------------------

def _png_pixels(path: Path) -> tuple[int, int, list[list[bytes]]]:
    """A PNG's width, height and rows of pixels, each its RGB bytes (8-bit RGB or RGBA, not interlaced, as
    Chromium writes it)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, [], b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    size = 4 if colour == 6 else 3
    raw = zlib.decompress(b"".join(chunks))
    rows: list[bytes] = []
    previous, stride = bytearray(width * size), width * size
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - size] if x >= size else 0
            up, corner = previous[x], previous[x - size] if x >= size else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [[row[x:x + 3] for x in range(0, len(row), size)] for row in rows]


@pytest.fixture(scope="module")
def browser_pages(pages: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Each page written to a file and opened by Chromium: the DOM it built, by report."""
    if headless.CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian's `chromium` package; .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("report-html")
    doms = {}
    for name, page in pages.items():
        file = tmp / f"report-{name}.html"
        file.write_text(page, encoding="utf-8")
        doms[name] = headless.dom(file)
    return tmp, doms


@pytest.mark.parametrize("name", list(FIGURES))
def test_chromium_shows_the_figures_and_draws_every_chart(browser_pages: tuple[Path, dict[str, str]],
                                                          name: str) -> None:
    dom = browser_pages[1][name]
    text = _text(dom)
    assert '<html lang="ru">' in dom
    for figure in FIGURES[name]:
        assert figure in text, figure
    report = handmade_reports.REPORTS[name]()
    assert len(report.charts) == len(MARKS[name])
    for chart in report.charts:
        start = dom.index(f'id="chart-{chart.key}"')
        figure = dom[start:dom.index("</figure>", start)]
        assert "<svg" in figure and f">{html.escape(chart.title)}</text>" in figure, chart.key
        for mark, count in MARKS[name][chart.key].items():
            assert figure.count(f'aria-roledescription="{mark}"') == count, (chart.key, mark)


def test_chromium_keeps_a_hostile_name_as_text(browser_pages: tuple[Path, dict[str, str]]) -> None:
    dom = browser_pages[1]["hostile"]
    assert "<script" not in dom and "<img" not in dom  # the DOM Chromium built has no such element
    assert '<script>alert("x")</script><img src=x>' in _text(dom)


@pytest.mark.parametrize("name", ["channels", "retention"])
def test_a_screenshot_of_the_page_is_not_blank(browser_pages: tuple[Path, dict[str, str]], name: str) -> None:
    tmp = browser_pages[0]
    shot = tmp / f"{name}.png"
    headless.screenshot(tmp / f"report-{name}.html", shot, 1200, 1400)
    width, height, rows = _png_pixels(shot)
    assert (width, height) == (1200, 1400)
    colours = {pixel for row in rows[::7] for pixel in row[::5]}
    assert len(colours) > 50  # text, bars and lines in many shades, not one flat colour
    # the chart's blue bars (#4c78a8) are there
    assert any(abs(c[0] - 0x4C) < 8 and abs(c[1] - 0x78) < 8 and abs(c[2] - 0xA8) < 8 for c in colours)


def test_a_screenshot_takes_the_whole_page_s_height(browser_pages: tuple[Path, dict[str, str]]) -> None:
    """docs/screenshots.py's full-page screenshot: as tall as the page laid out 1200 px wide (the retention page,
    with three charts and five tables, is far taller than a screen)."""
    tmp = browser_pages[0]
    page = tmp / "report-retention.html"
    height = headless.page_height(page, 1200)
    assert height > 2000
    shot = headless.screenshot(page, tmp / "retention-full.png", 1200)
    assert struct.unpack(">II", shot.read_bytes()[16:24]) == (1200, height)
    assert not list(tmp.glob("*.height.html"))  # the measuring copy is gone


def test_a_wide_table_s_long_headers_may_break_where_russian_does() -> None:
    """Ten columns make the channels table tight: its long titles get soft hyphens at syllables (the figures and
    short titles none), so it fits a 1200 px screen and A4 without breaking "Лиды" as "Лид-ы"."""
    page = render_html(handmade_reports.channels())
    assert '<table class="wide">' in page
    assert ">Ква\u00adли\u00adфи\u00adци\u00adро\u00adва\u00adны<sup>" in page
    assert ">Лиды<sup>" in page and ">Конверсия<sup>" in page  # under ten letters: whole
    assert "\u00ad" not in page[page.index("<tbody>"):]
    assert "<table class=\"wide\">" not in render_html(handmade_reports.staff())  # nine columns: as they are


def test_a_bar_chart_of_hundreds_draws_the_largest_thirty_and_says_so() -> None:
    """Two hundred campaigns: the chart draws the 30 with the most leads (in the table's order) and its subtitle
    says so; the table keeps all two hundred."""
    report = handmade_reports.channels()
    table = report.table("channels")
    rows = tuple({**table.rows[0], "channel": f"Кампания {n}", "leads": n} for n in range(200))
    many = replace(report, tables=(replace(table, rows=rows),))
    svg = _text(chart_svg(many, many.charts[1]))
    assert svg.count('aria-roledescription="bar"') == 60  # leads and spend of each of the 30
    labels = re.findall(r"<text[^>]*>(Кампания \d+)</text>", svg)
    assert labels == [f"Кампания {n}" for n in range(170, 200)]
    assert "30 из 200: наибольшие по «Лиды»; все — в таблице «По каналам»" in svg
    assert render_html(many).count("<td>Кампания ") == 200  # the table has them all


def test_the_page_prints_on_a4(browser_pages: tuple[Path, dict[str, str]]) -> None:
    """Chromium prints the retention page (three charts, five tables) as a PDF of A4 pages: the page's @page rule
    is what sets the paper, whatever the printer's default."""
    tmp = browser_pages[0]
    pdf = tmp / "retention.pdf"
    headless.chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", (tmp / "report-retention.html").as_uri())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 2
    boxes = {tuple(round(float(n)) for n in box.split()[2:]) for box in re.findall(rb"/MediaBox\s*\[([^\]]*)\]", data)}
    assert boxes == {(595, 842)}  # A4 in points


def test_money_reads_in_the_report_s_currency() -> None:
    """A business that counts in tenge sees ₸ in the tables, the cards, the charts and the summary."""
    report = replace(handmade_reports.channels(), currency="KZT")
    page = _text(render_html(report))
    assert "370 500,50 ₸" in page and "₽" not in page
    assert "Расходы, ₸" in page and "50 000,00 ₸" in page  # the chart's axis title and its label
    assert "Выручка: 370 500,50 ₸" in render_summary(report)
    assert figure_text(Decimal("5"), "money", currency="GEL", space=" ") == "5,00 GEL"
