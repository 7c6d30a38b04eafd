"""A client's history and the fields the product derives from it (pure): visits from events, exact money, and the
derived fields a client's entity keeps (`visit_count`, `total_spent`, …) and expressions read.

Money is exact: amounts come as decimal text in major units (`"1500.00"`), are kept as integer minor units
(kopecks) in a `Visit`, as decimal text in the client's fields, and are shown to expressions as `Decimal`.
A float is never money: it is refused where it would be taken for an amount.

The derived fields are the product's, never a rule's: a `client.*` event that carries one is not allowed to set it
(see `FIELDS`), and two ways keep them: `recorded` adds new visits to a client's fields one decision at a time, and
the store recomputes them in SQL for the clients an import touched (`automator.store.people`), in the same form.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from automator.model import ENGINE, Entity, Event, Visit

# The events that add to a person's history, and the kind of record each makes.
VISIT_EVENTS = {"visit.completed": "visit", "purchase.completed": "purchase"}
# Minor units per major one. Every currency the connectors report (RUB, and a chain's KZT, BYN, USD, EUR) has
# two decimal places; a currency without them (JPY) would need its own exponent.
MINOR_DIGITS = 2
_SCALE = 10 ** MINOR_DIGITS
_MONEY_TEXT = re.compile(r"^(\d{1,15})(?:[.,](\d{1,%d}))?$" % MINOR_DIGITS)

# The client's fields this module keeps: a rule reads them, nothing else writes them. `services` holds the same
# figures per service category (`client.services['Стоматология'].visit_count`): `categories` are YCLIENTS's labels
# of the client, another thing.
PER_CATEGORY = ("first_visit_at", "last_visit_at", "visit_count", "total_spent", "average_check")
FIELDS = frozenset({*PER_CATEGORY, "purchase_count", "days_since_last_visit", "services"})
MONEY_FIELDS = ("total_spent", "average_check")


class HistoryError(ValueError):
    """A visit that cannot be recorded as it came (an amount that is not exact decimal text, no visit id)."""


def minor_units(value: Any, what: str = "amount") -> int:
    """Exact decimal text in major units (`"1500.00"`, `"1500"`, `"1500,5"`), or a whole number, as integer
    minor units; a float, a negative amount or more than two decimal places is a HistoryError."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or isinstance(value, float):
        raise HistoryError(f"{what} {value!r} is a float: money is exact decimal text, such as \"1500.00\"")
    if isinstance(value, int):
        if value < 0:
            raise HistoryError(f"{what} {value} is negative")
        return value * _SCALE
    if isinstance(value, Decimal):
        value = format(value, "f")
    found = _MONEY_TEXT.match(str(value).strip())
    if found is None:
        raise HistoryError(f"{what} {str(value)!r} is not an amount: write decimal text in major units with at most "
                           f"{MINOR_DIGITS} decimal places and no thousands separators, such as \"1500.00\"")
    whole, fraction = found.group(1), found.group(2) or ""
    return int(whole) * _SCALE + int(fraction.ljust(MINOR_DIGITS, "0"))


def money_text(minor: int) -> str:
    """Minor units as the decimal text they are kept as: 150000 → "1500.00"."""
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), _SCALE)
    return f"{sign}{whole}.{fraction:0{MINOR_DIGITS}d}"


def money_of(value: Any) -> str | None:
    """An amount as a system or a rule gives it (decimal text, a whole number, a Decimal, or the float a JSON
    number became, read by its shortest repr) as the exact decimal text events carry: 3500 → "3500.00"; None when
    it is not an amount (empty, negative, more than two decimal places)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    try:
        return money_text(minor_units(value)) if value is not None else None
    except HistoryError:
        return None


def money(value: Any) -> Any:
    """A kept amount (decimal text) as the Decimal expressions see; None when there is none."""
    if value is None or value == "":
        return None
    return shown_amount(value)


def shown_amount(value: Any) -> Any:
    """An event's amount as expressions see it: a Decimal with its kopecks (`"1500"` → 1500.00); left as it came
    when it is not an amount (the event is refused then, see `visit_of`)."""
    try:
        return Decimal(minor_units(value)).scaleb(-MINOR_DIGITS)
    except HistoryError:
        return value


def average(total: int, count: int) -> int:
    """The average of `total` minor units over `count`, rounded half up to a minor unit (as the SQL does)."""
    return (2 * total + count) // (2 * count) if count > 0 else 0


def moment_text(at: datetime) -> str:
    """A moment as the derived fields keep it: UTC ISO 8601, as the store keeps a visit's (so both agree)."""
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


# ---- visits from events ---------------------------------------------------------------------------------------

def visit_of(event: Event) -> Visit | None:
    """The visit (or purchase) a `visit.completed` / `purchase.completed` event reports, None for another event
    or one a rule emitted;
    a HistoryError when it cannot be recorded as it came. The event's entity is the person (the journal resolved
    it); the visit's id is `<event.source>:<data.visit>`, unique across systems."""
    kind = VISIT_EVENTS.get(event.type)
    if kind is None or event.source == ENGINE:  # a rule's `emit:` is news to other rules, never history
        return None
    if event.entity is None or event.entity.kind != "client":
        raise HistoryError(f"{event.type} names no client: its entity must be client:<id>")
    data = event.data
    ident = data.get("visit")
    if ident in (None, "") or isinstance(ident, (Mapping, list, bool)):
        raise HistoryError(f"{event.type} has no `visit` id: the system's id of the {kind} is needed to keep it once")
    at = _moment(data.get("at"), event.at)
    services = data.get("services") or ()
    if isinstance(services, str):
        services = (services,)
    return Visit(id=f"{event.source}:{ident}", client=event.entity.id, at=at, kind=kind,
                 branch=_text(data.get("branch")), services=tuple(str(s) for s in services),
                 category=_text(data.get("service_category")), staff=_text(data.get("staff")),
                 amount=minor_units(data.get("amount")), currency=str(data.get("currency") or "RUB"),
                 booking=_text(data.get("booking")), source=event.source)


GIVEN_KINDS = ("visit", "purchase")  # a test's `given:` record of one of these kinds is history, not an entity


def given_visit(raw: Mapping[str, Any], number: int, tz: Any) -> Visit:
    """A visit written in a test's `given:` (`{kind: visit, client: 77, at: …, amount: "1500.00", category: …}`);
    `id` defaults to the record's place in the list. A moment without an offset is in the project's timezone."""
    at = raw.get("at")
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            raise HistoryError(f"at {at!r} is not an ISO 8601 moment") from None
    if not isinstance(at, datetime):
        raise HistoryError("a visit needs `at`, the moment it took place")
    services = raw.get("services") or ()
    return Visit(id=f"test:{raw.get('id', number)}", client=str(raw["client"]),
                 at=plausible(at if at.tzinfo is not None else at.replace(tzinfo=tz)), kind=str(raw["kind"]),
                 branch=_text(raw.get("branch")),
                 services=(services,) if isinstance(services, str) else tuple(str(s) for s in services),
                 category=_text(raw.get("category")), staff=_text(raw.get("staff")),
                 amount=minor_units(raw.get("amount")), currency=str(raw.get("currency") or "RUB"),
                 booking=_text(raw.get("booking")), source="test")


# The years a visit may fall in: a moment outside them is a typo (0001-01-01, 20260-01-01) that would be kept in
# every figure after it, and near datetime's own ends it cannot even be moved to UTC.
YEARS = (1900, 2200)


def plausible(at: datetime) -> datetime:
    """The moment of a visit, when its year is within YEARS; a HistoryError otherwise."""
    if not YEARS[0] <= at.year <= YEARS[1]:
        raise HistoryError(f"at {at.isoformat()!r} is not a moment a visit took place: its year is outside "
                           f"{YEARS[0]}..{YEARS[1]}")
    return at


def _moment(value: Any, default: datetime) -> datetime:
    if value in (None, ""):
        return default
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value))
        except ValueError:
            raise HistoryError(f"at {str(value)!r} is not an ISO 8601 moment") from None
    if at.tzinfo is None:
        raise HistoryError(f"at {str(value)!r} has no UTC offset: write it as 2026-03-02T15:00:00+03:00")
    return plausible(at)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


# ---- the derived fields ---------------------------------------------------------------------------------------

def recorded(entity: Entity, visits: Iterable[Visit]) -> Entity:
    """The client with new visits added to their derived fields (a visit older than the last one known, from a
    backfill or a late webhook, never moves `last_visit_at` back). The visits must be new: their ids not stored."""
    return Entity(entity.ref, with_visits(entity.fields, visits), entity.updated_at)


def with_visits(fields: Mapping[str, Any], visits: Iterable[Visit]) -> dict[str, Any]:
    """A client's fields with new visits added to the derived ones (see `recorded`)."""
    out = dict(fields)
    for visit in visits:
        _add(out, visit)
        if visit.category:
            services = dict(out.get("services") or {})
            own = dict(services.get(visit.category) or {})
            _add(own, visit)
            services[visit.category] = own
            out["services"] = services
    return out


def _add(fields: dict[str, Any], visit: Visit) -> None:
    total = minor_units(fields.get("total_spent")) + visit.amount
    fields["total_spent"] = money_text(total)
    if visit.kind == "visit":
        fields["visit_count"] = int(fields.get("visit_count") or 0) + 1
        at = moment_text(visit.at)
        first, last = fields.get("first_visit_at"), fields.get("last_visit_at")
        if not first or _later(str(first), at):
            fields["first_visit_at"] = at
        if not last or _later(at, str(last)):
            fields["last_visit_at"] = at
    else:
        fields["purchase_count"] = int(fields.get("purchase_count") or 0) + 1
    paid = int(fields.get("visit_count") or 0) + int(fields.get("purchase_count") or 0)
    fields["average_check"] = money_text(average(total, paid))


def _later(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) > datetime.fromisoformat(b)


def derived(visits: Iterable[Visit]) -> dict[str, Any]:
    """The derived fields of a client with exactly these visits (what the store's recomputation writes)."""
    return with_visits({}, sorted(visits, key=lambda v: (v.at, v.id)))


def without_derived(data: Mapping[str, Any]) -> dict[str, Any]:
    """An event's data without the fields the product keeps (a rule's `emit`, a system's payload cannot set them)."""
    return {k: v for k, v in data.items() if k not in FIELDS}


def shown(fields: dict[str, Any], now: datetime | None, tz: Any) -> dict[str, Any]:
    """The derived fields as expressions see them, in place: money as Decimal, moments in the project's timezone
    (the top-level ones are typed by the catalogue already), and `days_since_last_visit` from now."""
    for name in MONEY_FIELDS:
        if name in fields:
            fields[name] = money(fields[name])
    last = fields.get("last_visit_at")
    if last and now is not None:
        at = last if isinstance(last, datetime) else datetime.fromisoformat(str(last))
        fields["days_since_last_visit"] = _days(now - at)
    services = fields.get("services")
    if isinstance(services, Mapping):
        fields["services"] = {name: _category(own, tz) for name, own in services.items() if isinstance(own, Mapping)}
    return fields


def _category(own: Mapping[str, Any], tz: Any) -> dict[str, Any]:
    view = dict(own)
    for name in MONEY_FIELDS:
        if name in view:
            view[name] = money(view[name])
    for name in ("first_visit_at", "last_visit_at"):
        if isinstance(view.get(name), str):
            view[name] = datetime.fromisoformat(view[name]).astimezone(tz)
    return view


def _days(span: timedelta) -> int:
    """Whole days (a visit this morning is 0 days ago; yesterday's, 1)."""
    return max(span.days, 0)
