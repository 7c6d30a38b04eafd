"""Catalogue of the canonical actions (deal.create, deal.move, sms.send…): one registration each, carrying its
delivery policy, default target, echo, the deal fields it sets and its hooks (see `ActionSpec`)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from automator.actions import crm, deal, discount, instruments, loyalty, people, segment, source
from automator.actions.spec import ActionRun, ActionSpec
from automator.model import EntityRef, Event


def _field(name: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The echo of an action that sets one field from the param of the same name."""
    return lambda params: {name: params[name]}


def _tier_echo(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """A tier is shown as the client's category: its `category`, else the tier's own name."""
    shown = params.get("category") if params.get("category") not in (None, "") else params.get("tier")
    return None if shown in (None, "") else {"category": shown}


CANONICAL: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("deal.create", "Create a deal in a pipeline at a stage.", emits=("deal.created",),
                   deal_fields=deal.created_fields, prepare=people.new_deal, carries=("booking",)),
        ActionSpec("deal.move", "Move a deal to another stage (or pipeline).", emits=("deal.updated",), target="deal",
                   echo=deal.move_echo, deal_fields=deal.fields_param, prepare=deal.check_move),
        ActionSpec("deal.update", "Set fields of a deal.", emits=("deal.updated",), target="deal",
                   echo=deal.update_echo, deal_fields=deal.fields_param),
        ActionSpec("booking.set_status", "Set a booking's attendance status.", emits=("booking.updated",),
                   target="booking", echo=_field("status")),
        ActionSpec("client.set_category", "Set a client's category, replacing the one of the same group (a tier).",
                   emits=("client.updated",), target="client", echo=_field("category")),
        ActionSpec("client.add_category", "Add a category to a client, keeping the others.", emits=("client.updated",),
                   target="client"),
        ActionSpec("client.remove_category", "Remove a category from a client.", emits=("client.updated",),
                   target="client"),
        ActionSpec("client.update", "Set fields of a client's card in the booking system.", emits=("client.updated",),
                   target="client", echo=deal.update_echo),
        ActionSpec("contact.update", "Set fields of the client's contact card in the CRM.", emits=("client.updated",),
                   prepare=people.default_contact),
        ActionSpec("booking.create", "Create a booking for a client (a rebooking).", emits=("booking.created",),
                   prepare=people.new_booking, carries=("deal",), details=True),
        # A cancelled YCLIENTS record is deleted, and its webhook says `delete`: the answer is a booking.deleted.
        ActionSpec("booking.cancel", "Cancel a booking.", emits=("booking.deleted",), target="booking"),
        ActionSpec("deal.assign", "Give a deal to a person (its responsible user).", emits=("deal.updated",),
                   target="deal", echo=crm.assign_echo),
        ActionSpec("lead.assign", "Give a lead to a person (its responsible user).", emits=("lead.updated",),
                   prepare=crm.event_lead),
        ActionSpec("note.add", "Add a note to a deal's, lead's or contact's timeline.", prepare=crm.note_target),
        ActionSpec("task.create", "Create a task for a person or a role.", emits=("task.created",)),
        ActionSpec("sms.send", "Send an SMS.", delivery="at_most_once"),
        ActionSpec("message.send", "Send a message in a messenger.", delivery="at_most_once"),
        ActionSpec("notify", "Notify a member of staff.", delivery="at_most_once"),
        ActionSpec("email.send", "Send an e-mail.", delivery="at_most_once"),
        ActionSpec("http.request", "Call an HTTP endpoint.", delivery="at_most_once"),
        # Computed when sent (automator/report_delivery.py), never echoed: no record of a system changes.
        ActionSpec("report.send", "Send a report (channels, funnel, retention, staff, loyalty) for a period.",
                   delivery="at_most_once"),
        ActionSpec("segment.recompute", "Recompute a client's RFM segment.", emits=("client.updated",),
                   target="client", perform=segment.perform),
        # Loyalty (issue 16): performed by the engine on the product's own ledger; the ledger's mirror tells the
        # booking system loyalty.yaml names (`sync:`) with an effect of the same name. A manual card transaction is
        # not idempotent, so the money ones are never repeated when their outcome is unknown; a tier is a category,
        # set again harmlessly, and the system's webhook reporting it is our echo.
        ActionSpec("loyalty.accrue", "Accrue bonus points to a client's loyalty balance.", delivery="at_most_once",
                   target="client", prepare=loyalty.prepare_accrue, perform=loyalty.accrue),
        ActionSpec("loyalty.spend", "Spend bonus points of a client's loyalty balance, never below zero.",
                   delivery="at_most_once", target="client", prepare=loyalty.prepare_spend, perform=loyalty.spend),
        ActionSpec("loyalty.set_tier", "Set a client's loyalty tier (shown as their category of that tier).",
                   emits=("loyalty.tier_changed", "client.updated"), target="client", echo=_tier_echo,
                   prepare=loyalty.prepare_set_tier, perform=loyalty.set_tier),
        ActionSpec("loyalty.grant_discount", "Grant a client a discount for a while in a loyalty program (the "
                   "product's ledger).", emits=("loyalty.discount_granted",), target="client",
                   perform=discount.perform),
        ActionSpec("set_source", "Say (or correct) where a deal, a lead or a client came from: a channel of "
                   "automator.yaml's channels:, and a campaign.", emits=("deal.updated", "lead.updated",
                                                                         "client.updated"),
                   prepare=source.target, perform=source.perform),
        # Gift certificates and abonements are the product's own (YCLIENTS has no API to issue them): the engine
        # keeps them on its ledger; a freeze of one sold in the booking system is mirrored there.
        ActionSpec("certificate.issue", "Issue a gift certificate to a client (a type of loyalty.yaml).",
                   delivery="at_most_once", emits=("certificate.created",), target="client",
                   perform=instruments.issue_certificate),
        ActionSpec("certificate.redeem", "Pay with a gift certificate: part of its balance, or all of it.",
                   delivery="at_most_once", perform=instruments.redeem_certificate),
        ActionSpec("abonement.issue", "Issue an abonement to a client: N visits of some services (a type of "
                   "loyalty.yaml).", delivery="at_most_once", target="client", perform=instruments.issue_abonement),
        ActionSpec("abonement.freeze", "Freeze a client's abonement from today through a date: its expiry moves by "
                   "the days frozen.", target="client", perform=instruments.freeze_abonement),
        ActionSpec("abonement.unfreeze", "Lift the freeze of a client's abonement today.", target="client",
                   perform=instruments.unfreeze_abonement),
    )
}
# Actions the engine performs itself, inside the core: they need the project's own data, not a remote system.
ENGINE_ACTIONS = tuple(name for name, spec in CANONICAL.items() if spec.perform is not None)


def expected_echo(action: str, params: Mapping[str, Any]) -> tuple[EntityRef, dict[str, Any]] | None:
    """The entity a canonical action changes and the canonical fields it sets, when both are known before the
    call: the system's webhook reporting that change is our own echo (a create's id is known only after)."""
    spec = CANONICAL.get(action)
    if spec is None or spec.echo is None or spec.target is None:
        return None
    ident = params.get(spec.target)
    if ident in (None, ""):
        return None
    fields = spec.echo(params)
    return (EntityRef(spec.target, str(ident)), fields) if fields is not None else None


def answered(action: str, params: Mapping[str, Any], event: Event) -> Event:
    """An event the system answered an action with, given the links the action named (`ActionSpec.carries`)
    that it does not report itself: a deal created from a booking is that booking's deal, whatever the CRM keeps."""
    spec = CANONICAL.get(action)
    if spec is None or not spec.carries or event.type not in spec.emits:
        return event
    extra = {name: params[name] for name in spec.carries
             if params.get(name) not in (None, "") and event.data.get(name) in (None, "")}
    return replace(event, data={**event.data, **extra}) if extra else event


def linked_back(action: str, event: Event) -> list[tuple[EntityRef, str, str]]:
    """The records an action's answer says the record it created belongs to, each with the field that names the new
    one back and its id: deal.create's `deal.created` carrying `booking: 1001` gives (booking 1001, "deal", "9"),
    so that `booking.deal.stage` reads the deal made from the booking."""
    spec = CANONICAL.get(action)
    if spec is None or event.entity is None or event.type not in spec.emits:
        return []
    return [(EntityRef(name, str(event.data[name])), event.entity.kind, event.entity.id) for name in spec.carries
            if event.data.get(name) not in (None, "")]


def deal_fields(name: str, params: Any) -> set[str]:
    """The deal fields an action sets: what a stage's `requires:` can be satisfied by. A connector's own deal
    action (not canonical) is counted by its `fields:`."""
    if not isinstance(params, Mapping) or not name.startswith("deal."):
        return set()
    spec = CANONICAL.get(name)
    setter = spec.deal_fields if spec is not None and spec.deal_fields is not None else deal.fields_param
    return setter(params)


__all__ = ["CANONICAL", "ENGINE_ACTIONS", "ActionRun", "ActionSpec", "answered", "deal_fields", "expected_echo",
           "linked_back"]
