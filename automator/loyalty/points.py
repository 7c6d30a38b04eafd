"""Points and cashback on a paid visit (pure): `accrue` rows on the client's `points:<program>` account, each a
lot that lapses at the end of its last day (the ledger helper's expiry writes it off and sends the notices)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from automator.history import money_text
from automator.loyalty import made
from automator.loyalty.ledger import Entry, account
from automator.loyalty.terms import Accrual, Program, end_of_day_after, share
from automator.model import Event, Visit

REASONS = {"points": "Начисление {percent} % за визит", "cashback": "Кешбэк {percent} % за визит"}


def accruals(program: Program, visit: Visit, cause: Event, base: str, tz: ZoneInfo) -> list[Entry]:
    """The points and the cashback one paid visit earns (none for an unpaid one, or a share that rounds to 0):
    each `percent` (of the visit's service category, where the program sets one) of the payment, rounded half up
    to the kopeck per visit; the row's id is `<base>/points` or `<base>/cashback`."""
    rows: list[Entry] = []
    terms: tuple[tuple[str, Accrual | None], ...] = (("points", program.points), ("cashback", program.cashback))
    for mechanic, accrual in terms:
        if accrual is None or visit.amount <= 0:
            continue
        percent = accrual.percent_of(visit.category)
        amount = share(visit.amount, percent)
        if amount <= 0:
            continue
        rows.append(made.row(program.name, cause, f"{base}/{mechanic}", visit.client,
                             account("points", program.name), "accrue", amount, visit.at,
                             REASONS[mechanic].format(percent=percent), expires_at=lapses(accrual, visit.at, tz),
                             visit=visit.id, detail={"mechanic": mechanic, "percent": str(percent),
                                                     "base": money_text(visit.amount), "category": visit.category}))
    return rows


def lapses(accrual: Accrual, at: datetime, tz: ZoneInfo) -> datetime | None:
    """When points made at `at` lapse (None: never)."""
    return end_of_day_after(at, accrual.expires, tz) if accrual.expires is not None else None
