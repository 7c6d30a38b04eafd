"""The persons an action names, as its system will know them: by default the run's client (a deal's or contact
card's person) and the run's booking (deal) a new deal (booking) belongs to, so that the link exists in the store;
going out, each person as the performing system's own id of them, or their phone (`automator.identity.outbound`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from automator.actions.spec import ActionRun, ActionSpec
from automator.core.outcome import StepError
from automator.identity import PERSON_PARAMS, PHONE, Unreachable, outbound, phone_of
from automator.model import EntityRef


class Persons(Protocol):
    """What naming persons to a system reads: a run (ActionRun), or the ledger's mirror, which has no run (its
    scope is empty)."""

    scope: dict[str, Any]

    def entity(self, ref: EntityRef) -> Any:
        """The stored state of an entity."""

    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's id (or a phone) belongs to."""

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person, phones included."""


def _in_run(run: Persons, kind: str) -> str | None:
    """The id of the run's entity of a kind (its own, or the one it links to), if any."""
    found = run.scope.get(kind)
    if isinstance(found, Mapping) and found.get("id") not in (None, ""):
        return str(found["id"])
    return None


def _default(params: dict[str, Any], name: str, run: ActionRun, kind: str) -> None:
    if params.get(name) in (None, ""):
        ident = _in_run(run, kind)
        if ident is not None:
            params[name] = ident


def default_contact(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """The contact (a CRM's card of a person) defaults to the run's client."""
    _default(params, "contact", run, "client")
    return params


def new_deal(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """A new deal is the run's client's, and belongs to the run's booking when it has one."""
    _default(params, "booking", run, "booking")
    return default_contact(params, run)


def new_booking(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """A new booking is the run's client's, and belongs to the run's deal when it has one."""
    _default(params, "client", run, "client")
    _default(params, "deal", run, "deal")
    return params


def to_system(spec: ActionSpec, params: dict[str, Any], system: str, run: Persons) -> dict[str, Any]:
    """The params as `system` (a connector whose ids are its own) is sent them: each person they name becomes
    that system's id of them, or their phone, never another system's id; an action with `details` also gets
    the person's phone and name (`client_phone`, `client_name`) when known. A phone stays a phone, and a
    `contact:` that is already the system's own contact id (`{{ deal.contact }}`) is sent unchanged. A StepError
    for a person the system cannot be told about: no id there, no phone."""
    out = dict(params)
    for name in PERSON_PARAMS:
        value = params.get(name)
        if value in (None, "") or isinstance(value, (Mapping, list, bool)):
            continue
        text = str(value)
        if phone_of(text) is not None or (name == "contact" and _own_contact(text, system, run)):
            continue
        person = run.entity(EntityRef("client", text))
        fields: Mapping[str, Any] = person.fields if person is not None else {}
        try:
            out[name] = outbound(text, system, run, fields.get("phone"), as_is=name == "client" and _keeps_ids(spec))
        except Unreachable as exc:
            raise StepError(f"{spec.name}: {exc}") from None
        if spec.details and name == "client":
            phone = phone_of(fields.get("phone")) or phone_of(out[name]) or next(
                (ext for kind, ext in run.links_of(text) if kind == PHONE), None)
            if phone is not None:
                out.setdefault("client_phone", phone)
            if fields.get("name") not in (None, ""):
                out.setdefault("client_name", str(fields["name"]))
    return out


def _keeps_ids(spec: ActionSpec) -> bool:
    """True for the booking system's client actions (a client's card, categories, a booking for them): there, a
    person no system has reported (a local form's, a test's `given:`, a one-system project's client stored before
    links existed) is known by automator's own id. A CRM never is (deal.create's, task.create's client)."""
    return spec.target == "client" or spec.details


def _own_contact(value: str, system: str, run: Persons) -> bool:
    """True when a rule's `contact:` is the CRM's own id of a contact (as `deal.contact` holds), not a person: one
    the CRM reported, or an id that names no person at all (a contact automator has not seen; the CRM says if it
    has none). The run's client, the default, is always the person, whose id may be another system's."""
    if value == _in_run(run, "client"):
        return False
    if run.client_of(system, value) is not None:
        return True
    return run.entity(EntityRef("client", value)) is None and not run.links_of(value)
