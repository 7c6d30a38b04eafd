"""The YCLIENTS connector's loyalty actions: the client's card kept in step with the product's points, what the
client holds (cards, certificates, abonements) read, abonements frozen. The reading of the contract they rest on is
in loyalty.py and the connector's module docstring; the tier (a client category) is with the category actions."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from automator.connector import ActionResult, action
from automator.errors import Rejected
from . import loyalty, mapping
from .api import Api
from .mapping import numeric_id
from .serial import KeyedLocks


class LoyaltyActions:
    """The loyalty actions of the `yclients` connector, which it inherits: they use its API, its per-client edit
    locks and its loyalty settings (`chain_id`, `loyalty_card_type`, `issue_cards`)."""

    name: str
    api: Api
    client_edits: KeyedLocks
    region: str
    company_id: str
    chain_id: str
    card_type: str
    issue_cards: bool

    @action("yclients.loyalty_cards", schema="actions/yclients.loyalty_cards.json")
    async def loyalty_cards(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Read a client's loyalty cards (they belong to the chain): number, type, balance, points, visits."""
        client_id = numeric_id(params.get("client"), "client")
        cards = await self.api.client_cards(client_id)
        return ActionResult({"client": client_id, "cards": [loyalty.card_summary(c) for c in cards]})

    @action("loyalty.accrue")
    async def loyalty_accrue(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Top up the client's loyalty card by `amount` (a manual transaction), issuing the card first when they
        have none and `issue_cards` allows; returns the card and its balance after."""
        return await self._card_move("loyalty.accrue", params, 1)

    @action("loyalty.spend")
    async def loyalty_spend(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Write `amount` off the client's loyalty card (a manual transaction), refused when its balance is lower;
        returns the card and its balance after."""
        return await self._card_move("loyalty.spend", params, -1)

    async def _card_move(self, what: str, params: Mapping[str, Any], sign: int) -> ActionResult:
        """One manual transaction of the client's card of the action's type, its balance checked first for a
        write-off; one client's moves at a time, so that two write-offs cannot both pass the check."""
        try:
            value = loyalty.amount(params.get("amount"))
        except ValueError as exc:
            raise Rejected(f"{what}: {exc}") from None
        reason = str(params.get("reason") or "").strip()
        if not reason:
            raise Rejected(f"{what}: `reason` is empty; the card's history shows it")
        type_id = self._card_type(params)
        client_id, phone = await self._loyalty_client(params, what)
        async with self.client_edits.hold(f"card:{client_id or phone}"):
            card, issued = await self._card(what, client_id, phone, type_id, issue=sign > 0)
            before = loyalty.balance(card)
            if sign < 0 and before < value:
                raise Rejected(f"{what}: loyalty card {card.get('number') or card.get('id')} of client "
                               f"{client_id or phone} has {loyalty.text(before)}, less than {loyalty.text(value)}: "
                               "a card is never driven below zero")
            after = await self.api.card_transaction(str(card["id"]), value * sign, reason)
        balance = loyalty.balance(after) if "balance" in after else before + value * sign
        result: dict[str, Any] = {"client": client_id or phone, "card": str(card["id"]), "number": card.get("number"),
                                  "amount": loyalty.text(value * sign), "balance": loyalty.text(balance),
                                  "issued": issued}
        if params.get("program") not in (None, ""):
            result["program"] = str(params["program"])
        return ActionResult(result)

    def _card_type(self, params: Mapping[str, Any]) -> str | None:
        """The card type the action keeps in step: its `card_type`, else the `loyalty_card_type` setting."""
        given = params.get("card_type")
        if given not in (None, ""):
            return numeric_id(given, "loyalty card type")
        return self.card_type or None

    async def _loyalty_client(self, params: Mapping[str, Any], what: str) -> tuple[str | None, str | None]:
        """(YCLIENTS client id, phone) of the action's client: an id as given; a phone, read by phone through the
        chain when `chain_id` is set, else the client found by it."""
        given = str(params.get("client") if params.get("client") is not None else "").strip()
        if given.isdigit():
            return given, None
        phone = mapping.to_e164(given, self.region) if given.startswith("+") else None
        if phone is None:
            raise Rejected(f"{what}: the client is a YCLIENTS client id or a phone in E.164, not {given or None!r}")
        if self.chain_id:
            return None, phone
        found = await self.api.find_client(phone)
        if found is None:
            raise Rejected(f"{what}: company {self.company_id} has no client with phone {phone} (set `chain_id` to "
                           "find their card across the chain)")
        return found, phone

    async def _card(self, what: str, client_id: str | None, phone: str | None, type_id: str | None, *,
                    issue: bool) -> tuple[Mapping[str, Any], bool]:
        """The client's card of the type (and whether it was issued now): found, else issued when `issue` and the
        settings allow, else a Rejected saying which setting to change."""
        cards = await (self.api.client_cards(client_id) if client_id else self.api.phone_cards(str(phone),
                                                                                               self.chain_id))
        card = loyalty.card_of(cards, type_id)
        if card is not None:
            return card, False
        who = f"client {client_id or phone}"
        if type_id is None:
            if cards:
                raise Rejected(f"{what}: {who} has {len(cards)} loyalty cards; set connector {self.name!r}'s "
                               "`loyalty_card_type` (or the action's card_type) to say which one keeps the points")
            raise Rejected(f"{what}: {who} has no loyalty card, and connector {self.name!r} sets no "
                           "`loyalty_card_type` to issue one of")
        if not issue:
            raise Rejected(f"{what}: {who} has no loyalty card of type {type_id}: there is nothing to write off")
        if not self.issue_cards:
            raise Rejected(f"{what}: {who} has no loyalty card of type {type_id}, and connector {self.name!r} has "
                           "`issue_cards` off: issue the card in YCLIENTS, or set issue_cards: true")
        if phone is None:
            phone = mapping.to_e164((await self.api.get_client(str(client_id))).get("phone"), self.region)
            if phone is None:
                raise Rejected(f"{what}: {who} has no phone in YCLIENTS to issue a loyalty card to")
        return await self.api.issue_card(loyalty.card_number(phone), type_id, phone), True

    @action("yclients.certificates", schema="actions/yclients.certificates.json")
    async def certificates(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Read a client's gift certificates: number, balance, nominal, type, status, expiry."""
        return await self._held("certificates", params, loyalty.certificate_summary)

    @action("yclients.abonements", schema="actions/yclients.abonements.json")
    async def abonements(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Read a client's abonements: number, type, visits left, frozen or not, expiry, status."""
        return await self._held("abonements", params, loyalty.abonement_summary)

    async def _held(self, kind: str, params: Mapping[str, Any],
                    summary: Callable[[Mapping[str, Any]], dict[str, Any]]) -> ActionResult:
        """What the client holds of one kind (certificates, abonements), found by their phone."""
        items = await self.api.held(kind, await self._phone(params, f"yclients.{kind}"))
        return ActionResult({"client": str(params.get("client")), kind: [summary(x) for x in items]})

    async def _phone(self, params: Mapping[str, Any], what: str) -> str:
        """The phone of the action's client (YCLIENTS finds certificates and abonements by phone): given, or read
        from the client's card."""
        given = str(params.get("client") if params.get("client") is not None else "").strip()
        phone = mapping.to_e164(given, self.region) if given.startswith("+") else None
        if phone is None and given.isdigit():
            phone = mapping.to_e164((await self.api.get_client(given)).get("phone"), self.region)
            if phone is None:
                raise Rejected(f"{what}: client {given} has no phone in YCLIENTS")
        if phone is None:
            raise Rejected(f"{what}: the client is a YCLIENTS client id or a phone in E.164, not {given or None!r}")
        return phone

    @action("yclients.abonement_freeze", schema="actions/yclients.abonement_freeze.json")
    async def abonement_freeze(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Freeze an abonement until a day (its period stops running meanwhile)."""
        ident = numeric_id(params.get("abonement"), "abonement")
        till = _day(params.get("till"), "yclients.abonement_freeze")
        made = await self.api.freeze_abonement(self._chain("yclients.abonement_freeze"), ident, till)
        return ActionResult({"abonement": ident, "frozen": True, "till": till,
                             **({"expires": made["expiration_date"]} if made.get("expiration_date") else {})})

    @action("yclients.abonement_unfreeze", schema="actions/yclients.abonement_unfreeze.json")
    async def abonement_unfreeze(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Unfreeze an abonement: its period runs again from today."""
        ident = numeric_id(params.get("abonement"), "abonement")
        made = await self.api.freeze_abonement(self._chain("yclients.abonement_unfreeze"), ident, None)
        return ActionResult({"abonement": ident, "frozen": False,
                             **({"expires": made["expiration_date"]} if made.get("expiration_date") else {})})

    def _chain(self, what: str) -> str:
        """The `chain_id` setting, which chain-level calls need."""
        if not self.chain_id:
            raise Rejected(f"{what}: connector {self.name!r} sets no `chain_id` (abonements belong to the chain: "
                           "write its id, as YCLIENTS shows it, under the connector in automator.yaml)")
        return self.chain_id


def _day(value: Any, what: str) -> str:
    """A day as YCLIENTS takes it, yyyy-mm-dd, from a date, a datetime or such a text."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value or "").strip()
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise Rejected(f"{what}: a day is yyyy-mm-dd, such as 2026-04-01, not {value!r}") from None
