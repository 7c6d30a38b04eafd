"""A client rescored inside a decision (pure): the visits in segments.yaml's window read through the snapshot, the new
ones laid over them, the cut points the store keeps, and `segment.changed` once per move.

decide() calls it for a visit that adds to a client's history, and `segment.recompute` for a rule: one path, so a
rule and a visit never disagree on a segment."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from automator.expr import EvalContext
from automator.model import ENGINE, EntityRef, Event, Visit
from automator.segments import Scored, SegmentsConfig, classify_values, cuts_for, moved, values_of


class History(Protocol):
    """What rescoring reads: a client's visits and the kept cut points (a Snapshot, a run's state)."""

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        """A person's visits and purchases since a moment, oldest first."""

    def segment_cuts(self) -> Mapping[str, Any] | None:
        """The cut points the last full rescoring kept."""


NO_CUTS = ("the scores are by quantiles and no full rescoring has computed their cut points for this segments.yaml: "
           "run `automator segments compute` (the daemon does at its start)")


class Unscorable(Exception):
    """The segments are by quantiles and no full rescoring has computed this configuration's cut points yet."""


def rescore(config: SegmentsConfig, history: History, client: str, now: datetime, tz: ZoneInfo, ectx: EvalContext,
            new: Iterable[Visit] = ()) -> Scored:
    """A client's values, scores and segment from their visits in the window (the stored ones and `new`, visits
    this decision adds and the store does not have yet); Unscorable without cut points."""
    cuts = cuts_for(config, history.segment_cuts())
    if cuts is None:
        raise Unscorable(NO_CUTS)
    since = config.window_start(now, tz)
    stored = history.visits_of(client, since)
    known = {v.id for v in stored}
    visits = [*stored, *(v for v in new if v.id not in known)]
    return classify_values(values_of(visits, now, since), config, cuts, ectx)


def changed_event(config: SegmentsConfig, previous: Any, scored: Scored, *, event_id: str, client: str,
                  now: datetime, depth: int, caused_by: str | None = None) -> Event | None:
    """`segment.changed` for a client who moved (its id derived from what caused it: deciding again, or a
    repeated webhook, emits nothing new), None when they stayed."""
    data = moved(previous, scored, config)
    if data is None:
        return None
    return Event(id=f"{event_id}>segment.changed", type="segment.changed", at=now, entity=EntityRef("client", client),
                 data=data, source=ENGINE, depth=depth, caused_by=caused_by)
