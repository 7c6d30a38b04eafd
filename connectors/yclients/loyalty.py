"""YCLIENTS loyalty objects as the connector reads and writes them: pure, over the answers' plain data.

A client's points are the balance of their loyalty card of one type (reference part 2 §1.5: a card belongs to the
chain, and its manual transaction tops it up or writes it off by a signed amount). The product keeps its own
ledger; the connector mirrors each of its moves as one manual transaction, in roubles with kopecks (one point is
one rouble), exact: an amount is decimal text with at most two digits after the point, never a float, and one
the ledger did not round is refused rather than rounded here differently.

Confirmed by the spec (`vgrish/yclients-openapi-php`, `LoyaltyCardApi`): the manual transaction's body is
`{amount, title}` (`amount` required, positive for a top-up, negative for a write-off; `title` the note), and both
it and the card issue (`{loyalty_card_number, loyalty_card_type_id, phone}`, numbers) answer the card object. The
list of 303 operations has no call that issues a certificate or an abonement (only `loyalty/generate_code` of a
good that is one): they are sold as goods.

Read under uncertainty (no source confirms it; the safest reading):
* Which number a card issued by the connector gets: `loyalty_card_number` is a required number with no generator
  in the API for cards, so it is the client's phone as 11 digits, as salons commonly number them (unique in a
  chain as the phone is).
* A manual transaction changes the card's `balance` (the spec's card object also has `points`, undescribed), and
  YCLIENTS' answer to a write-off past it was never captured: the connector refuses one before the call.
* The card issue's HTTP status (the emulator answers 201, as other creates do).
* Certificates' and abonements' fields are the spec's list models (part 2 §1.5); `balance_container` of an
  abonement, whose shape no source shows, is not read: `balance` is its `balance_string` as YCLIENTS writes it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .visits import money

CENT = Decimal("0.01")
LIMIT = Decimal(10) ** 13  # the largest amount a ledger row holds in kopecks stays well inside 64 bits


def amount(value: Any) -> Decimal:
    """A positive amount of roubles from decimal text (or a whole number, or a Decimal a template made), with at
    most two digits after the point. Raises ValueError saying what it is instead."""
    if isinstance(value, bool) or isinstance(value, float) or value in (None, ""):
        raise ValueError(f"the amount is decimal text such as \"150\" or \"99.50\", not {value!r}")
    try:
        found = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"the amount is decimal text such as \"150\" or \"99.50\", not {value!r}") from None
    if not found.is_finite() or found <= 0 or found >= LIMIT:
        raise ValueError(f"the amount is more than 0 and less than 10^13 roubles, not {value!r}")
    if found != found.quantize(CENT):
        raise ValueError(f"the amount has at most two digits after the point (kopecks), not {value!r}")
    return found.quantize(CENT)


def text(value: Decimal) -> str:
    """Money as the results carry it: exact decimal text to the kopeck."""
    return format(value.quantize(CENT), "f")


def balance(card: Mapping[str, Any]) -> Decimal:
    """A card's balance as an exact Decimal (0 when it says none)."""
    return (money(card.get("balance")) or Decimal(0)).quantize(CENT)


def type_of(card: Mapping[str, Any]) -> str:
    """A card's type id, as text."""
    kind = card.get("type")
    given = card.get("type_id") if card.get("type_id") not in (None, "") else \
        (kind.get("id") if isinstance(kind, Mapping) else None)
    return "" if given in (None, "") else str(given)


def card_of(cards: Sequence[Mapping[str, Any]], type_id: str | None) -> Mapping[str, Any] | None:
    """The client's card of that type; with no type given, their only card (None when they have several: which
    one is meant is then the setting's to say)."""
    if type_id:
        return next((c for c in cards if type_of(c) == type_id), None)
    return cards[0] if len(cards) == 1 else None


def card_number(phone: str) -> str:
    """The number of a card the connector issues: the client's phone as digits (see the module's docstring)."""
    return re.sub(r"\D", "", phone)


def card_summary(card: Mapping[str, Any]) -> dict[str, Any]:
    """A card as `yclients.loyalty_cards` returns it."""
    kind = card.get("type")
    return {"id": str(card.get("id")), "number": card.get("number"),
            "type": kind.get("title") if isinstance(kind, Mapping) else None, "type_id": card.get("type_id"),
            "balance": card.get("balance"), "points": card.get("points"), "visits": card.get("visits_count"),
            "paid_amount": card.get("paid_amount"),
            "programs": [p.get("title") for p in card.get("programs") or [] if isinstance(p, Mapping)]}


def _title(value: Any) -> Any:
    return value.get("title") if isinstance(value, Mapping) else None


def _money_text(value: Any) -> str | None:
    found = money(value)
    return None if found is None else text(found)


def certificate_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """A gift certificate as `yclients.certificates` returns it: its money as exact decimal text."""
    kind = item.get("type")
    return {"id": str(item.get("id")), "number": item.get("number"), "balance": _money_text(item.get("balance")),
            "nominal": _money_text(item.get("default_balance")), "type": _title(kind),
            "type_id": item.get("type_id"), "status": _title(item.get("status")),
            "created": item.get("created_date") or None, "expires": item.get("expiration_date") or None}


def abonement_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """An abonement as `yclients.abonements` returns it."""
    kind = item.get("type")
    return {"id": str(item.get("id")), "number": item.get("number"), "type": _title(kind),
            "type_id": kind.get("id") if isinstance(kind, Mapping) else None,
            "balance": item.get("balance_string"), "frozen": bool(item.get("is_frozen")),
            "freeze_period": item.get("freeze_period"), "expires": item.get("expiration_date") or None,
            "status": _title(item.get("status"))}
