"""What a report is, as plain data (pure): its tables of figures, the charts drawn from them and its headline
figures. The reports compute one (automator/reports), and every format renders the same one: a text table, CSV,
JSON, a self-contained HTML page, the summary a message carries.

Figures are exact: money is a `Decimal` with its kopecks (never a float), a share or a ratio a `Decimal` rounded
as its column says, a count an `int`; a figure that cannot be computed (a cost per lead with no leads) is None and
is shown as "—".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from collections.abc import Mapping
from typing import Any

# What a column holds, so that every format shows it the same way:
#   text, int, money (Decimal, major units), percent (Decimal: 12.5 is 12.5 %), ratio (Decimal: 3.2 is ×3.2),
#   days (Decimal days), date (datetime.date), month ("2026-03").
COLUMN_KINDS = ("text", "int", "money", "percent", "ratio", "days", "date", "month")
# The charts a report may ask for: a funnel of stages, bars by a category, a line over time, a cohort table.
CHART_KINDS = ("funnel", "bars", "line", "cohort")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table: its key in each row, its title as the business reads it, and what it holds."""

    key: str
    title: str
    kind: str = "text"
    doc: str = ""  # how it is computed, for the page's footnotes and `--format json`


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of figures under one title; each row maps a column's key to its value."""

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, Any], ...]
    total: Mapping[str, Any] | None = None  # the totals row, when the table has one


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart drawn from one of the report's tables: `x` the category or time column, `y` the figure(s), and
    `series` a column whose values are drawn as separate lines or bar groups."""

    key: str
    title: str
    kind: str
    table: str
    x: str
    y: tuple[str, ...]
    series: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """One computed report: `name` is channels, funnel, retention, staff or loyalty."""

    name: str
    title: str
    period_from: date
    period_to: date  # inclusive
    generated_at: datetime
    tables: tuple[Table, ...]
    charts: tuple[Chart, ...] = ()
    headline: tuple[tuple[str, Any, str], ...] = ()  # (title, value, column kind): the figures a message carries
    options: Mapping[str, Any] = field(default_factory=dict)  # by, touch, pipeline: what it was asked for
    currency: str = "RUB"
    notes: tuple[str, ...] = ()  # what the owner should know to read it (no spend imported for a channel, …)

    def table(self, key: str) -> Table:
        """The table called `key` (a KeyError naming the ones there are when it has none)."""
        for table in self.tables:
            if table.key == key:
                return table
        raise KeyError(f"report {self.name} has no table {key!r} (it has: {', '.join(t.key for t in self.tables)})")
