"""A report's charts drawn as SVG (pure computation, no I/O): each `Chart` of a Report becomes a Vega-Lite spec
through altair and is rendered offline by vl-convert, in Russian (a decimal comma, thousands grouped by a space,
Russian month names), with money in roubles.

- funnel: a horizontal bar per stage in the pipeline's order, each labelled with its count and its conversion;
- bars: a horizontal bar per category and figure (one panel per figure, so leads and roubles never share an
  axis); a negative figure (a ROMI under zero: the channel loses money) is red; every bar carries its value;
- line: the figures over days, months or days-since (a retention curve, revenue per day), one coloured line per
  series with a legend;
- cohort: a heat table, cohort × months since, the share both as colour and as text.

The labels are the same text the page's tables show (automator.reports.display), so a chart and its table agree
to the kopeck; the bars' lengths are floats, as drawing needs, and nothing is computed from them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from collections.abc import Mapping
from typing import Any

import altair as alt
import vl_convert

from automator.reports.display import currency_sign, figure_text, month_text
from automator.reports.figures import percent
from automator.reports.model import Chart, Column, Report, Table

WIDTH = 700  # px of a chart's plotting area: with the axis and labels it fits a 1200 px page (and scales to A4)
STEP = 26  # px per bar or per cohort row
MOST_BARS = 30  # categories a bar chart shows at most: the largest by its first figure (the table has them all)
BLUE, RED, GREY = "#4c78a8", "#d62728", "#9e9e9e"
FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"
# Where a figure's unit goes in an axis title ("Выручка, ₽") and how the axis ticks read (d3-format; the ru-RU
# locale makes "," the grouping and "." the decimal comma).
_UNIT = {"percent": "%", "days": "дн."}  # money's is its currency's sign
_TICKS = {"money": ",.0f", "percent": ",~f", "days": ",~f", "int": ",d", "ratio": ",~f"}


class ChartError(ValueError):
    """A chart the report asks for that cannot be drawn from its table (an unknown kind or column)."""


@dataclass(frozen=True, slots=True)
class _Frame:
    """The table a chart draws from, with its columns resolved."""

    table: Table
    x: Column
    y: tuple[Column, ...]
    series: Column | None
    rows: tuple[Mapping[str, Any], ...]  # the rows drawn, in the table's order
    currency: str  # the report's: money reads in it
    title: str | alt.TitleParams  # the chart's title, with a subtitle when not every row is drawn


def _frame(report: Report, chart: Chart) -> _Frame:
    try:
        table = report.table(chart.table)
    except KeyError as error:
        raise ChartError(f"chart {chart.key!r}: {error.args[0]}") from None
    columns = {c.key: c for c in table.columns}

    def column(key: str) -> Column:
        if key not in columns:
            raise ChartError(f"chart {chart.key!r}: table {table.key!r} has no column {key!r} "
                             f"(it has: {', '.join(columns)})")
        return columns[key]

    if not chart.y:
        raise ChartError(f"chart {chart.key!r}: no figure to draw (y is empty)")
    series = column(chart.series) if chart.series else None
    if series is not None and chart.kind != "cohort" and len({row.get(series.key) for row in table.rows}) < 2:
        series = None  # one series (a single pipeline, branch) needs no colours and no legend
    y = tuple(column(k) for k in chart.y)
    rows: tuple[Mapping[str, Any], ...] = table.rows
    title: str | alt.TitleParams = chart.title
    if chart.kind == "bars" and series is None and len(rows) > MOST_BARS:
        # hundreds of campaigns or employees would make a bar chart pages long: the largest, in the table's order
        size = {id(row): abs(_number(row.get(y[0].key)) or 0.0) for row in rows}
        largest = {id(row) for row in sorted(rows, key=lambda row: -size[id(row)])[:MOST_BARS]}
        rows = tuple(row for row in rows if id(row) in largest)
        title = alt.TitleParams(chart.title, subtitle=f"{MOST_BARS} из {len(table.rows)}: наибольшие по "
                                f"«{y[0].title}»; все — в таблице «{table.title}»")
    return _Frame(table, column(chart.x), y, series, rows=rows, currency=report.currency, title=title)


def _number(value: Any) -> float | None:
    """A figure as a length to draw (None: not drawn)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return None


def _figure(value: Any, kind: str, frame: _Frame) -> str:
    """A figure or a category (a channel, a stage, a month) as the page's tables show it."""
    return figure_text(value, kind, currency=frame.currency)


def _axis(column: Column) -> alt.Axis:
    """A figure's axis: ticks in the ru-RU format of its kind; a count's ticks whole numbers only."""
    if column.kind == "int":
        return alt.Axis(format=_TICKS["int"], tickMinStep=1)
    return alt.Axis(format=_TICKS.get(column.kind, ",~f"))


def _unit(kind: str, frame: _Frame) -> str | None:
    """What a figure of `kind` is counted in, for an axis title or a legend: "₽", "%", "дн." (None: a count)."""
    return currency_sign(frame.currency) if kind == "money" else _UNIT.get(kind)


def _without_unit(column: Column, frame: _Frame) -> str:
    """A column's title without its unit ("+1 мес., %" → "+1 мес."), where the legend or the axis says it."""
    unit = _unit(column.kind, frame)
    return column.title.removesuffix(f", {unit}").strip() if unit else column.title


def _axis_title(column: Column, frame: _Frame) -> str:
    unit = _unit(column.kind, frame)
    return f"{column.title}, {unit}" if unit and not column.title.endswith(unit) else column.title


def _font_config(chart: Any) -> Any:
    return chart.configure(font=FONT).configure_view(stroke=None).configure_title(
        anchor="start", fontSize=15, offset=12).configure_axis(labelFontSize=12, titleFontSize=12,
                                                               labelLimit=220)


def _values_of(frame: _Frame) -> list[dict[str, Any]]:
    """The chart's data in long form: one point per row and figure; `series` is the series column's value, or the
    figure's title when a chart draws several figures."""
    points: list[dict[str, Any]] = []
    for order, row in enumerate(frame.rows):
        for column in frame.y:
            value = row.get(column.key)
            series = (_figure(row.get(frame.series.key), frame.series.kind, frame) if frame.series is not None
                      else column.title)
            raw = row.get(frame.x.key)
            points.append({"order": order, "x": _figure(raw, frame.x.kind, frame), "xraw": raw,
                           "figure": column.key, "series": series, "value": _number(value),
                           "pos": _number(value) or 0.0,
                           "label": _figure(value, column.kind, frame)})
    return points


def _funnel(frame: _Frame) -> Any:
    entries = frame.y[0]
    conversion = frame.y[1] if len(frame.y) > 1 else None
    rows = frame.rows
    first = next((r.get(entries.key) for r in rows if r.get(entries.key) is not None), None)
    values: list[dict[str, Any]] = []
    for order, row in enumerate(rows):
        count = row.get(entries.key)
        if conversion is not None:
            share_text = _figure(row.get(conversion.key), conversion.kind, frame)
        elif count is not None and first:
            # no conversion column: the share of the first stage's entries, as the reports round a share
            share_text = _figure(percent(int(count), int(first)), "percent", frame)
        else:
            share_text = _figure(None, "percent", frame)
        label = f"{_figure(count, entries.kind, frame)} · {share_text}"
        series = _figure(row.get(frame.series.key), frame.series.kind, frame) if frame.series is not None else ""
        values.append({"order": order, "stage": _figure(row.get(frame.x.key), frame.x.kind, frame),
                       "value": _number(count), "pos": _number(count) or 0.0, "label": label, "series": series})
    top = max((v["value"] or 0.0 for v in values), default=0.0) or 1.0
    base = alt.Chart(alt.Data(values=values)).encode(
        y=alt.Y("stage:N", sort=alt.EncodingSortField("order", op="min"), title=frame.x.title),
        x=alt.X("value:Q", title=entries.title, scale=alt.Scale(domain=[0, top * 1.3]), axis=_axis(entries)))
    if frame.series is not None:
        bars = base.mark_bar().encode(color=alt.Color("series:N", title=frame.series.title),
                                      yOffset="series:N")
        text = base.mark_text(align="left", dx=4).encode(x="pos:Q", text="label:N", yOffset="series:N")
    else:
        bars = base.mark_bar(color=BLUE)
        # a stage with no count still shows its label ("—") at 0
        text = base.mark_text(align="left", dx=4, color="#222").encode(x="pos:Q", text="label:N")
    return (bars + text).properties(width=WIDTH, height=alt.Step(STEP), title=frame.title)


def _bar_panel(frame: _Frame, column: Column, values: list[dict[str, Any]], width: int,
               categories: bool) -> alt.LayerChart:
    mine = [v for v in values if v["figure"] == column.key]
    numbers = [v["value"] for v in mine if v["value"] is not None]
    low, high = min([0.0, *numbers]), max([0.0, *numbers])
    span = (high - low) or 1.0
    # room for the labels beyond the longest bar on either side
    domain = [low - span * 0.35 if low < 0 else 0.0, high + span * 0.35 if high > 0 else 0.0]
    # a panel after the first repeats no category labels: they read along the row
    base = alt.Chart(alt.Data(values=mine)).encode(
        y=alt.Y("x:N", sort=alt.EncodingSortField("order", op="min"), title=frame.x.title,
                axis=alt.Axis() if categories else None),
        x=alt.X("value:Q", title=_axis_title(column, frame), scale=alt.Scale(domain=domain), axis=_axis(column)))
    if frame.series is not None:
        bars = base.mark_bar().encode(color=alt.Color("series:N", title=frame.series.title), yOffset="series:N")
        offset: dict[str, Any] = {"yOffset": "series:N"}
    else:
        bars = base.mark_bar().encode(color=alt.condition("datum.value < 0", alt.value(RED), alt.value(BLUE)))
        offset = {}
    # a label sits past its bar's end (at 0 for a figure that cannot be computed: "—")
    right = base.mark_text(align="left", dx=4, color="#222").encode(
        x="pos:Q", text="label:N", **offset).transform_filter("datum.value == null || datum.value >= 0")
    left = base.mark_text(align="right", dx=-4, color=RED).encode(
        x="pos:Q", text="label:N", **offset).transform_filter("datum.value < 0")
    return (bars + right + left).properties(width=width, height=alt.Step(STEP))


def _bars(frame: _Frame) -> Any:
    values = _values_of(frame)
    width = WIDTH if len(frame.y) == 1 else max(220, WIDTH // len(frame.y))
    panels = [_bar_panel(frame, column, values, width, position == 0) for position, column in enumerate(frame.y)]
    if len(panels) == 1:
        return panels[0].properties(title=frame.title)
    return alt.hconcat(*panels, spacing=24).properties(title=frame.title)


def _time_field(frame: _Frame, values: list[dict[str, Any]]) -> alt.X:
    """The x axis of a line: a date or a month as time, a number (days since) as a number, text in order."""
    kind = frame.x.kind
    if kind in ("date", "month"):
        for point in values:
            raw = point["xraw"]
            if kind == "month":
                start = raw if isinstance(raw, date) else date.fromisoformat(f"{str(raw)[:7]}-01")
                point["t"] = start.isoformat()
            else:
                point["t"] = raw.isoformat() if isinstance(raw, date) else str(raw)
        return alt.X("t:T", title=frame.x.title,
                     axis=alt.Axis(format="%b %Y" if kind == "month" else "%d %b", labelAngle=0,
                                   labelOverlap="greedy", labelSeparation=8))
    if kind in ("int", "days", "percent", "ratio", "money"):
        for point in values:
            point["t"] = _number(point["xraw"])
        return alt.X("t:Q", title=_axis_title(frame.x, frame), axis=alt.Axis(format=",~f", tickMinStep=1, tickCount=10,
                                                                       labelSeparation=8, labelOverlap="greedy"))
    return alt.X("x:N", sort=alt.EncodingSortField("order", op="min"), title=frame.x.title,
                 axis=alt.Axis(labelAngle=0))


def _line(frame: _Frame) -> Any:
    values = [v for v in _values_of(frame) if v["value"] is not None]
    x = _time_field(frame, values)
    first = frame.y[0]
    title = _axis_title(first, frame) if len(frame.y) == 1 else (_unit(first.kind, frame) or "")
    several = frame.series is not None or len(frame.y) > 1
    for point in values:
        point["xlabel"] = (month_text(point["xraw"]) if frame.x.kind == "month" and point["xraw"] is not None
                           else point["x"])
    base = alt.Chart(alt.Data(values=values)).encode(
        x=x, y=alt.Y("value:Q", title=title, axis=_axis(first)))
    if several:
        legend = alt.Legend(title=frame.series.title if frame.series is not None else None, orient="bottom")
        color = alt.Color("series:N", legend=legend, sort=None)
        line = base.mark_line(point=True, strokeWidth=2).encode(color=color, detail="series:N")
    else:
        line = base.mark_line(point=True, strokeWidth=2, color=BLUE)
    return line.properties(width=WIDTH + 120, height=280, title=frame.title)


def _cohort(frame: _Frame) -> Any:
    """A heat table, in long form (a series column names the cohort, x the months since, y[0] the share) or in
    wide form (x names the cohort, each y column one month since, titled "0", "1", …)."""
    cells: list[dict[str, Any]] = []
    rows = frame.rows
    if frame.series is not None:
        share = frame.y[0]
        cohort_title, since_title = frame.series.title, frame.x.title
        for order, row in enumerate(rows):
            since, value = row.get(frame.x.key), row.get(share.key)
            cells.append({"cohort": _figure(row.get(frame.series.key), frame.series.kind, frame), "order": order,
                          "since": _figure(since, frame.x.kind, frame), "sorder": _number(since),
                          "value": _number(value), "label": _figure(value, share.kind, frame)})
        kind = share.kind
    else:
        cohort_title, since_title = frame.x.title, "Месяцев с первого визита"
        for order, row in enumerate(rows):
            for position, column in enumerate(frame.y):
                cells.append({"cohort": _figure(row.get(frame.x.key), frame.x.kind, frame), "order": order,
                              "since": _without_unit(column, frame), "sorder": position,
                              "value": _number(row.get(column.key)),
                              "label": _figure(row.get(column.key), column.kind, frame)})
        kind = frame.y[0].kind
    top = max((c["value"] or 0.0 for c in cells), default=0.0) or 1.0
    domain: list[float] = [0.0, 100.0] if kind == "percent" and top <= 100 else [0.0, top]
    for cell in cells:
        cell["dark"] = cell["value"] is not None and cell["value"] > (domain[1] * 0.55)
    base = alt.Chart(alt.Data(values=cells)).encode(
        x=alt.X("since:N", sort=alt.EncodingSortField("sorder", op="min"), title=since_title,
                axis=alt.Axis(orient="top", labelAngle=0)),
        y=alt.Y("cohort:N", sort=alt.EncodingSortField("order", op="min"), title=cohort_title))
    heat = base.mark_rect(stroke="white").encode(
        color=alt.condition("datum.value == null", alt.value("#f4f4f4"),
                            alt.Color("value:Q", scale=alt.Scale(scheme="blues", domain=domain),
                                      legend=alt.Legend(title=_unit(kind, frame) or "", format=",~f"))))
    text = base.mark_text(fontSize=11).encode(
        text="label:N", color=alt.condition("datum.dark", alt.value("white"), alt.value("#222")))
    # a cell as wide as its longest text ("100,0 %", "+10 мес.") at 11 px, so the column titles never overlap
    longest = max((len(str(c[key])) for c in cells for key in ("since", "label")), default=4)
    return (heat + text).properties(width=alt.Step(max(56, 7 * longest + 14)), height=alt.Step(STEP + 4),
                                    title=frame.title)


_KINDS = {"funnel": _funnel, "bars": _bars, "line": _line, "cohort": _cohort}


def chart_spec(report: Report, chart: Chart) -> dict[str, Any]:
    """The Vega-Lite spec (a dict) that draws `chart` from its table of `report`; a ChartError when the chart
    names a table, column or kind the report does not have."""
    draw = _KINDS.get(chart.kind)
    if draw is None:
        raise ChartError(f"chart {chart.key!r}: unknown kind {chart.kind!r} (known: {', '.join(_KINDS)})")
    spec: dict[str, Any] = _font_config(draw(_frame(report, chart))).to_dict()
    return spec


_ID = re.compile(r'\bid="([^"]+)"')


def chart_svg(report: Report, chart: Chart) -> str:
    """`chart` rendered to SVG, ready to inline in a page: no data or font is fetched from anywhere, and the
    SVG's own ids (clip paths, gradients) are prefixed with the chart's key so that several charts on one page
    never point at each other's."""
    svg: str = vl_convert.vegalite_to_svg(chart_spec(report, chart), format_locale="ru-RU",
                                          time_format_locale="ru-RU", allowed_base_urls=[])
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", chart.key)
    for old in set(_ID.findall(svg)):
        svg = svg.replace(f'id="{old}"', f'id="{prefix}-{old}"').replace(f"url(#{old})", f"url(#{prefix}-{old})")
    return svg
