"""The pieces the ledger's operations are made of, at their edges: an action's amount in kopecks (half up; a
float, a negative or a non-number refused), an accrual's `expires:` (a duration, a last day, a moment), and the
"expiring" notice of each kind of account (only for lots of that moment still alive)."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from automator.actions.loyalty import expires_at, minor_units_rounded
from automator.core.outcome import StepError
from automator.loyalty.expiry import notice_event, timers_for
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.ledger import Entry
from automator.model import Event

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MSK)
CAUSE = Event(id="t@1", type="timer.fired", at=NOW, depth=0)


@pytest.mark.parametrize("given, kopecks", [
    ("12.345", 1235), ("0.125", 13), ("0.124", 12), ("0.005", 1), ("150", 15000), (150, 15000), ("99,50", 9950),
    (Decimal("2.675"), 268), ("1500.00", 150000)])
def test_an_amount_is_kopecks_rounded_half_up(given: object, kopecks: int) -> None:
    assert minor_units_rounded(given, "loyalty.accrue") == kopecks


@pytest.mark.parametrize("given, said", [
    (1.5, "is not an amount"), ("-1", "must be more than zero"), ("0", "must be more than zero"),
    ("abc", "is not an amount"), ("", "is not an amount"), (True, "is not an amount"), ("NaN", "more than zero")])
def test_an_amount_that_is_not_money_is_refused(given: object, said: str) -> None:
    with pytest.raises(StepError, match=said):
        minor_units_rounded(given, "loyalty.accrue")


def run_at(now: datetime) -> SimpleNamespace:
    return SimpleNamespace(now=now, ectx=SimpleNamespace(tz=MSK))


def test_expires_is_a_duration_a_last_day_or_a_moment() -> None:
    run = run_at(NOW)
    assert expires_at("90d", run) == NOW + timedelta(days=90)  # type: ignore[arg-type]
    assert expires_at("1mo", run) == datetime(2026, 4, 2, 10, 0, tzinfo=MSK)  # type: ignore[arg-type]
    # A last day: spendable through it, in the project's time zone; lapsing at the midnight after it.
    assert expires_at("2026-03-31", run) == datetime(2026, 4, 1, 0, 0, tzinfo=MSK)  # type: ignore[arg-type]
    assert expires_at("2026-06-01T12:00:00+03:00", run) == datetime(2026, 6, 1, 12, tzinfo=MSK)  # type: ignore[arg-type]
    with pytest.raises(StepError, match="is not after now"):
        expires_at("2026-03-01", run)  # type: ignore[arg-type]
    with pytest.raises(StepError, match="neither a duration"):
        expires_at("soon", run)  # type: ignore[arg-type]


def lot(ident: str, account: str, amount: int, expires: datetime | None, kind: str = "accrue") -> Entry:
    return Entry(id=ident, client="7", account=account, kind=kind, amount=amount, at=NOW, expires_at=expires)


def test_timers_are_set_per_expiry_moment_and_a_notice_only_when_it_is_ahead() -> None:
    end = NOW + timedelta(days=30)
    rows = [lot("a", "points:bonus", 100, end), lot("b", "points:bonus", 200, end),
            lot("c", "points:bonus", 50, NOW + timedelta(days=3)), lot("d", "points:bonus", 70, None),
            lot("e", "nth:haircut", 1, end)]
    found = {(t.id, t.due_at) for t in timers_for(LoyaltyConfig(), rows, NOW)}
    assert found == {("loyalty/7/points:bonus/expire/2026-04-01T07:00:00Z", end),
                     ("loyalty/7/points:bonus/notice/2026-04-01T07:00:00Z", end - timedelta(days=7)),
                     ("loyalty/7/points:bonus/expire/2026-03-05T07:00:00Z", NOW + timedelta(days=3)),
                     ("loyalty/7/nth:haircut/expire/2026-04-01T07:00:00Z", end)}  # a counter has no notice event


def test_each_kind_of_account_has_its_notice_naming_what_is_left_by_then() -> None:
    soon, later = NOW + timedelta(days=5), NOW + timedelta(days=6)
    points = [lot("a", "points:bonus", 10000, soon), lot("b", "points:bonus", 2550, later),
              lot("c", "points:bonus", 999, None), lot("s", "points:bonus", -4000, None, kind="spend")]
    found = notice_event(points, "points:bonus", "7", later, NOW, CAUSE, MSK)
    assert found is not None and (found.id, found.type, dict(found.data)) == (
        "t@1>loyalty.points_expiring", "loyalty.points_expiring",
        {"program": "bonus", "amount": "85.50", "expires_at": "2026-03-08T10:00:00+03:00"})
    certificate = [lot("i", "certificate:GC-1", 500000, soon, kind="issue"),
                   lot("u", "certificate:GC-1", -120000, None, kind="spend")]
    assert dict(notice_event(certificate, "certificate:GC-1", "7", soon, NOW, CAUSE, MSK).data) == {  # type: ignore[union-attr]
        "number": "GC-1", "balance": "3800.00", "expires_at": "2026-03-07T10:00:00+03:00"}
    # An abonement's notices are its own (a freeze moves its last day): the generic one gives none.
    abonement = [lot("i", "abonement:77-3", 10, soon, kind="issue"), lot("u", "abonement:77-3", -4, None, kind="use")]
    assert notice_event(abonement, "abonement:77-3", "7", soon, NOW, CAUSE, MSK) is None


def test_no_notice_for_a_lot_spent_or_gone() -> None:
    soon = NOW + timedelta(days=5)
    spent = [lot("a", "points:bonus", 10000, soon), lot("s", "points:bonus", -10000, None, kind="spend")]
    assert notice_event(spent, "points:bonus", "7", soon, NOW, CAUSE, MSK) is None
    assert notice_event([lot("a", "points:bonus", 10000, soon)], "points:bonus", "7", soon, soon, CAUSE, MSK) is None
    assert notice_event([lot("a", "discount:welcome", 1, soon)], "discount:welcome", "7", soon, NOW, CAUSE,
                        MSK) is None
