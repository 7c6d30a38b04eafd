"""A refunded visit (`visit.refunded`) undone in the programs' rows (pure).

Every positive row a program made for the visit (points, cashback, a visit counted towards a free one, a free
visit earned, the referral reward of both clients) gets a `reverse` row: negative, `detail.row` naming it. A full
refund (no `amount`, or as much as the visit cost) reverses what is left of each row (`reverse/<row id>`); a
partial one reverses the points and cashback in proportion (`amount` of the payment in `detail.base`, rounded
half up to the kopeck; `reverse/<row id>/<refund event id>`, so two partial refunds are two rows), and never more
than the row brought in all. A reversal never takes a balance below zero: when the client has spent (or lost to
expiry) the points meanwhile, it takes what is available and `detail` says how much it could not (`short`).
Tiers are not moved back: they are reviewed on the next visit or when the window drops one.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from automator.history import HistoryError, minor_units, money_text
from automator.loyalty import made
from automator.loyalty.decision import Outcome, Reading
from automator.loyalty.ledger import Entry, balance, take
from automator.loyalty.terms import share
from automator.model import Event

REFUNDED = "visit.refunded"
PROGRAM_RULE = "program:"


def visit_id(event: Event) -> str | None:
    """History's id of the visit a refund names: `<source>:<visit>` (as `history.visit_of` made it)."""
    ident = event.data.get("visit")
    return None if ident in (None, "") else f"{event.source}:{ident}"


def refunded(reading: Reading, event: Event, client: str, at: datetime) -> Outcome:
    """The reversals of one refund (see the module's docstring); a refund of a visit no program rewarded makes
    nothing."""
    visit = visit_id(event)
    if visit is None:
        return Outcome()
    mine = _rewarded(reading.ledger_of(client), visit)
    cost = next((v.amount for v in reading.visits_of(client) if v.id == visit), None)
    try:
        amount = minor_units(event.data["amount"]) if event.data.get("amount") not in (None, "") else None
    except HistoryError:
        amount = None  # an amount that is not money is taken as the whole visit refunded
    partial = amount is not None and cost is not None and amount < cost
    referrers = {str(e.detail["referrer"]) for e in mine if e.detail.get("mechanic") == "referral"
                 and e.detail.get("referrer")}
    rows: list[Entry] = []
    for owner in [client, *sorted(referrers)]:
        ledger = reading.ledger_of(owner)
        for entry in _rewarded(ledger, visit):
            reversal = _reversal(ledger, entry, event, amount if partial else None, at)
            if reversal is not None:
                ledger = [*ledger, reversal]
                rows.append(reversal)
    return Outcome(entries=tuple(rows))


def _rewarded(ledger: Iterable[Entry], visit: str) -> list[Entry]:
    return [e for e in ledger if e.visit == visit and e.amount > 0 and e.rule.startswith(PROGRAM_RULE)]


def _reversal(ledger: Sequence[Entry], entry: Entry, event: Event, partial: int | None,
              at: datetime) -> Entry | None:
    """The reversal of one row: all that is left of it on a full refund (`partial` None); on a partial one the
    refunded share of a points row, and nothing of a counted visit or a referral (the visit is still paid)."""
    left = entry.amount + sum(e.amount for e in ledger if e.kind == "reverse" and e.detail.get("row") == entry.id)
    if partial is None:
        return _made(ledger, entry, event, f"reverse/{entry.id}", left, at)
    base = entry.detail.get("base")
    if base is None or not minor_units(base):
        return None
    asked = min(left, share(entry.amount, Decimal(100) * partial / minor_units(base)))
    return _made(ledger, entry, event, f"reverse/{entry.id}/{event.id}", asked, at)


def _made(ledger: Sequence[Entry], entry: Entry, event: Event, ident: str, asked: int, at: datetime) -> Entry | None:
    if asked <= 0 or any(e.id == ident for e in ledger):
        return None
    amount = min(asked, balance(ledger, entry.account).available(at))
    money = entry.account.startswith("points:")
    detail: dict[str, object] = {"row": entry.id, "asked": money_text(asked) if money else asked}
    if amount < asked:
        detail["short"] = money_text(asked - amount) if money else asked - amount
        detail["note"] = "already spent or expired: what is left is reversed"
    if amount <= 0:
        return None
    program = entry.rule[len(PROGRAM_RULE):]
    return take(ledger, made.row(program, event, ident, entry.client, entry.account, "reverse", -amount, at,
                                 "Отмена начисления: возврат визита", visit=entry.visit, detail=detail))
