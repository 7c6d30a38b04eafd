"""The Snapshot protocol: the read-only view of stored state that the core decides on."""
from __future__ import annotations

from datetime import timedelta
from collections.abc import Iterable, Mapping
from typing import Protocol

from automator.model import Entity, EntityRef, Run


class Snapshot(Protocol):
    """What `decide` may read. Implementations must not change anything while it is read.

    Invariants: `entity` returns the state before the event being decided; `active_runs` returns runs with
    status `waiting` or `queued`, oldest first.
    """

    def entity(self, ref: EntityRef) -> Entity | None:
        """The last known state of one entity."""

    def entities(self, kind: str) -> Iterable[Entity]:
        """Every stored entity of a kind (for `for_each` and segments)."""

    def run(self, run_id: str) -> Run | None:
        """One run by id."""

    def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
        """Waiting or queued runs of a rule (or of every rule, given None) for one `per` key, oldest first."""

    def segment_recency(self) -> Mapping[str, timedelta]:
        """Average time between visits per segment."""
