"""A report as text (pure): aligned tables with Russian titles for a terminal (money "1 234 567,89", "—" where a
figure cannot be computed), CSV of one table with plain numbers (`1234567.89`, `12.5`) for a spreadsheet, and JSON
of the whole report (Decimals as strings, dates ISO) for a program.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from automator.reports.display import MINUS, grouped
from automator.reports.model import Column, Report, Table

DASH = "—"
GROUP = " "  # between thousands, as Russian text writes money


def show(value: Any, kind: str) -> str:
    """One figure as a person reads it."""
    if value is None:
        return DASH
    if kind == "money":
        return _grouped(Decimal(value).quantize(Decimal("0.01")))
    if kind in ("percent", "ratio", "days"):
        return _grouped(Decimal(value))
    if kind == "int" and isinstance(value, int):
        return _grouped(Decimal(value))
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y")
    return str(value)


def _grouped(number: Decimal) -> str:
    # A terminal and a shell pipe read an ASCII minus and plain spaces better than the page's typography.
    return grouped(number, space=GROUP).replace(MINUS, "-")


def render_table(report: Report) -> str:
    """The whole report for a terminal: title, period, headline, each table aligned, notes."""
    lines = [report.title, f"Период: {report.period_from:%d.%m.%Y} – {report.period_to:%d.%m.%Y}", ""]
    if report.headline:
        width = max(len(title) for title, _, _ in report.headline)
        lines += [f"  {title.ljust(width)}  {show(value, kind)}" for title, value, kind in report.headline] + [""]
    for table in report.tables:
        lines += [table.title, *_aligned(table), ""]
    lines += [f"* {note}" for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def _aligned(table: Table) -> list[str]:
    rows = [*table.rows, *([table.total] if table.total else [])]
    cells = [[c.title for c in table.columns]] + [[show(row.get(c.key), c.kind) for c in table.columns]
                                                   for row in rows]
    if not table.rows:
        return ["  (нет данных)"]
    widths = [max(len(line[i]) for line in cells) for i in range(len(table.columns))]
    right = [c.kind != "text" for c in table.columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(values) for values in cells[1:]]
    if table.total:
        out.insert(len(out) - 1, "  ".join("-" * w for w in widths))
    return out


def render_csv(report: Report, table: str | None = None) -> str:
    """One table (the report's first unless `table` names another) as CSV: a header of column keys, plain numbers,
    empty cells for figures that cannot be computed, and the totals row last."""
    chosen = report.table(table) if table else report.tables[0]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in chosen.columns])
    for row in [*chosen.rows, *([chosen.total] if chosen.total else [])]:
        writer.writerow([_plain(row.get(c.key), c) for c in chosen.columns])
    return out.getvalue()


def _plain(value: Any, column: Column) -> str:
    if value is None:
        return ""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def to_data(report: Report) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    def table(t: Table) -> dict[str, Any]:
        return {"key": t.key, "title": t.title,
                "columns": [{"key": c.key, "title": c.title, "kind": c.kind, "doc": c.doc} for c in t.columns],
                "rows": [dict(r) for r in t.rows], "total": dict(t.total) if t.total else None}

    return {"report": report.name, "title": report.title, "from": report.period_from, "to": report.period_to,
            "generated_at": report.generated_at, "currency": report.currency, "options": dict(report.options),
            "headline": [{"title": t, "value": v, "kind": k} for t, v, k in report.headline],
            "tables": [table(t) for t in report.tables],
            "charts": [{"key": c.key, "title": c.title, "kind": c.kind, "table": c.table, "x": c.x, "y": list(c.y),
                        "series": c.series} for c in report.charts],
            "notes": list(report.notes)}


def render_json(report: Report) -> str:
    """The whole report as JSON: Decimals as strings ("1234.56"), dates and moments ISO 8601."""
    return json.dumps(to_data(report), ensure_ascii=False, indent=2, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def render(report: Report, fmt: str, table: str | None = None) -> str:
    """The report in `fmt`: table, csv, json or html (the HTML page: automator.reports.html, imported only then)."""
    if fmt == "html":
        from importlib import import_module

        return str(import_module("automator.reports.html").render_html(report))
    if fmt == "csv":
        return render_csv(report, table)
    if fmt == "json":
        return render_json(report)
    return render_table(report)
