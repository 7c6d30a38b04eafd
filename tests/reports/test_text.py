"""How figures are written: money with kopecks and grouped thousands, "—" for what cannot be computed, CSV plain."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D

from automator.reports.figures import per, percent, rounded
from automator.reports.model import Column, Report, Table
from automator.reports.text import render_csv, render_json, show


def test_show() -> None:
    assert show(D("1234567.89"), "money") == "1 234 567,89"
    assert show(D("-56.7"), "percent") == "-56,7"
    assert show(None, "money") == "—"
    assert show(12345, "int") == "12 345"
    assert show(date(2026, 3, 1), "date") == "01.03.2026"


def test_rounding_is_half_up_and_exact() -> None:
    assert percent(1, 8) == D("12.5") and percent(1, 3) == D("33.3") and percent(2, 3) == D("66.7")
    assert percent(1, 0) is None
    assert rounded(-85, 150, 1) == D("-0.6")     # −0.5666… away from zero
    assert per(1000001, 2) == D("5000.01")        # 500000.5 kopecks → half up
    assert per(None, 3) is None and per(100, 0) is None


def test_csv_and_json_keep_numbers_plain() -> None:
    table = Table("t", "T", (Column("a", "A", "money"), Column("b", "B", "percent")),
                  ({"a": D("1234567.89"), "b": None},), {"a": D("1.00"), "b": D("12.5")})
    found = Report("channels", "x", date(2026, 3, 1), date(2026, 3, 31), datetime(2026, 4, 1, tzinfo=timezone.utc),
                   (table,))
    assert render_csv(found) == "a,b\n1234567.89,\n1.00,12.5\n"
    assert '"a": "1234567.89"' in render_json(found) and '"from": "2026-03-01"' in render_json(found)
