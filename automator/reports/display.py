"""How a report's figures read in Russian (pure): money "1 234 567,89 ₽", a share "12,5 %", a count "1 234",
a date "06.12.2026", a month "март 2026", and "—" for a figure that cannot be computed. The HTML page, its charts'
labels and the summary a message carries all show a figure through `figure_text`, so they agree to the kopeck.

Digits are grouped by a no-break space (U+00A0) so that "1 234 ₽" never breaks across lines on a page; the
summary of a message asks for plain spaces (`space=" "`), which every SMS gateway and mail client keeps.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

NBSP = "\u00a0"
MINUS = "\u2212"  # the typographic minus: "−1 200,00 ₽" reads as a loss, not as a dash
NONE = "—"
MONTHS = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь", "октябрь",
          "ноябрь", "декабрь")
# How a currency's amounts end ("1 500,00 ₽"); another currency shows its ISO code ("1 500,00 GEL").
SIGNS = {"RUB": "₽", "KZT": "₸", "BYN": "Br", "UAH": "₴", "EUR": "€", "USD": "$", "GBP": "£"}


def grouped(number: Decimal | int, *, places: int | None = None, space: str = NBSP) -> str:
    """`number` with its thousands grouped by `space` and a decimal comma; `places` fixes the digits after the
    comma (rounded half up), None keeps the number's own (a share the report rounded to one digit stays so)."""
    value = Decimal(number)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = MINUS if value < 0 else ""
    whole, _, fraction = format(abs(value), "f").partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    text = space.join(groups)
    return f"{sign}{text},{fraction}" if fraction else f"{sign}{text}"


def month_text(value: str | date) -> str:
    """A month ("2026-03" or a date in it) as the owner reads it: "март 2026"."""
    if isinstance(value, date):
        year, month = value.year, value.month
    else:
        year_text, _, month_text_ = str(value).partition("-")
        year, month = int(year_text), int(month_text_[:2])
    return f"{MONTHS[month - 1]} {year}"


def moment_text(value: datetime) -> str:
    """A moment as "06.12.2026 20:14" with its zone's name when it has one ("06.12.2026 20:14 UTC")."""
    zone = value.tzname()
    return value.strftime("%d.%m.%Y %H:%M") + (f" {zone}" if zone else "")


def currency_sign(currency: str) -> str:
    """The sign money of `currency` (ISO 4217) is shown with: ₽ for RUB, else its sign or its code."""
    return SIGNS.get(currency.upper(), currency.upper())


def figure_text(value: Any, kind: str, *, space: str = NBSP, currency: str = "RUB") -> str:
    """One figure of a column of `kind` (automator.reports.model.COLUMN_KINDS) as the page and a message show it;
    "—" for None (a figure that cannot be computed); money in major units of `currency`, with its kopecks."""
    if value is None:
        return NONE
    if kind == "money":
        return f"{grouped(Decimal(value), places=2, space=space)}{space}{currency_sign(currency)}"
    if kind == "percent":
        return f"{grouped(Decimal(value), space=space)}{space}%"
    if kind == "ratio":
        return f"×{grouped(Decimal(value), space=space)}"
    if kind == "days":
        return f"{grouped(Decimal(value), space=space)}{space}дн."
    if kind == "int":
        return grouped(int(value), space=space)
    if kind == "date":
        return value.strftime("%d.%m.%Y") if isinstance(value, date) else str(value)
    if kind == "month":
        return month_text(value)
    if isinstance(value, datetime):
        return moment_text(value)
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, (int, Decimal)):
        return grouped(value, space=space)
    return str(value)


def period_text(start: date, end: date) -> str:
    """A report's period, both ends inclusive: "01.11.2026 — 30.11.2026" (one day: just that day)."""
    if start == end:
        return start.strftime("%d.%m.%Y")
    return f"{start.strftime('%d.%m.%Y')} — {end.strftime('%d.%m.%Y')}"
