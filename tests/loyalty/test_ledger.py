"""The ledger's fold: lots, what expires first is spent first, expiry is exclusive, nothing goes below zero."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from automator.loyalty.ledger import Entry, LedgerError, balance, expiry_rows, take

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)
POINTS = "points:gold"


def accrue(ident: str, amount: int, at: datetime, expires: datetime | None) -> Entry:
    return Entry(id=ident, client="anna", account=POINTS, kind="accrue", amount=amount, at=at, expires_at=expires)


def spend(ident: str, amount: int, at: datetime) -> Entry:
    return Entry(id=ident, client="anna", account=POINTS, kind="spend", amount=-amount, at=at)


def test_spending_takes_from_the_lot_expiring_first() -> None:
    rows = [accrue("a", 10000, T0, T0 + 30 * DAY), accrue("b", 5000, T0 + DAY, T0 + 10 * DAY),
            accrue("c", 700, T0 + DAY, None), spend("s", 6000, T0 + 2 * DAY)]
    found = balance(rows, POINTS)
    assert found.total == 9700
    assert [(lot.entry, lot.left) for lot in found.lots] == [("a", 9000), ("c", 700)]


def test_a_lot_is_spendable_until_its_expiry_moment_and_not_at_it() -> None:
    rows = [accrue("a", 10000, T0, T0 + DAY)]
    assert take(rows, spend("s", 10000, T0 + DAY - timedelta(microseconds=1))).amount == -10000
    with pytest.raises(LedgerError, match="10000 asked, 0 available"):
        take(rows, spend("s", 10000, T0 + DAY))


def test_spending_more_than_the_balance_is_refused_and_says_what_is_available() -> None:
    rows = [accrue("a", 2550, T0, None), spend("s1", 1000, T0 + DAY)]
    with pytest.raises(LedgerError, match="1551 asked, 1550 available"):
        take(rows, spend("s2", 1551, T0 + 2 * DAY))
    with pytest.raises(LedgerError):
        balance([*rows, spend("s2", 1551, T0 + 2 * DAY)], POINTS)


def test_expiry_writes_off_what_is_left_of_each_lapsed_lot_once_at_its_own_moment() -> None:
    rows = [accrue("a", 10000, T0, T0 + 10 * DAY), accrue("b", 3000, T0, T0 + 40 * DAY), spend("s", 4000, T0 + DAY)]
    due = expiry_rows(rows, POINTS, "anna", T0 + 20 * DAY, event="tick")
    assert [(e.id, e.amount, e.at, dict(e.detail)) for e in due] == [
        ("expire/a", -6000, T0 + 10 * DAY, {"lot": "a"})]
    after = [*rows, *due]
    assert balance(after, POINTS).total == 3000
    assert expiry_rows(after, POINTS, "anna", T0 + 20 * DAY) == []  # written once: nothing left to expire
    assert expiry_rows(rows, POINTS, "anna", T0 + 10 * DAY - timedelta(seconds=1)) == []  # not before its moment


def test_other_accounts_rows_are_not_folded_in() -> None:
    rows = [accrue("a", 100, T0, None), Entry(id="c", client="anna", account="certificate:A-1", kind="issue",
                                               amount=300000, at=T0)]
    assert balance(rows, POINTS).total == 100
    assert balance(rows, "certificate:A-1").total == 300000
