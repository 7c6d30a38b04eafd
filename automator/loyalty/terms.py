"""A loyalty program's terms as loyalty.yaml states them (compiled by config/loyalty_programs.py), and the exact
arithmetic every mechanic shares: a percentage of a payment in kopecks, and the moment a lot lapses."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from automator.clock import Duration
from automator.loyalty.ledger import end_of

TIERS_BY = ("visits", "spend")


@dataclass(frozen=True, slots=True)
class Tier:
    """One level of a cumulative discount: reached at `threshold` (visits, or minor units of spend)."""

    name: str
    threshold: int
    discount: Decimal  # percent off the client's checks while they hold the tier
    category: str | None = None  # the CRM category a client of this tier is given
    title: str = ""


@dataclass(frozen=True, slots=True)
class Tiers:
    """Cumulative discount tiers: counted by visits or by spend, over all history or the last `window`."""

    by: str  # one of TIERS_BY
    levels: tuple[Tier, ...]  # thresholds ascending
    window: Duration | None = None

    def level(self, measure: int) -> Tier | None:
        """The highest tier whose threshold `measure` reaches (None below the first one)."""
        reached = None
        for tier in self.levels:
            if measure >= tier.threshold:
                reached = tier
        return reached

    def get(self, name: str | None) -> Tier | None:
        """The tier called `name`."""
        return next((t for t in self.levels if t.name == name), None)


@dataclass(frozen=True, slots=True)
class Accrual:
    """Points (or cashback) as a percentage of each payment; per service category where `categories` says."""

    percent: Decimal
    categories: Mapping[str, Decimal] = field(default_factory=dict)
    expires: Duration | None = None  # the lot lapses at the end of the day this long after the visit

    def percent_of(self, category: str | None) -> Decimal:
        """The percentage a payment for a service of `category` earns."""
        return self.categories.get(category, self.percent) if category is not None else self.percent


@dataclass(frozen=True, slots=True)
class TimedDiscount:
    """A discount for a while ("−20 % for 14 days"): granted on joining the program, or by a rule."""

    percent: Decimal
    lasts: Duration


@dataclass(frozen=True, slots=True)
class EveryNth:
    """Every Nth paid visit of a service earns a free visit of it; `services` empty: every service counts."""

    every: int
    services: frozenset[str] = frozenset()

    def counts(self, service: str) -> bool:
        """Whether visits of `service` count towards a free one."""
        return not self.services or service in self.services


@dataclass(frozen=True, slots=True)
class Referral:
    """Points for the referrer and for the referred client, on the referred client's first paid visit."""

    referrer: int  # minor units
    referred: int
    expires: Duration | None = None


@dataclass(frozen=True, slots=True)
class Program:
    """One loyalty program of loyalty.yaml; each mechanic is optional."""

    name: str
    title: str = ""
    default: bool = False  # the program of a client whose segment names none
    segments: tuple[str, ...] = ()  # segments whose clients are in it (besides a segment's own `loyalty:`)
    tiers: Tiers | None = None
    points: Accrual | None = None
    cashback: Accrual | None = None
    spend_cap: Decimal = Decimal(100)  # the share of a check (percent) points may pay
    join_discount: TimedDiscount | None = None
    first_visit: Decimal | None = None  # percent off the first paid visit
    every_nth: EveryNth | None = None
    referral: Referral | None = None


def share(amount: int, percent: Decimal) -> int:
    """`percent` of `amount` minor units, rounded half up to a whole minor unit (per payment: each visit's points
    are rounded on their own, so 5 % of 1 999.99 ₽ is 100.00, not 99.9995)."""
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def end_of_day_after(at: datetime, span: Duration, tz: ZoneInfo) -> datetime:
    """When a lot made at `at` that lasts `span` lapses: the end of the day `span` after `at`'s day, in the
    project's time zone (points earned on 2 March with `expires: 365d` are spendable all of 2 March next year and
    lapse at its midnight). UTC."""
    return end_of(span.add_to_date(at.astimezone(tz).date()), tz)


def spend_limit(program: Program, check: int, available: int) -> int:
    """The most points (minor units) a check of `check` minor units may be paid with: the program's `spend_cap`
    share of it (rounded down to the kopeck: the cap is never exceeded), and no more than the client has."""
    cap = int(Decimal(check) * program.spend_cap / 100)
    return max(0, min(cap, available))
