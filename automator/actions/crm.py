"""The CRM ownership and note actions' hooks: what deal.assign sets (its echo), and the record a note or a lead
assignment goes to when the step names none (a contact update's contact is the person's: actions/people.py)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.actions.spec import ActionRun
from automator.core.outcome import StepError

# The records a note.add may go to, one of them (a connector's timeline kinds too: Bitrix24's ENTITY_TYPE).
NOTE_TARGETS = ("deal", "lead", "contact")


def assign_echo(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """What deal.assign sets: the responsible user, when the rule names them by id. A role (`to: olga`) is a user
    id only the connector knows: nothing is expected before the call (any change to the deal within the echo
    window would pass for ours, a manager's too); the connector's answer carries the delivery id the deal's
    webhook has, so that webhook is known as the answer's repeat."""
    to = params.get("to")
    return {"responsible": str(to)} if str(to).strip().isdigit() else None


def note_target(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """A note with no deal, lead or contact goes to the run's deal; two of them are refused (one timeline)."""
    named = [kind for kind in NOTE_TARGETS if params.get(kind) not in (None, "")]
    if len(named) > 1:
        raise StepError(f"note.add: one of {', '.join(NOTE_TARGETS)}, not {' and '.join(named)}")
    if not named:
        deal = run.scope.get("deal")
        if not isinstance(deal, Mapping) or deal.get("id") is None:
            raise StepError("note.add: no deal in this run; name one with `deal:`, `lead:` or `contact:`")
        params["deal"] = str(deal["id"])
    return params


def event_lead(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """lead.assign without `lead:` assigns the event's lead (`event.lead_id`, as lead.created carries it)."""
    if params.get("lead") in (None, ""):
        event = run.scope.get("event")
        lead = event.get("lead_id") if isinstance(event, Mapping) else None
        if lead in (None, ""):
            raise StepError("lead.assign: the event names no lead (`lead_id`); name one with `lead:`")
        params["lead"] = str(lead)
    return params
