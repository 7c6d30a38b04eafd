"""One person across systems: which client an event from a system names, and the links that keeps (pure).

A client is one person known by their phone and by each system's own id. Systems' ids share no namespace (the
YCLIENTS client 77 and the Bitrix24 contact 77 are strangers), so every id is kept with its system — the name of
the connector that reported it — in links; the pseudo-system `phone` holds E.164 phones.

How an event from system S that names S's record X is matched to a person:
1. by the link (S, X), when one is stored;
2. else by the event's phone, when a person has it (two contacts with one phone are one client);
3. else a new person: their id is X when no link names a person X yet (a one-system project keeps its ids, and
   a client stored before links existed is adopted when their phones do not disagree), else `S:X`.
A person made from a bare reference (a deal's contact seen before the contact itself: no phone, no other link, no
client record of their own) joins the person with that phone once the phone is known.

`resolve` rewrites the event: a `client.*` event's entity becomes the person, and its data gets `ids` (each
system's id of the person: the first one linked, the one the engine sends to that system) and `all_ids` (every id
of each system, so that two contacts of one CRM with one phone are both seen); a `client` or `contact` field of
another event (a booking's client, a deal's contact) names the person in `client` (a CRM's own contact id stays
in `contact`).

Going out, `outbound` is the other direction: the person a rule names becomes the id a system knows them by, or
their phone (the system finds or creates its record by it), never another system's id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from collections.abc import Mapping
from typing import Any, Protocol

from automator.model import Entity, EntityRef, Event

PHONE = "phone"  # the pseudo-system of E.164 phones
# The params of a canonical action that name a person (a client.* action's `client`, deal.create's `contact`,
# booking.create's `client`, …): what `outbound` translates for the system that performs it.
PERSON_PARAMS = ("client", "contact")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class People(Protocol):
    """What matching reads of the store (the Snapshot's people methods)."""

    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's id belongs to."""

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person, in the order they were linked."""


class Registry(People, Protocol):
    """What matching an incoming event reads: the links, and the clients stored (a person's own record)."""

    def entity(self, ref: EntityRef) -> Entity | None:
        """The stored state of an entity (here always a client)."""


class Directory(People, Protocol):
    """What naming a person back from what an effect sent reads: the links, and the clients by their phone field
    (people no system reported have no phone link)."""

    def clients_with_phone(self, phone: str) -> list[Entity]:
        """The stored clients whose `phone` field is this text, oldest first."""


@dataclass(frozen=True, slots=True)
class Link:
    """A system's id (or a phone) that names a person: to be stored (a link already stored moves to `client`)."""

    system: str
    ext_id: str
    client: str


class _Pending:
    """The store's links with the ones this resolution has made laid over them."""

    def __init__(self, people: Registry) -> None:
        self.people = people
        self.made: dict[tuple[str, str], str] = {}

    def recorded(self, client: str) -> Entity | None:
        """The person's own stored client record (a reported client, a local form's, a test's `given:`)."""
        return self.people.entity(EntityRef("client", client))

    def client_of(self, system: str, ext_id: str) -> str | None:
        return self.made.get((system, ext_id)) or self.people.client_of(system, ext_id)

    def links_of(self, client: str) -> list[tuple[str, str]]:
        stored = [pair for pair in self.people.links_of(client) if self.made.get(pair, client) == client]
        return stored + [pair for pair, who in self.made.items() if who == client and pair not in stored]

    def link(self, system: str, ext_id: str, client: str) -> None:
        self.made[(system, ext_id)] = client

    def links(self) -> tuple[Link, ...]:
        return tuple(Link(system, ext, client) for (system, ext), client in self.made.items())


def phone_of(value: Any) -> str | None:
    """An E.164 phone as connectors report it (`+79161234567`), or None for anything else."""
    text = str(value).strip() if value is not None else ""
    return text if _E164.match(text) else None


def match(system: str, ext_id: str, phone: str | None, people: Registry) -> tuple[str, tuple[Link, ...]]:
    """The person system's record `ext_id` (with this phone, when known) is, and the links to store."""
    pending = _Pending(people)
    client = _match(system, ext_id, phone, pending)
    return client, pending.links()


def _match(system: str, ext_id: str, phone: str | None, pending: _Pending) -> str:
    known = pending.client_of(system, ext_id)
    owner = pending.client_of(PHONE, phone) if phone else None
    if known is not None:
        if owner is not None and owner != known and pending.links_of(known) == [(system, ext_id)] \
                and pending.recorded(known) is None:
            # A bare reference's person (only this link, no record of their own): the phone says who they are. A
            # client the system reported is someone, even without a phone: one who gives a relative's later is
            # not that relative.
            pending.link(system, ext_id, owner)
            return owner
        if phone and owner is None:
            pending.link(PHONE, phone, known)
        return known
    if owner is not None:
        pending.link(system, ext_id, owner)
        return owner
    client = ext_id if not pending.links_of(ext_id) and _adoptable(ext_id, phone, pending) else f"{system}:{ext_id}"
    pending.link(system, ext_id, client)
    if phone:
        pending.link(PHONE, phone, client)
    return client


def _adoptable(client: str, phone: str | None, pending: _Pending) -> bool:
    """True when a new record X may be the person X stored before links existed (no link names them): unless
    their phones disagree. A local form's client 1005 and the CRM's contact 1005 with another phone are strangers
    who only share a number."""
    record = pending.recorded(client)
    stored = phone_of(record.fields.get("phone")) if record is not None else None
    return stored is None or phone is None or stored == phone


def ids_of(links: list[tuple[str, str]]) -> dict[str, str]:
    """Each system's id of a person (the first linked of a system, when it has two), phones left out."""
    ids: dict[str, str] = {}
    for system, ext in links:
        if system != PHONE:
            ids.setdefault(system, ext)
    return ids


def all_ids_of(links: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Every id of each system of a person, in the order they were linked, phones left out."""
    every: dict[str, list[str]] = {}
    for system, ext in links:
        if system != PHONE:
            every.setdefault(system, []).append(ext)
    return every


def resolve(event: Event, people: Registry, phone: str | None = None) -> tuple[Event, tuple[Link, ...]]:
    """The event with the persons it names in place of the system's ids (its source is the system), and the
    links that makes. An event that names no client comes back as it was.

    `phone`: the phone our own effect named the person by, when the event is that effect's answer (a deal
    created for a client the CRM found or made by phone): the record it names is that person's."""
    system = event.source
    pending = _Pending(people)
    data: dict[str, Any] | None = None
    entity = event.entity
    if entity is not None and entity.kind == "client":
        client = _match(system, entity.id, phone_of(event.data.get("phone")) or phone, pending)
        links = pending.links_of(client)
        data = {**event.data, "ids": ids_of(links), "all_ids": all_ids_of(links)}
        entity = EntityRef("client", client)
    else:
        named = _named(event.data)
        if named is not None:
            field, ext = named
            data = {**event.data, "client": _match(system, ext, phone, pending)}
    if data is None:
        return event, ()
    return replace(event, entity=entity, data=data), pending.links()


def _named(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """The data field naming the system's client (a booking's `client`, a deal's `contact`) and its id."""
    for field in ("client", "contact"):
        value = data.get(field)
        if value not in (None, "") and not isinstance(value, (Mapping, list, bool)):
            return field, str(value)
    return None


class Unreachable(Exception):
    """A person a system knows by no id and no phone: the engine would have to guess which record they are."""


def person_of(system: str, value: str, people: Directory) -> str:
    """The person that `value`, as an effect sent it to `system`, names: the system's own id of a person, a phone
    (a phone link's person, else the oldest stored client with that phone: `outbound` sends it for a person no
    system reported too), or (naming no one the links know) automator's own id, as it is."""
    if phone_of(value) is not None:
        owner = people.client_of(PHONE, value)
        if owner is not None:
            return owner
        return next((e.ref.id for e in people.clients_with_phone(value) if not e.fields.get("deleted")), value)
    return people.client_of(system, value) or value


def person_ref(ref: EntityRef, system: str, people: Directory) -> EntityRef:
    """The entity an effect sent to `system` changes, as automator names it: a client named by the system's id or
    phone is the person (whose webhook, resolved when journaled, is then known as our echo); anything else as is."""
    return EntityRef("client", person_of(system, ref.id, people)) if ref.kind == "client" else ref


def outbound(client: str, system: str, people: People, phone: Any = None, *, as_is: bool = False) -> str:
    """What to send `system` for the person `client`: their id in that system, else their phone (E.164: the
    entity's `phone`, else a phone link), so the system finds or creates its record by it. Another system's id is
    never sent, nor automator's own id guessed to be the system's: only with `as_is` (a booking system's client
    action, where automator's own id is the client's id: a test's `given:`, a local form, a one-system project's
    client stored before links existed) does a person no link names at all pass as they are. Raises Unreachable
    otherwise."""
    links = people.links_of(client)
    own = ids_of(links).get(system)
    if own is not None:
        return own
    found = phone_of(phone) or next((ext for kind, ext in links if kind == PHONE), None)
    if found is not None:
        return found
    if as_is and not links:
        return client
    known = f" (known as {', '.join(f'{s} {e}' for s, e in links)})" if links else ""
    raise Unreachable(f"client {client} has no id in {system} and no phone to find them by{known}")


def sent_phone(params: Mapping[str, Any]) -> str | None:
    """The phone an effect named a person by (a person's param that is a phone), so that the record the system
    found or made by it, named in its answer, is linked to that person; None when it named them otherwise."""
    for name in PERSON_PARAMS:
        phone = phone_of(params.get(name))
        if phone is not None:
            return phone
    return None


def as_persons(params: Mapping[str, Any], system: str, people: Directory) -> dict[str, Any]:
    """Params an effect sent `system`, each person named back as automator names them (`outbound` undone): what a
    stand-in for the system that keeps automator's own ids (the simulator's `local`) is given."""
    return {name: person_of(system, str(value), people)
            if name in PERSON_PARAMS and value not in (None, "") and not isinstance(value, (Mapping, list, bool))
            else value for name, value in params.items()}
