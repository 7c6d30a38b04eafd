"""A report as one self-contained HTML page, and its headline as a few lines of text (pure: strings in, strings
out; the charts are rendered in memory by automator.reports.charts).

The page is what an owner opens from an e-mail or a chat on any device, offline: one HTML5 file in Russian with
its CSS and its charts (SVG) inline, no script, and nothing loaded from anywhere (no font, image or style from a
network). It prints on A4: a chart or a table row never splits across pages. Every value a business or a webhook
gave (a channel's title, a stage, an employee's name) is escaped, so a name like "<script>" shows as text.
"""
from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

from automator.reports.charts import chart_svg
from automator.reports.display import NBSP, figure_text, moment_text, period_text
from automator.reports.model import Column, Report, Table

NUMERIC_KINDS = frozenset({"int", "money", "percent", "ratio", "days"})
WIDE_TABLE = 9  # columns beyond which a table is set tighter, to fit a 1200 px screen and an A4 page
SUMMARY_LIMIT = 1024  # a Telegram caption's limit; an SMS or an e-mail body takes the same few lines
# How a report's options read on the page ("by": "channel" → "Группировка: канал").
OPTION_TITLES = {"by": "Группировка", "touch": "Атрибуция", "pipeline": "Воронка", "lost_days": "Потерян после, дней"}
OPTION_VALUES = {"first": "первое касание", "last": "последнее касание", "channel": "канал", "campaign": "кампания",
                 "source": "источник", "manager": "менеджер", "staff": "сотрудник", "branch": "филиал"}

STYLE = """
:root { color-scheme: light; --ink: #1f2328; --muted: #5f6b76; --line: #d8dee4; --accent: #4c78a8; --bad: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f8fa; color: var(--ink);
       font: 14px/1.45 "DejaVu Sans", "Segoe UI", Arial, Helvetica, sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 24px 20px 40px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 2px 0; color: var(--muted); }
h2 { font-size: 18px; margin: 28px 0 10px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 20px 0 8px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 170px; }
.card-value { font-size: 22px; font-weight: bold; white-space: nowrap; }
.card-title { color: var(--muted); font-size: 13px; }
.card .neg, td.neg { color: var(--bad); }
figure.chart { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin: 16px 0; padding: 12px;
               overflow-x: auto; }
figure.chart svg { max-width: 100%; height: auto; display: block; }
figure.chart p.empty { color: var(--muted); margin: 4px 0; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #eef2f6; font-weight: 600; font-size: 13px; }
th.num, td.num { text-align: right; }
td.num, .card-value { white-space: nowrap; }  /* a figure never breaks; a header may, over two lines */
table.wide th, table.wide td { padding: 5px 5px; font-size: 11.5px; }
table.wide th { hyphens: manual; }
tfoot td { font-weight: bold; background: #f6f8fa; border-top: 2px solid var(--line); }
tbody tr:nth-child(even) td { background: #fbfcfd; }
sup a { color: var(--accent); text-decoration: none; }
.notes li, .footnotes li { margin: 4px 0; }
.footnotes { color: var(--muted); font-size: 13px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@page { size: A4; margin: 12mm; }
@media print {
  body { background: #fff; font-size: 11px; }
  main { max-width: none; padding: 0; }
  .card, figure.chart, .table-wrap { border-color: #bbb; }
  figure.chart, .card, tr, .notes li { break-inside: avoid; }
  h2 { break-after: avoid; }
  .table-wrap { overflow: visible; }
  th, td, table.wide th, table.wide td { padding: 3px 4px; font-size: 10px; }
}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_VOWELS = frozenset("аеёиоуыэюяaeiouy")
_NO_BREAK_BEFORE = frozenset("йьъ")
_LONG_WORD = re.compile(r"\w{10,}")


def _soft_hyphens(word: str) -> str:
    """A long word with soft hyphens where Russian breaks it, near enough (Chromium has no Russian hyphenation of
    its own): between two vowels' syllables, after the first consonant of a cluster, never before й, ь, ъ, nor
    leaving one letter alone; so a narrow column breaks "Квали-фицированные", not "Лид-ы"."""
    vowels = [i for i, letter in enumerate(word) if letter.lower() in _VOWELS]
    breaks = []
    for vowel, following in zip(vowels, vowels[1:]):
        cut = vowel + 1 if following - vowel <= 2 else vowel + 2
        while cut < following and word[cut].lower() in _NO_BREAK_BEFORE:
            cut += 1
        if 2 <= cut <= len(word) - 2:
            breaks.append(cut)
    return "".join("\u00ad" + letter if i in breaks else letter for i, letter in enumerate(word))


def _header(title: str, wide: bool) -> str:
    """A column's title escaped; in a wide table, its long words breakable."""
    return _e(_LONG_WORD.sub(lambda m: _soft_hyphens(m.group(0)), title) if wide else title)


def _cell(value: Any, column: Column, currency: str) -> str:
    """One figure of a table as a `<td>`: numbers right-aligned, a negative one red."""
    classes = []
    if column.kind in NUMERIC_KINDS:
        classes.append("num")
        if value is not None and not isinstance(value, bool) and value < 0:
            classes.append("neg")
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attribute}>{_e(figure_text(value, column.kind, currency=currency))}</td>"


def _footnotes(report: Report) -> list[tuple[str, str]]:
    """Each distinct (column title, how it is computed) of the report, in the order the page shows them."""
    seen: list[tuple[str, str]] = []
    for table in report.tables:
        for column in table.columns:
            note = (column.title, column.doc.strip())
            if note[1] and note not in seen:
                seen.append(note)
    return seen


def _table(table: Table, footnotes: list[tuple[str, str]], currency: str) -> str:
    wide = len(table.columns) > WIDE_TABLE
    head = []
    for column in table.columns:
        mark = ""
        if column.doc.strip():
            number = footnotes.index((column.title, column.doc.strip())) + 1
            mark = f'<sup><a href="#fn-{number}" title="{_e(column.doc.strip())}">{number}</a></sup>'
        attribute = ' class="num"' if column.kind in NUMERIC_KINDS else ""
        head.append(f'<th scope="col"{attribute}>{_header(column.title, wide)}{mark}</th>')
    body = ["<tr>" + "".join(_cell(row.get(c.key), c, currency) for c in table.columns) + "</tr>" for row in table.rows]
    if not table.rows:
        body.append(f'<tr><td colspan="{len(table.columns)}">Нет данных за период</td></tr>')
    foot = ""
    if table.total is not None:
        cells = []
        for position, column in enumerate(table.columns):
            value = table.total.get(column.key)
            if position == 0 and value is None:
                cells.append("<td>Итого</td>")
            elif value is None and column.kind not in NUMERIC_KINDS:
                cells.append("<td></td>")
            else:
                cells.append(_cell(value, column, currency))
        foot = "<tfoot><tr>" + "".join(cells) + "</tr></tfoot>"
    tight = ' class="wide"' if wide else ""
    return (f'<section class="table" id="table-{_e(table.key)}"><h2>{_e(table.title)}</h2>'
            f'<div class="table-wrap"><table{tight}><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody>{foot}</table></div></section>')


def _cards(report: Report) -> str:
    cards = []
    for title, value, kind in report.headline:
        negative = kind in NUMERIC_KINDS and value is not None and not isinstance(value, bool) and value < 0
        shown = figure_text(value, kind, currency=report.currency)
        cards.append(f'<div class="card"><div class="card-value{" neg" if negative else ""}">{_e(shown)}</div>'
                     f'<div class="card-title">{_e(title)}</div></div>')
    return f'<section class="cards" aria-label="Главные показатели">{"".join(cards)}</section>' if cards else ""


def _charts(report: Report) -> str:
    figures = []
    for chart in report.charts:
        drawn = chart_svg(report, chart) if report.table(chart.table).rows else (
            f'<p class="empty"><strong>{_e(chart.title)}</strong>: нет данных за период</p>')
        figures.append(f'<figure class="chart" id="chart-{_e(chart.key)}" data-kind="{_e(chart.kind)}" '
                       f'aria-label="{_e(chart.title)}">{drawn}</figure>')
    return "".join(figures)


def _options(options: Mapping[str, Any]) -> str:
    parts = []
    for key, value in options.items():
        # only what the owner asked for reads on the page (a report may keep other options for itself)
        if key not in OPTION_TITLES or value is None or value == "" or value == ():
            continue
        shown = OPTION_VALUES.get(str(value), str(value))
        parts.append(f"{OPTION_TITLES.get(key, key)}: {shown}")
    return f'<p class="options">{_e(" · ".join(parts))}</p>' if parts else ""


def _list(title: str, css: str, items: Iterable[str]) -> str:
    body = "".join(items)
    return f'<section class="{css}"><h2>{_e(title)}</h2><ol>{body}</ol></section>' if body else ""


def render_html(report: Report) -> str:
    """`report` as one self-contained HTML5 page in Russian: its title, period and when it was made, the headline
    figures as cards, each chart (inline SVG), each table with its totals row, the notes and, as footnotes, how
    each column is computed."""
    period = period_text(report.period_from, report.period_to)
    footnotes = _footnotes(report)
    notes = _list("Примечания", "notes", (f"<li>{_e(note)}</li>" for note in report.notes))
    explained = _list("Как считаются показатели", "footnotes",
                      (f'<li id="fn-{n}"><strong>{_e(title)}</strong> — {_e(doc)}</li>'
                       for n, (title, doc) in enumerate(footnotes, 1)))
    generated = moment_text(report.generated_at)
    return (
        '<!DOCTYPE html>\n<html lang="ru">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="automator">\n<title>{_e(report.title)} — {_e(period)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f'<header><h1>{_e(report.title)}</h1><p class="period">Период: {_e(period)}</p>'
        f'<p class="generated">Сформирован: {_e(generated)}</p>{_options(report.options)}</header>\n'
        f"{_cards(report)}\n{_charts(report)}\n"
        + "\n".join(_table(table, footnotes, report.currency) for table in report.tables)
        + f"\n{notes}\n{explained}\n"
        f"<footer>automator · {_e(report.title)} · {_e(period)} · {_e(generated)}</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def render_summary(report: Report, *, limit: int = SUMMARY_LIMIT) -> str:
    """The report's headline figures as a few lines of plain Russian text, at most `limit` characters (a Telegram
    caption's 1024 by default): its title and period, then one "title: figure" line each, then the notes while
    they fit. A line that does not fit is left off whole, and "…" says so."""
    head = f"{report.title}, {period_text(report.period_from, report.period_to)}"
    lines = [f"{title}: {figure_text(value, kind, space=' ', currency=report.currency)}"
             for title, value, kind in report.headline]
    if not lines:
        lines.append("Нет показателей за период.")
    lines += [f"• {note}" for note in report.notes]
    text = head[:limit]
    for position, line in enumerate(lines):
        more = position < len(lines) - 1
        candidate = f"{text}\n{line}"
        if len(candidate) + (2 if more else 0) > limit:
            return f"{text}\n…" if len(text) + 2 <= limit else text
        text = candidate
    return text.replace(NBSP, " ")
