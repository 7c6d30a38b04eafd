"""Exact figures for the reports (pure): integer minor units to money, shares and ratios rounded half up, seconds to
days. No float touches a figure: every rounding is integer arithmetic, so a report matches a hand computation.
"""
from __future__ import annotations

from decimal import Decimal

from automator.history import MINOR_DIGITS, average

DAY = 86400


def money(minor: int | None) -> Decimal | None:
    """Minor units (kopecks) as major units with their kopecks: 123456 → Decimal('1234.56')."""
    return None if minor is None else Decimal(int(minor)).scaleb(-MINOR_DIGITS)


def rounded(numerator: int, denominator: int, places: int = 1) -> Decimal | None:
    """numerator / denominator rounded half up (away from zero) to `places` decimals; None when the denominator
    is 0."""
    if not denominator:
        return None
    scaled = abs(numerator) * 10 ** places
    quotient = (2 * scaled + abs(denominator)) // (2 * abs(denominator))
    sign = -1 if (numerator < 0) != (denominator < 0) and numerator else 1
    return Decimal(sign * quotient).scaleb(-places)


def percent(part: int, whole: int) -> Decimal | None:
    """part of whole in percent, one decimal, rounded half up: percent(1, 3) → Decimal('33.3')."""
    return rounded(100 * part, whole, 1)


def per(total_minor: int | None, count: int) -> Decimal | None:
    """Money per one (an average check, a cost per lead): minor units divided, rounded half up to a kopeck
    (automator.history.average, as a client's average check is); None when there is nothing to divide by or no
    total."""
    if total_minor is None or not count:
        return None
    return money(average(int(total_minor), count))


def days(seconds: int | None) -> Decimal | None:
    """Seconds as days with one decimal, rounded half up."""
    return None if seconds is None else rounded(int(seconds), DAY, 1)
