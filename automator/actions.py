"""Catalogue of the canonical actions (deal.create, deal.move, sms.send…): their specs and delivery policies."""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from automator.model import EntityRef


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What an action is: its name, params schema, delivery policy and the events the real system sends back.

    `schema` is a schema id relative to `schemas/` (the canonical `actions/<name>.json`), or a connector's
    own file for a vendor-only action. `entity` is the kind of entity the action works on: it decides which
    connector owns it and which entity in the run's scope is its default target.
    """

    name: str
    description: str
    delivery: str = "at_least_once"  # or at_most_once: never performed twice, parked when uncertain
    emits: tuple[str, ...] = ()
    entity: str | None = None
    schema: str = ""

    @property
    def schema_id(self) -> str:
        """The schema file for this action's params, relative to `schemas/`."""
        return self.schema or f"actions/{self.name}.json"


CANONICAL: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("deal.create", "Create a deal in a pipeline at a stage.", emits=("deal.created",), entity="deal"),
        ActionSpec("deal.move", "Move a deal to another stage (or pipeline).", emits=("deal.updated",), entity="deal"),
        ActionSpec("deal.update", "Set fields of a deal.", emits=("deal.updated",), entity="deal"),
        ActionSpec("booking.set_status", "Set a booking's attendance status.", emits=("booking.updated",),
                   entity="booking"),
        ActionSpec("client.set_category", "Set a client's category.", emits=("client.updated",), entity="client"),
        ActionSpec("task.create", "Create a task for a person or a role.", emits=("task.created",), entity="task"),
        ActionSpec("sms.send", "Send an SMS.", delivery="at_most_once"),
        ActionSpec("message.send", "Send a message in a messenger.", delivery="at_most_once"),
        ActionSpec("notify", "Notify a member of staff.", delivery="at_most_once"),
        ActionSpec("http.request", "Call an HTTP endpoint.", delivery="at_most_once"),
        ActionSpec("segment.recompute", "Recompute a client's RFM segment.", emits=("client.updated",),
                   entity="client"),
    )
}


def expected_echo(action: str, params: Mapping[str, Any]) -> tuple[EntityRef, dict[str, Any]] | None:
    """The entity a canonical action changes and the canonical fields it sets, when both are known before the
    call: the system's webhook reporting that change is our own echo (a create's id is known only after)."""
    def target(kind: str) -> EntityRef | None:
        ident = params.get(kind)
        return EntityRef(kind, str(ident)) if ident not in (None, "") else None

    if action == "deal.move" and (ref := target("deal")):
        fields = {"stage": params["stage"], **({"pipeline": params["pipeline"]} if params.get("pipeline") else {})}
        return ref, fields
    if action == "deal.update" and (ref := target("deal")) and isinstance(params.get("fields"), Mapping):
        return ref, dict(params["fields"])
    if action == "booking.set_status" and (ref := target("booking")):
        return ref, {"status": params["status"]}
    if action == "client.set_category" and (ref := target("client")):
        return ref, {"category": params["category"]}
    return None
