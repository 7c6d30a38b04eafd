"""Gift certificate and abonement types as loyalty.yaml gives them (compiled by config/loyalty_instruments.py), and
what both kinds of instrument share: their numbers, the day they lapse, the refusal a rule or a visit gets.

Instruments lapse at the end of a day in the project's timezone: "365d" from an issue on 1 March 2026 means the
certificate is good through 1 March 2027 and lapses at the midnight that ends that day (local), so that a client
told "до 1 марта" can still use it on 1 March.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from automator.clock import Duration, parse_duration
from automator.history import money_text
from automator.loyalty.ledger import end_of

# Certificates are money (kopecks in rows); abonements are visits.
CERTIFICATE = "certificate"
ABONEMENT = "abonement"
# Digits of a number the product makes up (from the effect's key): 10**10 numbers, so two made the same are a
# one-in-ten-billion chance; the issue refuses a number already held all the same.
NUMBER_DIGITS = 10


class InstrumentError(ValueError):
    """What a certificate or an abonement cannot do (spend more than is left, freeze twice, …): a rule's run fails
    with it, a visit's payment is reported with it."""


@dataclass(frozen=True, slots=True)
class CertificateType:
    """One `certificates:` entry: a gift certificate's nominal, life and whether it is spent in parts."""

    name: str
    title: str
    nominal: int | None  # minor units; None: any nominal, given when the certificate is issued
    expires: Duration | None  # from the issue day; None: it never lapses
    partial: bool = True  # spent in parts; False: the first payment takes it whole (the rest is lost)
    prefix: str = ""  # before the digits of a number the product makes up: "GC-" → GC-0123456789

    def describe_nominal(self) -> str:
        """The nominal as an admin reads it: "3000.00", or "any"."""
        return money_text(self.nominal) if self.nominal is not None else "any"


@dataclass(frozen=True, slots=True)
class FreezeLimits:
    """How long and how often an abonement of a type may be frozen, over its whole life."""

    max_days: int
    times: int


@dataclass(frozen=True, slots=True)
class AbonementType:
    """One `abonements:` entry: N visits of some services (by title) or service categories, their life, freezing."""

    name: str
    title: str
    visits: int
    services: tuple[str, ...] = ()  # service titles as Visit.services carries them
    categories: tuple[str, ...] = ()  # service categories as Visit.category carries them
    expires: Duration | None = None  # from the issue day; None: it never lapses
    freeze: FreezeLimits | None = None  # None: it cannot be frozen
    prefix: str = ""
    # Sold in the booking system loyalty.yaml's `sync:` names, its number being that system's abonement id: a
    # freeze is then mirrored there (the product's own abonements exist nowhere else to mirror to).
    synced: bool = False


def last_day(issued: datetime, expires: Duration | None, tz: ZoneInfo) -> date | None:
    """The last day an instrument issued at `issued` is good: the issue's local day plus `expires` (calendar days
    and months); None when it never lapses."""
    if expires is None:
        return None
    return expires.add_to_date(issued.astimezone(tz).date())


def given_last_day(given: Any, issued: datetime, default: Duration | None, tz: ZoneInfo) -> date | None:
    """The last day an issue's `expires:` gives: a date (the last day itself, "2027-03-01"), a span from the issue
    day ("365d", "6mo"), or, when not given, the type's own span; an InstrumentError for anything else."""
    if given in (None, ""):
        return last_day(issued, default, tz)
    if isinstance(given, datetime):
        given = given.astimezone(tz).date()
    if isinstance(given, date):
        day = given
    else:
        text = str(given).strip()
        try:
            day = date.fromisoformat(text)
        except ValueError:
            try:
                span = parse_duration(text)
            except (ValueError, TypeError):
                raise InstrumentError(f"expires {text!r} is neither a date (2027-03-01) nor a span of days, "
                                      f"weeks or months (365d, 6mo)") from None
            if span.seconds or not (span.days or span.months):
                raise InstrumentError(f"expires {text!r} is not whole days: an instrument lapses at the end of a "
                                      f"day") from None
            day = span.add_to_date(issued.astimezone(tz).date())
    if day < issued.astimezone(tz).date():
        raise InstrumentError(f"expires {day.isoformat()} is before the day it is issued")
    return day


def lapse_moment(day: date | None, tz: ZoneInfo) -> datetime | None:
    """The moment an instrument good through `day` lapses: the local midnight that ends it, in UTC."""
    return end_of(day, tz) if day is not None else None


def local_day(at: datetime, tz: ZoneInfo) -> date:
    """The calendar day of a moment in the project's timezone."""
    return at.astimezone(tz).date()


def made_up_number(key: str, prefix: str) -> str:
    """A number for an instrument issued without one: digits from the issuing effect's key, so that deciding the
    same event again makes the same number (the row is then kept once)."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return f"{prefix}{digest % 10 ** NUMBER_DIGITS:0{NUMBER_DIGITS}d}"


def normal_title(text: str) -> str:
    """A service's or category's title as it is compared: spaces collapsed, case ignored ("Массаж  спины" is
    "массаж спины")."""
    return " ".join(str(text).split()).casefold()
