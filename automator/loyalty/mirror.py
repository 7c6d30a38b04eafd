"""The ledger mirrored in a booking system (pure): each new row → the effect that tells loyalty.yaml's `sync:`
connector about it, when that connector performs the action.

Points earned (an accrual, a positive adjustment or reversal) → `loyalty.accrue`; points taken (a spending, an
expiry, a negative adjustment or reversal) → `loyalty.spend`; a tier row → `loyalty.set_tier`; a certificate's or
an abonement's issue → `certificate.issue` / `abonement.issue`. The effect's key is `<row id>>sync`, so a row is
mirrored once however often its decision is made; a manual card transaction is not idempotent, so the money ones
are at_most_once (parked for an operator when their outcome is unknown), a tier at_least_once. The params are read
from the row (its `detail` says what it is), never from loyalty.yaml, and name the client as the system knows them
(`automator.actions.people.to_system`).
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from automator.actions.people import to_system
from automator.actions.spec import ActionSpec
from automator.core.outcome import StepError
from automator.history import money_text
from automator.loyalty.ledger import Entry, account_kind
from automator.model import Effect, Entity, EntityRef

# A mirror effect's key is its row's id and this.
SUFFIX = ">sync"
# The delivery of each mirrored action (the same as its ActionSpec's: repeated, a money transaction counts twice).
DELIVERY = {"loyalty.accrue": "at_most_once", "loyalty.spend": "at_most_once", "loyalty.set_tier": "at_least_once",
            "certificate.issue": "at_most_once", "abonement.issue": "at_most_once"}
_DEFAULT_REASONS = {"accrue": "Начисление баллов", "spend": "Списание баллов", "expire": "Списание просроченных баллов",
                    "reverse": "Возврат визита", "adjust": "Корректировка баллов"}


class People(Protocol):
    """What the mirror reads to name a client as the system knows them (a decision's Snapshot is one)."""

    def entity(self, ref: EntityRef) -> Entity | None:
        """The stored state of an entity."""

    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's id (or a phone) belongs to."""

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person, phones included."""


class _Persons:
    """A People as `to_system` reads a run: no run scope, the store's persons."""

    def __init__(self, people: People) -> None:
        self.people = people
        self.scope: dict[str, Any] = {}

    def entity(self, ref: EntityRef) -> Entity | None:
        return self.people.entity(ref)

    def client_of(self, system: str, ext_id: str) -> str | None:
        return self.people.client_of(system, ext_id)

    def links_of(self, client: str) -> list[tuple[str, str]]:
        return self.people.links_of(client)


def action_of(entry: Entry) -> tuple[str, dict[str, Any]] | None:
    """The action and params (the client still as the person) that tell a booking system about one row; None for
    a row it is not told about (a discount granted, an Nth-visit counter, an abonement visit used)."""
    kind, name = account_kind(entry.account), entry.account.split(":", 1)[-1]
    detail = entry.detail
    params: dict[str, Any]
    if kind == "points" and entry.amount != 0:
        reason = entry.reason or _DEFAULT_REASONS.get(entry.kind, "Баллы")
        action = "loyalty.accrue" if entry.amount > 0 else "loyalty.spend"
        params = {"client": entry.client, "amount": money_text(abs(entry.amount)), "program": name, "reason": reason}
        if detail.get("card_type") not in (None, ""):
            params["card_type"] = detail["card_type"]
        return action, params
    if kind == "tier" and detail.get("tier") not in (None, ""):
        tier = str(detail["tier"])
        return "loyalty.set_tier", {"client": entry.client, "tier": tier, "program": name,
                                    "category": str(detail.get("category") or tier)}
    if kind == "certificate" and entry.kind == "issue":
        params = {"client": entry.client, "number": name, "nominal": money_text(entry.amount),
                  "type": detail.get("type"), "expires": detail.get("expires") or _day(entry.expires_at)}
        return "certificate.issue", {k: v for k, v in params.items() if v not in (None, "")}
    if kind == "abonement" and entry.kind == "issue":
        params = {"client": entry.client, "number": name, "type": detail.get("type"), "visits": entry.amount,
                  "services": detail.get("services"),
                  "expires": detail.get("expires") or _day(entry.expires_at)}
        return "abonement.issue", {k: v for k, v in params.items() if v not in (None, "", [])}
    return None


def effects_for(entries: Iterable[Entry], sync: str | None, declared: Collection[str], people: People,
                now: datetime, depth: int, *, own_ids: bool = True,
                runs: Mapping[str, str] | None = None) -> tuple[list[Effect], list[str]]:
    """The mirror effects of new rows to the connector `sync` (None: nothing is mirrored), for the actions it
    performs (`declared`), and why any row could not be mirrored (a client the system cannot be told about). A
    system with ids of its own (`own_ids`) is told its own id of the client, or their phone; one that keeps
    automator's (`local`) the person's id. A row an action made belongs to that action's run (`runs`: effect key →
    run id), so `automator explain RUN` and `automator runs` show its mirror with the run's effects; a program's
    row has no run."""
    if sync is None:
        return [], []
    effects, problems = [], []
    persons = _Persons(people)
    for entry in entries:
        found = action_of(entry)
        if found is None or found[0] not in declared:
            continue
        action, params = found
        spec = ActionSpec(action, "", delivery=DELIVERY[action], target="client")
        try:
            sent = to_system(spec, params, sync, persons) if own_ids else params
        except StepError as exc:
            problems.append(f"{entry.id}: not mirrored to {sync}: {exc}")
            continue
        effects.append(Effect(key=f"{entry.id}{SUFFIX}", run_id=(runs or {}).get(entry.id, ""), rule_id=entry.rule, action=action, connector=sync,
                              params=sent, delivery=spec.delivery, at=now, entity=EntityRef("client", entry.client),
                              depth=depth))
    return effects, problems


def is_mirror(effect: Effect) -> bool:
    """True for an effect that mirrors a ledger row (made here, not by a rule's step)."""
    return effect.key.endswith(SUFFIX)


def declared_actions(connectors: Mapping[str, Any], sync: str | None) -> tuple[frozenset[str], bool]:
    """The actions the `sync` connector (automator.yaml's, by name) performs, and whether its ids are its own."""
    found = connectors.get(sync) if sync else None
    return (frozenset(found.actions), bool(found.own_ids)) if found is not None else (frozenset(), True)


def _day(moment: datetime | None) -> str | None:
    return moment.date().isoformat() if moment is not None else None
