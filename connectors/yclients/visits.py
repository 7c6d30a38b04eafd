"""The `visit.completed` of a YCLIENTS record whose client came (attendance 1): when, where, what, by whom, and
what it cost, money as exact decimal text.

One visit of automator's history is one YCLIENTS record: a YCLIENTS visit (`visit_id`) groups every record of one
coming of a client, each with its own services, master and payments (reference part 2 §1.4.1: the paid amount is
the record's), so the visit's id and its delivery are the record's — keyed on `visit_id`, a second record of the
same visit would be taken for the first and its money lost.

The amount (reference part 2 §1.4.1, §1.4.4): the record's `finance_transactions` when the answer carries them
(the list asked with `include_finance_transactions=1`: what was paid), else the services' `cost_to_pay` (what the
visit was priced at; a webhook carries no payments: YCLIENTS reports them as separate `finances_operation`
resources, which rules do not read). No source says the transactions' sign convention for a refund; they are
summed as given, and a sum below zero (a refund larger than the payments listed, such as a prepayment returned on
this record) is 0: the client came, which the history keeps, and paid nothing for it on balance; a visit's amount
is never negative in the history. Money given back later arrives as a `finances_operation` webhook: `refunded`
reads it as the canonical `visit.refunded` of that record's visit. A number that is not money (text, infinity, or a magnitude past
`history`'s 15 digits, such as "1e30") is not read, as an unknown amount is not.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from .mapping import parse_datetime

ARRIVED = 1  # «Пользователь пришел, услуги оказаны» (reference part 1 §2.3)
CURRENCY = "RUB"  # YCLIENTS answers carry no currency; the companies this serves count in roubles
CENT = Decimal("0.01")
LIMIT = Decimal(10) ** 15  # the largest amount the history keeps has 15 digits before the point


def arrived(record: Mapping[str, Any]) -> bool:
    """Whether the record says the client came (its attendance, else its visit's)."""
    for key in ("attendance", "visit_attendance"):
        if record.get(key) not in (None, ""):
            try:
                return int(record[key]) == ARRIVED
            except (TypeError, ValueError):
                return False
    return False


def money(value: Any) -> Decimal | None:
    """A number as YCLIENTS writes money (an int, a float, a numeric string) as an exact Decimal; None if not one."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        # str() first: a float's shortest repr is what the API wrote (1500.5, not 1500.49999…).
        found = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return found if found.is_finite() and abs(found) < LIMIT else None


def amount(record: Mapping[str, Any]) -> Decimal | None:
    """What the visit came to: the sum of its payments when the record carries them, else of its services'
    cost to pay; None when neither is known."""
    paid = record.get("finance_transactions")
    if isinstance(paid, list) and paid:
        sums = [money(t.get("amount")) for t in paid if isinstance(t, Mapping)]
        if sums and all(s is not None for s in sums):
            return _total(sums)
    services = record.get("services")
    if not isinstance(services, list) or not services:
        return None
    costs = [money(s.get("cost_to_pay", s.get("cost"))) for s in services if isinstance(s, Mapping)]
    if not costs or any(c is None for c in costs):
        return None
    return _total(costs)


def _total(amounts: list[Decimal | None]) -> Decimal:
    """The sum of amounts all read, to the kopeck; a sum below zero (refunds over the payments) is 0."""
    return max(sum((a for a in amounts if a is not None), Decimal(0)), Decimal(0)).quantize(CENT)


def _category(service: Mapping[str, Any]) -> str | None:
    # Records carry no category of their services in any captured payload; a payload that does (an object with
    # a title, or its title) is read.
    found = service.get("category") or service.get("service_category")
    if isinstance(found, Mapping):
        found = found.get("title")
    return str(found) if found not in (None, "") else None


def completed(record: Mapping[str, Any], *, branch: str | None, tz: tzinfo | None) -> dict[str, Any] | None:
    """The `visit.completed` data of an arrived record with its client, time and services; None for any other
    (a partial webhook is not a visit yet: the full record, read back or polled, is)."""
    client = record.get("client")
    services = record.get("services")
    starts = parse_datetime(record.get("datetime"), tz) or parse_datetime(record.get("date"), tz)
    if (not arrived(record) or record.get("deleted") or not isinstance(client, Mapping) or not client.get("id")
            or not isinstance(services, list) or starts is None):
        return None
    items = [s for s in services if isinstance(s, Mapping)]
    staff = record.get("staff")
    total = amount(record)
    data: dict[str, Any] = {
        "visit": str(record["id"]), "booking": str(record["id"]),
        "at": starts.isoformat(), "services": [str(s["title"]) for s in items if s.get("title")],
        "currency": CURRENCY}
    if branch:
        data["branch"] = branch
    categories = [c for c in (_category(s) for s in items) if c]
    if categories:
        data["service_category"] = categories[0]
    if isinstance(staff, Mapping) and staff.get("name"):
        data["staff"] = str(staff["name"])
    if total is not None:
        data["amount"] = str(total)
    return data


def delivery_id(record: Mapping[str, Any]) -> str:
    """One record's completion, whichever change, webhook, poll or backfill reports it: the journal keeps it once."""
    return f"visit:record-{record['id']}:completed"


def refunded(operation: Mapping[str, Any]) -> tuple[str, dict[str, Any], str] | None:
    """(client id, `visit.refunded` data, delivery id) of a `finances_operation` webhook that gives a record's money
    back; None for any other operation.

    YCLIENTS sends no refund webhook (reference part 2 §1.6). A cash-desk operation of a record with a negative
    amount is read as money of that record's visit given back, `amount` its size; that the cash desk writes a
    refund so is an assumption no capture shows. An operation without a record (a prepayment, goods) or without
    a client (`client` is `[]` then) names no visit to reverse, and a payment deleted afterwards is not read as
    a refund. The delivery id is the operation's, so a repeated webhook is kept once.
    """
    client = operation.get("client")
    total = money(operation.get("amount"))
    record = operation.get("record_id")
    if (total is None or total >= 0 or not isinstance(client, Mapping) or not str(client.get("id") or "").isdigit()
            or not str(record or "").isdigit() or str(record) == "0" or not str(operation.get("id") or "").isdigit()):
        return None
    data = {"visit": str(record), "booking": str(record), "amount": str((-total).quantize(CENT)),
            "currency": CURRENCY}
    return str(client["id"]), data, f"visit:record-{record}:refund-{operation['id']}"
