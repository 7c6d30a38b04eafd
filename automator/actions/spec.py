"""What a canonical action is (ActionSpec), and what its hooks may read of the run that plans it (ActionRun)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from automator.channels import ChannelMap
from automator.client_segment import History
from automator.expr import EvalContext
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.ledger import Entry
from automator.model import Effect, Entity, EntityRef, Event, Pipeline, Timer
from automator.segments import SegmentsConfig


class ActionRun(Protocol):
    """The run an action step belongs to, as its hooks see it (`automator.core.state.RunState` is one).

    Declared here, below the core, so that an action's hooks need not import the core that calls them."""

    scope: dict[str, Any]
    now: datetime
    ectx: EvalContext
    # What the run plans besides its steps' own: an engine action's mirror in a booking system (`effects`), and
    # loyalty's timers for what it issued (an abonement's expiry).
    effects: list[Effect]
    timers: list[Timer]

    def entity(self, ref: EntityRef) -> Entity | None:
        """The stored state of an entity."""

    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's id (or, with system `phone`, a phone) belongs to."""

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person, phones included."""

    def rule_pipeline(self) -> str | None:
        """The trigger's `pipeline:` narrowing."""

    def pipeline(self, name: str) -> Pipeline | None:
        """The project's pipeline of that name."""

    def segments(self) -> SegmentsConfig | None:
        """The project's segments.yaml, compiled."""

    def history(self) -> History:
        """Clients' visits and the kept RFM cut points, as the snapshot has them (what rescoring reads)."""

    def channels(self) -> ChannelMap:
        """The project's channels (automator.yaml's `channels:`, or the built-in set)."""

    def loyalty(self) -> LoyaltyConfig | None:
        """The project's loyalty.yaml, compiled."""

    def ledger_of(self, client: str) -> list[Entry]:
        """A person's ledger rows as this decision leaves them so far."""

    def keep(self, entries: list[Entry]) -> None:
        """Add ledger rows an action made to the decision (kept once by their ids)."""


# Rendered params (the default target filled in) -> the params to send, or a StepError.
Prepare = Callable[[dict[str, Any], ActionRun], dict[str, Any]]
# An action the engine performs itself: the planned effect -> the events it causes.
Perform = Callable[[Effect, ActionRun], list[Event]]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What an action is: its name, params schema, delivery policy and the events the real system sends back.

    `schema` is a schema id relative to `schemas/` (the canonical `actions/<name>.json`), or a connector's
    own file for a vendor-only action. `target` is the kind of entity in the run's scope the action works on
    when its params name none (`deal.move` moves the run's deal). `echo` gives the fields the action sets on
    its target, when known before the call (the system's webhook reporting them is our own echo);
    `deal_fields` the deal fields it sets (what a stage's `requires:` can be satisfied by). `prepare` checks
    or completes the params in the run; `perform`, when present, makes the engine perform the action itself;
    `carries` the links its answer is given from the params (see `automator.actions.answered`).
    """

    name: str
    description: str
    delivery: str = "at_least_once"  # or at_most_once: never performed twice, parked when uncertain
    emits: tuple[str, ...] = ()
    target: str | None = None
    schema: str = ""
    echo: Callable[[Mapping[str, Any]], dict[str, Any] | None] | None = None
    deal_fields: Callable[[Mapping[str, Any]], set[str]] | None = None
    prepare: Prepare | None = None
    perform: Perform | None = None
    # Links the action names (`booking` of a deal.create) that its answer carries, whether or not the system
    # keeps them: the entity it makes is linked in the store (rules read `deal.booking.status`).
    carries: tuple[str, ...] = ()
    # True when the performing system is also given the person's phone and name (`client_phone`, `client_name`):
    # a booking system that finds or creates its client by them.
    details: bool = False

    @property
    def schema_id(self) -> str:
        """The schema file for this action's params, relative to `schemas/`."""
        return self.schema or f"actions/{self.name}.json"
